defmodule Wasmex.Host.Pending do
  @moduledoc """
  The requests a host has sent and not yet seen answered, by id, each with where its
  answer goes (its target), and an index from the tag of a waiting caller's `from` to its
  request, so that a caller that stops waiting (`Wasmex.Host.Client`) can be found.
  Pure data: the host server owns the monitors and the port.

      iex> alias Wasmex.Host.Pending
      iex> from = {self(), [:alias | make_ref()]}
      iex> pending = Pending.put(Pending.new(), 7, {:reply, from}, [], nil, nil)
      iex> {id, pending} = Pending.take_tag(pending, elem(from, 1))
      iex> id
      7
      iex> {{{:reply, ^from}, [], nil, nil}, pending} = Pending.pop(pending, 7)
      iex> Pending.size(pending)
      0
  """

  defstruct entries: %{}, tags: %{}

  @typedoc "Where a request's answer goes (see `t:Wasmex.Host.target/0`), or `:drop_store`."
  @type target :: Wasmex.Host.target() | :drop_store

  @typedoc """
  A request in flight: its target, the module keys it teaches the host once it succeeds,
  the monitor watching its caller (`nil` if none), and what to send again if the port
  answers that it dropped a module (`nil` if nothing).
  """
  @type entry :: {target(), [term()], reference() | nil, {atom(), tuple(), [term()]} | nil}

  @opaque t :: %__MODULE__{entries: %{pos_integer() => entry()}, tags: %{term() => pos_integer()}}

  @doc "No request in flight."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "Adds request `id`."
  @spec put(t(), pos_integer(), target(), [term()], reference() | nil, tuple() | nil) :: t()
  def put(%__MODULE__{} = p, id, target, learn, watch, resend) do
    %{
      p
      | entries: Map.put(p.entries, id, {target, learn, watch, resend}),
        tags: tag(p.tags, target, id)
    }
  end

  @doc "Removes request `id`, returning its entry (`nil` if it is not in flight)."
  @spec pop(t(), non_neg_integer()) :: {entry() | nil, t()}
  def pop(%__MODULE__{} = p, id) do
    case Map.pop(p.entries, id) do
      {nil, _} ->
        {nil, p}

      {{target, _, _, _} = entry, entries} ->
        {entry, %{p | entries: entries, tags: untag(p.tags, target)}}
    end
  end

  @doc "The entry of request `id`, or `nil`."
  @spec get(t(), non_neg_integer()) :: entry() | nil
  def get(%__MODULE__{entries: entries}, id), do: Map.get(entries, id)

  @doc "Sends the answer of request `id` to `target` instead (its caller is gone)."
  @spec retarget(t(), pos_integer(), target()) :: t()
  def retarget(%__MODULE__{} = p, id, target) do
    {old, learn, watch, resend} = Map.fetch!(p.entries, id)

    %{
      p
      | entries: Map.put(p.entries, id, {target, learn, watch, resend}),
        tags: untag(p.tags, old)
    }
  end

  @doc "The id of the request whose caller's `from` has `tag`, removing the index entry."
  @spec take_tag(t(), term()) :: {pos_integer() | nil, t()}
  def take_tag(%__MODULE__{} = p, tag) do
    {id, tags} = Map.pop(p.tags, tag)
    {id, %{p | tags: tags}}
  end

  @doc "Whether any request in flight was sent by `pid`."
  @spec sent_by?(t(), pid()) :: boolean()
  def sent_by?(%__MODULE__{entries: entries}, pid),
    do: Enum.any?(entries, fn {_id, {target, _, _, _}} -> caller(target) == pid end)

  @doc "The targets of every request in flight."
  @spec targets(t()) :: [target()]
  def targets(%__MODULE__{entries: entries}), do: Enum.map(entries, fn {_, {t, _, _, _}} -> t end)

  @doc "How many requests are in flight."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{entries: entries}), do: map_size(entries)

  @doc "The process that sent a request with `target` (`nil` for `:drop_store`)."
  @spec caller(target()) :: pid() | nil
  def caller({:reply, {pid, _tag}}), do: pid
  def caller({:send, pid, _tag}), do: pid
  def caller({:new_store, {pid, _tag}, _holder}), do: pid
  def caller(:drop_store), do: nil

  defp tag(tags, {:reply, {_pid, tag}}, id), do: Map.put(tags, tag, id)
  defp tag(tags, {:new_store, {_pid, tag}, _holder}, id), do: Map.put(tags, tag, id)
  defp tag(tags, _target, _id), do: tags

  defp untag(tags, {:reply, {_pid, tag}}), do: Map.delete(tags, tag)
  defp untag(tags, {:new_store, {_pid, tag}, _holder}), do: Map.delete(tags, tag)
  defp untag(tags, _target), do: tags
end
