defmodule Wasmex.Host.Requests do
  @moduledoc false
  # A request's way through the host server: numbered, written to the port
  # (Wasmex.Host.Writer), kept in flight (Wasmex.Host.Pending) until its answer reaches its
  # target, or cancelled when its caller dies or gives up. Runs in the host server, on its
  # state (`%Wasmex.Host{}`).

  require Logger

  alias Wasmex.{Stats, Wire}
  alias Wasmex.Host.{Holders, KnownModules, Parts, Pending, Writer}

  # At most this many cancels of callers that died are in the port unanswered at once;
  # the others wait in the host server (see cancel_all/2).
  @cancel_window 256

  # How long a deferred notification (a store's drop, an idle instance's stop) may wait
  # for the next write before it is written alone (ms).
  @defer_delay 1

  @doc "Sends a request; its answer will go to `target` (see `t:Wasmex.Host.target/0`)."
  @spec send_request(struct(), Wire.request(), Wasmex.Host.target(), keyword()) :: struct()
  def send_request(state, {op, args}, target, opts \\ []) do
    id = state.next_id
    {sent, data} = KnownModules.prepare(state.modules, op, args, opts)
    frame = Wire.encode_request(id, op, sent)
    size = IO.iodata_length(frame)

    if size > Wire.max_frame() do
      # The port would skip the frame unread, unable to say which request it was.
      reply(target, too_large(size), state)
    else
      Stats.add(:bytes_sent, size)
      state = write(state, frame, size)
      if op == :call, do: Stats.add(:calls)
      pending = Pending.put(state.pending, id, target, watch(op, sent, target), data)
      %{state | next_id: id + 1, pending: pending}
    end
  end

  # A call's caller is watched: if it dies or gives up before the answer, the call is
  # cancelled and the port stops running it. So is a compilation's.
  defp watch(op, args, _target) when op in [:call, :component_call] do
    case elem(args, 0) do
      {:caller, store_id, _} -> store_id
      store_id -> store_id
    end
  end

  defp watch(op, _args, {:reply, _})
       when op in [:module_compile, :precompile, :preinitialize, :component_compile],
       do: nil

  defp watch(_op, _args, _target), do: :unwatched

  @doc "The answer to request `id` reaches its target."
  @spec deliver(struct(), non_neg_integer(), {:ok, term()} | {:error, term()}) :: struct()
  def deliver(state, id, result) do
    {result, parts} = Parts.complete(state.parts, id, result)
    state = %{state | parts: parts}

    case Pending.pop(state.pending, id) do
      # Id 0 answers a frame the port could not read; other unknown ids are answers to
      # cancelled calls.
      {nil, _} ->
        if id == 0, do: Logger.warning("wasmex_port: #{inspect(result)}")
        cancel_answered(state, id)

      {{target, _watch, data}, pending} ->
        state = %{state | pending: pending}

        case KnownModules.answered(state.modules, data, result) do
          # The port lacks a module whose source was left out: sent again, with it.
          {:resend, op, args, modules} ->
            send_request(%{state | modules: modules}, {op, args}, target, probe: false)

          {:ok, modules} ->
            reply(target, count_failure(result), %{state | modules: modules})
        end
    end
  end

  @doc "A part of the answer to request `id`, ahead of it (see `Wasmex.Host.Parts`)."
  @spec part(struct(), non_neg_integer(), binary()) :: struct()
  def part(state, id, bytes) do
    if Pending.has?(state.pending, id),
      do: %{state | parts: Parts.add(state.parts, id, bytes)},
      else: state
  end

  @doc "The caller with `from` stopped waiting (`Wasmex.Host.Client`)."
  @spec give_up(struct(), GenServer.from()) :: struct()
  def give_up(state, from) do
    case Pending.give_up(state.pending, from) do
      {:cancel, id, store_id, pending} -> cancel(%{state | pending: pending}, id, store_id)
      {:ok, pending} -> %{state | pending: pending}
    end
  end

  @doc """
  A monitor of the host fired: a watched caller died (its calls are cancelled), or a store
  holder did. `{:holder, store_id | nil, state}` for the second (with the store's id if it
  is to be dropped), `{:caller, state}` or `:unknown`.
  """
  @spec down(struct(), reference(), pid()) ::
          {:caller, struct()} | {:holder, non_neg_integer() | nil, struct()} | :unknown
  def down(state, ref, pid) do
    case Pending.down(state.pending, ref, pid) do
      {:ok, cancels, pending} ->
        {:caller, cancel_all(%{state | pending: pending}, cancels)}

      :unknown ->
        case Holders.down(state.holders, ref, pid) do
          {:drop, store_id, holders} -> {:holder, store_id, drop_store(state, holders, store_id)}
          {:keep, _store_id, holders} -> {:holder, nil, %{state | holders: holders}}
          :unknown -> :unknown
        end
    end
  end

  @doc "The holders changed and the store `store_id` is to go: its drop is written."
  @spec drop_store(struct(), Holders.t(), non_neg_integer()) :: struct()
  def drop_store(state, holders, store_id) do
    case Map.pop(state.opening, store_id) do
      # Never sent: the port need not hear of it at all.
      {{_frame, _size}, opening} ->
        %{state | holders: holders, opening: opening}

      # A store released between two requests costs the port no wake-up of its own.
      {nil, _} ->
        defer(%{state | holders: holders}, Wire.store_drop(store_id))
    end
  end

  @doc """
  The defer timer ran out: writes the notifications still waiting for a write
  (`defer/2`) now.
  """
  @spec write_deferred(struct()) :: struct()
  def write_deferred(%{deferred: []} = state), do: %{state | defer_timer: false}

  def write_deferred(%{deferred: [{frame, size} | rest]} = state),
    do: write(%{state | deferred: rest, defer_timer: false}, frame, size)

  # Writes `notification` ahead of the next write, or alone within @defer_delay ms: for
  # notifications whose only need is to reach the port before any later request (drops,
  # and stops of instances with nothing running). In the order they were deferred.
  defp defer(state, notification) do
    frame = Wire.encode_request(0, notification)
    state = %{state | deferred: [{frame, IO.iodata_length(frame)} | state.deferred]}

    # One timer at a time: while it runs, deferred notifications ride on the writes
    # meanwhile.
    if state.defer_timer do
      state
    else
      Process.send_after(self(), :write_deferred, @defer_delay)
      %{state | defer_timer: true}
    end
  end

  @doc """
  Cancels the requests of a caller that died, `{id, store_id}` pairs, oldest first, at
  most #{@cancel_window} unanswered in the port at a time: each answer to a cancelled
  request lets the next cancel go. (A store checks its cancellations for each request it
  serves, at a cost that grows with how many it holds: 100,000 cancels written at once
  made skipping the 100,000 calls they named take seconds.)
  """
  @spec cancel_all(struct(), [{pos_integer(), term()}]) :: struct()
  def cancel_all(state, cancels) do
    ids = Enum.reduce(cancels, state.cancel_ids, fn {id, _}, ids -> Map.put(ids, id, :queued) end)
    pump_cancels(%{state | cancel_queue: state.cancel_queue ++ cancels, cancel_ids: ids})
  end

  # Writes queued cancels while fewer than the window are unanswered; a request answered
  # while its cancel waited is not cancelled any more.
  defp pump_cancels(%{cancel_queue: [{id, store_id} | rest], cancels_out: out} = state)
       when out < @cancel_window do
    state = %{state | cancel_queue: rest}

    case state.cancel_ids do
      %{^id => :queued} ->
        state = cancel(state, id, store_id)
        ids = Map.put(state.cancel_ids, id, :sent)
        pump_cancels(%{state | cancel_ids: ids, cancels_out: out + 1})

      _ ->
        pump_cancels(state)
    end
  end

  defp pump_cancels(state), do: state

  # An answer to a request no longer pending: if it was cancelled by cancel_all/2, its
  # place in the window (or in the queue) is free.
  defp cancel_answered(%{cancel_ids: ids} = state, _id) when map_size(ids) == 0, do: state

  defp cancel_answered(state, id) do
    case Map.pop(state.cancel_ids, id) do
      {:sent, ids} -> pump_cancels(%{state | cancel_ids: ids, cancels_out: state.cancels_out - 1})
      {:queued, ids} -> %{state | cancel_ids: ids}
      {nil, _} -> state
    end
  end

  defp cancel(state, id, store_id) do
    Stats.add(:cancels)
    notify(state, Wire.cancel(store_id, id))
  end

  @doc "Every request in flight gets `{:error, message}` (the port is gone)."
  @spec fail_all(struct(), String.t()) :: struct()
  def fail_all(state, message) do
    Enum.each(Pending.targets(state.pending), &reply(&1, {:error, message}, state))
    %{state | pending: Pending.new()}
  end

  # Counts a failed call by its kind, a value the port sends: `{:trap, message}` for a
  # failure while Wasm ran, `{:timeout, message}` for a stop at the deadline; both are
  # passed on as the message.
  defp count_failure({:ok, _} = result), do: result

  defp count_failure({:error, {:trap, message}}) when is_binary(message) do
    Stats.add(:traps)
    Wasmex.Telemetry.event([:call, :trap], %{host: self(), message: message})
    {:error, message}
  end

  defp count_failure({:error, {:timeout, message}}) when is_binary(message) do
    Stats.add(:timeouts)
    Wasmex.Telemetry.event([:call, :timeout], %{host: self(), message: message})
    {:error, message}
  end

  defp count_failure(result), do: result

  defp reply({:reply, from}, result, state) do
    GenServer.reply(from, result)
    state
  end

  defp reply({:bulk, from, _token}, result, state) do
    GenServer.reply(from, result)
    state
  end

  # A transfer through the shared buffer whose caller stopped waiting: the port is done
  # with the buffer now.
  defp reply({:free_bulk, token}, _result, state) do
    Wasmex.Host.Bulk.reclaim(self(), token)
    state
  end

  defp reply({:send, pid, tag}, result, state) do
    send(pid, {:returned_function_call, result, tag})
    state
  end

  # A store whose creator stopped waiting: nobody holds it (made or not, the port forgets
  # it).
  defp reply({:drop_store, store_id}, _result, state),
    do: notify(state, Wire.store_drop(store_id))

  # A store whose creator waited for it to be made (`Wasmex.Host.new_store/4`).
  defp reply({:new_store, from, holder, store_id}, {:ok, _}, state) do
    GenServer.reply(from, {:ok, store_id})
    %{state | holders: Holders.hold(state.holders, store_id, holder)}
  end

  defp reply({:new_store, from, _holder, store_id}, error, state) do
    GenServer.reply(from, unmade(error))
    notify(state, Wire.store_drop(store_id))
  end

  # The creator waited for its store: it gets the port's reason as it is.
  defp unmade({:error, "the store could not be created: " <> reason}), do: {:error, reason}
  defp unmade(error), do: error

  defp too_large(size),
    do: {:error, "the request is #{size} bytes, over the frame limit of #{Wire.max_frame()}"}

  @doc """
  Creates store `store_id` in the port, held by `holder`. Without `from` nothing waits
  for it: the store is held at once, its `store_open` goes to the port with the next
  write (a store dropped before that is never sent), and if the port cannot make it, its
  requests are refused with the reason. With `from`, the answer goes there once the store
  is made (`{:ok, store_id}`) or not (`{:error, reason}`, the store forgotten).
  """
  @spec open_store(struct(), pos_integer(), term(), term(), pid(), GenServer.from() | nil) ::
          struct()
  def open_store(state, store_id, limits, wasi, holder, nil) do
    # Written ahead of the next write, which is at the latest the store's first request:
    # one write, and one wake-up of the port, for both.
    frame = Wire.encode_request(0, Wire.store_open(store_id, limits, wasi))
    opening = Map.put(state.opening, store_id, {frame, IO.iodata_length(frame)})
    %{state | holders: Holders.hold(state.holders, store_id, holder), opening: opening}
  end

  def open_store(state, store_id, limits, wasi, holder, from) do
    {frame, size} = Writer.notification_frame(Wire.store_open(store_id, limits, wasi))

    if size > Wire.max_frame() do
      GenServer.reply(from, too_large(size))
      state
    else
      state = write(state, frame, size)
      send_request(state, Wire.store_ready(store_id), {:new_store, from, holder, store_id})
    end
  end

  @doc """
  Writes a notification (a request without a reply) through the host's batching. The stop
  of an instance whose store has no call in flight is deferred (see `defer/2`): it only
  has to refuse later requests, and those are written after it.
  """
  @spec notify(struct(), Wire.request()) :: struct()
  def notify(state, {op, {store_id, _instance_id}} = request)
      when op in [:instance_stop, :component_instance_stop] do
    if Pending.runs_in?(state.pending, store_id),
      do: write_now(state, request),
      else: defer(state, request)
  end

  def notify(state, request), do: write_now(state, request)

  defp write_now(state, request) do
    {frame, size} = Writer.notification_frame(request)
    write(state, frame, size)
  end

  defp write(%{opening: opening, deferred: []} = state, frame, size)
       when map_size(opening) == 0,
       do: %{state | outgoing: Writer.write(state.port, state.outgoing, frame, size)}

  # Deferred notifications and opens of stores since the last write go first (drops
  # first, freeing instance slots), in the same write.
  defp write(state, frame, size) do
    first = Enum.reverse(state.deferred, Map.values(state.opening))
    Stats.add(:bytes_sent, Enum.reduce(first, 0, fn {_, n}, sum -> sum + n end))
    outgoing = Writer.write_after(state.port, state.outgoing, first, frame, size)
    %{state | outgoing: outgoing, opening: %{}, deferred: []}
  end
end
