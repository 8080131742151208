defmodule Wasmex.Host.Pending do
  @moduledoc """
  The requests a host has sent and not yet seen answered, with what watches their callers:
  a struct and functions, no process of its own (the monitors it makes and removes belong
  to the process that keeps the struct, the host server).

  Each request in flight has an entry under its id: its target (where the answer goes,
  `t:Wasmex.Host.target/0`), whether its caller is *watched* (a Wasm call or a
  compilation: if the caller dies or gives up, the request is cancelled in the port) and
  what the host keeps for module sources (see `Wasmex.Host.KnownModules`).

  Callers are indexed by pid: the tags of its synchronous requests (so that a caller that
  stops waiting, `{:give_up, from}`, finds its request), how many others (`{:send, ...}`
  targets) it has in flight, and one monitor per caller, not per request. A monitor is
  made by the first watched request of a caller and kept while the caller waits for any;
  a caller left with nothing in flight keeps it too (its next call then needs no new
  monitor), as long as at most 1,024 such idle callers are watched; beyond that it is
  removed. (A monitor and its removal cost the host about as much as the rest of a call.)

      iex> alias Wasmex.Host.Pending
      iex> from = {self(), [:alias | make_ref()]}
      iex> pending = Pending.put(Pending.new(), 7, {:reply, from}, 42, nil)
      iex> Pending.size(pending)
      1
      iex> {:cancel, 7, 42, pending} = Pending.give_up(pending, from)
      iex> Pending.size(pending)
      0
  """

  defstruct entries: %{}, callers: %{}, idle: 0, padded: false

  # An Erlang map of up to 32 keys is a sorted array; at 33 it becomes a hash trie, and
  # back at 32. Around that size each put and pop converted the whole map (3.7 µs, more
  # than a call's other work in the host). Once a map here has held 32 entries it gets
  # this many filler keys, so it stays a hash trie whatever it holds afterwards.
  @fillers 33

  # Callers with nothing in flight whose monitor is kept (see the moduledoc).
  @idle_monitors 1024

  # Requests in flight runs_in?/2 looks through at most.
  @scan_limit 64

  @typedoc """
  Where a request's answer goes (see `t:Wasmex.Host.target/0`), or `{:drop_store, id}`
  (a store whose creator stopped waiting).
  """
  @type target ::
          Wasmex.Host.target() | {:drop_store, pos_integer()} | {:free_bulk, pos_integer()}

  @typedoc """
  What a watched request is cancelled with: the store it runs in (`nil` for a compilation);
  `:unwatched` for a request whose caller's exit does not cancel it.
  """
  @type watch :: non_neg_integer() | nil | :unwatched

  @typedoc "A request in flight: its target, its watch, and the host's data for it."
  @type entry :: {target(), watch(), term()}

  @opaque t :: %__MODULE__{
            entries: %{pos_integer() => entry()},
            callers: %{pid() => {reference() | nil, non_neg_integer(), [{term(), pos_integer()}]}},
            idle: non_neg_integer()
          }

  @doc "No request in flight."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc """
  Adds request `id` with its `target`, `watch` (see `t:watch/0`) and `data` (anything the
  host wants back with the answer). A watched request's caller gets monitored (once).
  """
  @spec put(t(), pos_integer(), target(), watch(), term()) :: t()
  def put(%__MODULE__{} = p, id, target, watch, data) do
    p = %{p | entries: Map.put(p.entries, id, {target, watch, data})} |> pad()

    case index(target, watch, id) do
      nil -> p
      {pid, watched, sync} -> add_caller(p, pid, watched, sync)
    end
  end

  @doc "Removes request `id`, returning its entry (`nil` if it is not in flight)."
  @spec pop(t(), non_neg_integer()) :: {entry() | nil, t()}
  def pop(%__MODULE__{} = p, id) do
    case Map.pop(p.entries, id) do
      {nil, _} ->
        {nil, p}

      {{target, watch, _} = entry, entries} ->
        {entry, unindex(%{p | entries: entries}, target, watch, id)}
    end
  end

  @doc "Whether request `id` is in flight."
  @spec has?(t(), non_neg_integer()) :: boolean()
  def has?(%__MODULE__{entries: entries}, id), do: is_map_key(entries, id)

  @doc """
  The caller with `from` stopped waiting. Its watched request is cancelled (taken out,
  `{:cancel, id, store_id, pending}`: the host tells the port); a store being created
  will be dropped once it exists (its target becomes `{:drop_store, id}`); any other request
  just loses its waiter. `{:ok, pending}` when nothing is to be cancelled.
  """
  @spec give_up(t(), GenServer.from()) :: {:cancel, pos_integer(), watch(), t()} | {:ok, t()}
  def give_up(%__MODULE__{} = p, {pid, tag}) do
    with %{^pid => {_ref, _count, syncs}} <- p.callers,
         {^tag, id} <- List.keyfind(syncs, tag, 0) do
      case pop(p, id) do
        {{_target, watch, _}, p} when watch != :unwatched ->
          {:cancel, id, watch, p}

        {{{:new_store, _, _, store_id}, watch, data}, p} ->
          {:ok, %{p | entries: Map.put(p.entries, id, {{:drop_store, store_id}, watch, data})}}

        # A transfer through the shared buffer: the buffer is the host's to free once the
        # port is done with it (see Wasmex.Host.Bulk).
        {{{:bulk, _, token}, watch, data}, p} ->
          {:ok, %{p | entries: Map.put(p.entries, id, {{:free_bulk, token}, watch, data})}}

        {_entry, p} ->
          {:ok, p}
      end
    else
      _ -> {:ok, p}
    end
  end

  @doc """
  A monitor fired. If it was this struct's monitor of `pid`, every watched request of
  `pid` is taken out and returned as `{id, store_id}` pairs to cancel; otherwise
  `:unknown` (the monitor is someone else's).
  """
  @spec down(t(), reference(), pid()) :: {:ok, [{pos_integer(), watch()}], t()} | :unknown
  def down(%__MODULE__{} = p, ref, pid) do
    case p.callers do
      %{^pid => {^ref, sends, syncs}} ->
        idle = if sends == 0 and syncs == [], do: p.idle - 1, else: p.idle
        p = %{p | callers: Map.delete(p.callers, pid), idle: idle}

        {entries, cancels} =
          Enum.reduce(watched_ids(p, pid, sends, syncs), {p.entries, []}, fn id, {es, cs} ->
            {{_target, watch, _}, es} = Map.pop(es, id)
            {es, [{id, watch} | cs]}
          end)

        {:ok, Enum.reverse(cancels), %{p | entries: entries}}

      _ ->
        :unknown
    end
  end

  @doc "Whether any request in flight was sent by `pid` (that waits for it)."
  @spec sent_by?(t(), pid()) :: boolean()
  def sent_by?(%__MODULE__{callers: callers}, pid) do
    case callers do
      %{^pid => {_ref, sends, syncs}} -> sends > 0 or syncs != []
      _ -> false
    end
  end

  @doc """
  Whether a call may be running in store `store_id`: a watched request of the store is in
  flight. Past #{@scan_limit} requests in flight it does not look, and says yes.

      iex> alias Wasmex.Host.Pending
      iex> pending = Pending.put(Pending.new(), 7, {:send, self(), :tag}, 3, nil)
      iex> {Pending.runs_in?(pending, 3), Pending.runs_in?(pending, 4)}
      {true, false}
  """
  @spec runs_in?(t(), non_neg_integer()) :: boolean()
  def runs_in?(%__MODULE__{entries: entries} = p, store_id) do
    size(p) > @scan_limit or Enum.any?(entries, &match?({_, {_, ^store_id, _}}, &1))
  end

  @doc "The targets of every request in flight."
  @spec targets(t()) :: [target()]
  def targets(%__MODULE__{entries: entries}), do: for({_, {t, _, _}} <- entries, do: t)

  @doc "How many requests are in flight."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{entries: entries, padded: false}), do: map_size(entries)
  def size(%__MODULE__{entries: entries, padded: true}), do: map_size(entries) - @fillers

  @doc "How many callers are watched (monitored) now, waiting or idle."
  @spec watched(t()) :: non_neg_integer()
  def watched(%__MODULE__{callers: callers}),
    do: Enum.count(for {_pid, {ref, _, _}} <- callers, ref != nil, do: ref)

  # The caller a request is indexed under: its pid, whether the request is watched, and
  # `{tag, id}` for a synchronous caller (`nil` for `{:send, ...}` targets, which are only
  # counted: they never give up).
  defp index({:reply, {pid, tag}}, watch, id), do: {pid, watch != :unwatched, {tag, id}}

  defp index({:new_store, {pid, tag}, _, _}, watch, id),
    do: {pid, watch != :unwatched, {tag, id}}

  defp index({:bulk, {pid, tag}, _}, watch, id), do: {pid, watch != :unwatched, {tag, id}}
  defp index({:free_bulk, _}, _watch, _id), do: nil

  defp index({:send, pid, _}, watch, _id), do: {pid, watch != :unwatched, nil}
  defp index({:drop_store, _}, _watch, _id), do: nil

  defp pad(%__MODULE__{padded: false, entries: entries} = p) when map_size(entries) >= 32 do
    fillers = Map.new(1..@fillers, &{{:filler, &1}, nil})

    %{
      p
      | entries: Map.merge(entries, fillers),
        callers: Map.merge(p.callers, fillers),
        padded: true
    }
  end

  defp pad(p), do: p

  defp add_caller(p, pid, watched, sync) do
    {ref, sends, syncs, idle} =
      case p.callers do
        %{^pid => {ref, 0, []}} -> {ref, 0, [], p.idle - 1}
        %{^pid => {ref, sends, syncs}} -> {ref, sends, syncs, p.idle}
        _ -> {nil, 0, [], p.idle}
      end

    ref = if watched and ref == nil, do: Process.monitor(pid), else: ref
    entry = if sync, do: {ref, sends, [sync | syncs]}, else: {ref, sends + 1, syncs}
    %{p | callers: Map.put(p.callers, pid, entry), idle: idle}
  end

  defp unindex(p, target, watch, id) do
    case index(target, watch, id) do
      nil -> p
      {pid, _watched, sync} -> remove_caller(p, pid, sync)
    end
  end

  defp remove_caller(p, pid, sync) do
    case p.callers do
      %{^pid => {ref, sends, syncs}} ->
        {sends, syncs} = if sync, do: {sends, List.delete(syncs, sync)}, else: {sends - 1, syncs}

        cond do
          sends > 0 or syncs != [] ->
            %{p | callers: Map.put(p.callers, pid, {ref, sends, syncs})}

          ref != nil and p.idle < @idle_monitors ->
            %{p | callers: Map.put(p.callers, pid, {ref, 0, []}), idle: p.idle + 1}

          true ->
            if ref, do: Process.demonitor(ref, [:flush])
            %{p | callers: Map.delete(p.callers, pid)}
        end

      # The caller's monitor fired already (see down/3).
      _ ->
        p
    end
  end

  # The watched requests of `pid`, oldest first (the port then stops the one running before
  # it skips those queued behind it): its synchronous ones are indexed; its `{:send, ...}`
  # ones, if it has any, are found by a scan (once, as the caller exits).
  defp watched_ids(p, pid, sends, syncs) do
    synced = for {_tag, id} <- syncs, watched?(p.entries, id), do: id

    if sends == 0,
      do: Enum.sort(synced),
      else:
        Enum.sort(
          synced ++ for({id, {{:send, ^pid, _}, w, _}} <- p.entries, w != :unwatched, do: id)
        )
  end

  defp watched?(entries, id) do
    case entries do
      %{^id => {_target, watch, _}} -> watch != :unwatched
      _ -> false
    end
  end

  @doc "The process that sent a request with `target` (`nil` for `{:drop_store, id}`)."
  @spec caller(target()) :: pid() | nil
  def caller({:reply, {pid, _tag}}), do: pid
  def caller({:send, pid, _tag}), do: pid
  def caller({:new_store, {pid, _tag}, _holder, _store_id}), do: pid
  def caller({:drop_store, _store_id}), do: nil
  def caller({:bulk, {pid, _tag}, _token}), do: pid
  def caller({:free_bulk, _token}), do: nil

  @doc "Whether a request in flight frees the shared buffer held under `token` when answered."
  @spec frees_bulk?(t(), pos_integer()) :: boolean()
  def frees_bulk?(%__MODULE__{entries: entries}, token),
    do: Enum.any?(entries, &match?({_id, {{:free_bulk, ^token}, _, _}}, &1))
end
