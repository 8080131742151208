defmodule Wasmex.Pool.Slots do
  @moduledoc """
  The in-flight calls of a `Wasmex.Pool` on this node, bounded by `max_queue`: one row per
  call in an ETS table that this process owns, so a slot is the row, and a caller killed
  before it could free its slot (`Process.exit(pid, :kill)` skips `after` blocks) has it
  freed by this process, which monitors every caller holding one.

  A caller tells this process it is about to take a slot (a cast) *before* it inserts the
  row: whenever a row exists, its caller is monitored, so no kill can leave a row behind.

      iex> {:ok, slots} = Wasmex.Pool.Slots.start_link(name: :doc_slots, max_queue: 1)
      iex> {:ok, slot} = Wasmex.Pool.Slots.take(:doc_slots)
      iex> Wasmex.Pool.Slots.take(:doc_slots)
      {:error, :queue_full}
      iex> Wasmex.Pool.Slots.give_back(:doc_slots, slot)
      :ok
      iex> Wasmex.Pool.Slots.in_flight(:doc_slots)
      0
      iex> GenServer.stop(slots)
      :ok
  """
  use GenServer

  @typedoc "A taken slot, to give back with `give_back/2`."
  @opaque slot :: reference()

  @doc "Starts the slots of a pool: `name` (the table's name too) and `max_queue`."
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    name = Keyword.fetch!(opts, :name)
    GenServer.start_link(__MODULE__, opts, name: name)
  end

  @doc """
  Takes a slot for the calling process, or `{:error, :queue_full}` when `max_queue` calls
  are in flight (`{:error, :not_running}` when the pool is not running). Under a burst of
  callers a few may be refused just below the bound; none is ever admitted above it.
  """
  @spec take(atom()) :: {:ok, slot()} | {:error, :queue_full | :not_running}
  def take(name) do
    slot = make_ref()
    # Monitored first, then counted: a kill between the two leaves nothing behind.
    GenServer.cast(name, {:hold, self()})

    try do
      :ets.insert(name, {slot, self()})

      if :ets.info(name, :size) > :persistent_term.get({__MODULE__, name}) do
        :ets.delete(name, slot)
        GenServer.cast(name, {:done, self()})
        {:error, :queue_full}
      else
        {:ok, slot}
      end
    rescue
      # The table is gone with its owner (the pool stopped, or is restarting).
      ArgumentError -> {:error, :not_running}
    end
  end

  @doc "Frees a slot taken by the calling process."
  @spec give_back(atom(), slot()) :: :ok
  def give_back(name, slot) do
    :ets.delete(name, slot)
    GenServer.cast(name, {:done, self()})
  rescue
    ArgumentError -> :ok
  end

  @doc "How many calls of the pool are in flight on this node."
  @spec in_flight(atom()) :: non_neg_integer()
  def in_flight(name), do: :ets.info(name, :size)

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    :persistent_term.put({__MODULE__, name}, Keyword.fetch!(opts, :max_queue))
    :ets.new(name, [:named_table, :public, :set, write_concurrency: true])
    # pid => {monitor, number of its holds not yet done}
    {:ok, %{name: name, holders: %{}}}
  end

  @impl true
  def handle_cast({:hold, pid}, %{holders: holders} = state) do
    holders =
      case holders do
        %{^pid => {ref, n}} -> Map.put(holders, pid, {ref, n + 1})
        _ -> Map.put(holders, pid, {Process.monitor(pid), 1})
      end

    {:noreply, %{state | holders: holders}}
  end

  def handle_cast({:done, pid}, %{holders: holders} = state) do
    holders =
      case holders do
        %{^pid => {ref, 1}} ->
          Process.demonitor(ref, [:flush])
          Map.delete(holders, pid)

        %{^pid => {ref, n}} ->
          Map.put(holders, pid, {ref, n - 1})

        _ ->
          holders
      end

    {:noreply, %{state | holders: holders}}
  end

  @impl true
  def handle_info({:DOWN, _ref, :process, pid, _reason}, state) do
    # The slots of a caller that died without giving them back.
    :ets.match_delete(state.name, {:_, pid})
    {:noreply, %{state | holders: Map.delete(state.holders, pid)}}
  end
end
