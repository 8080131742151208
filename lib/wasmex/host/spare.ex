defmodule Wasmex.Host.Spare do
  @moduledoc """
  Keeps default hosts started ahead of need, so that a store created without an engine
  (`Wasmex.Store.new/0`, `Wasmex.start_link(%{bytes: ...})`) gets its own OS process at
  once instead of waiting for one to start (a few milliseconds). Each taken host is
  replaced in the background.

  How many to keep: `config :wasmex, spare_hosts: n` (default 1; 0 turns this off). A spare
  costs one idle port process (about 7 MB resident).
  """
  use GenServer

  @refill_delay_ms 10

  alias Wasmex.{EngineConfig, Host, Wire}

  @doc false
  def start_link(count), do: GenServer.start_link(__MODULE__, count, name: __MODULE__)

  @doc "A ready default host, now owned by `owner`, or `:none`."
  @spec take(pid()) :: {:ok, pid()} | :none
  def take(owner) do
    GenServer.call(__MODULE__, {:take, owner})
  catch
    :exit, _ -> :none
  end

  @impl true
  def init(count), do: {:ok, %{count: count, ready: %{}}, {:continue, :fill}}

  @impl true
  def handle_continue(:fill, state), do: {:noreply, fill(state)}

  @impl true
  def handle_call({:take, owner}, _from, state) do
    case Enum.at(Map.keys(state.ready), 0) do
      nil ->
        # Starts come faster than the refills: start one now.
        {:reply, :none, state, {:continue, :fill}}

      host ->
        {ref, ready} = Map.pop(state.ready, host)
        Process.demonitor(ref, [:flush])
        reply = if Host.adopt(host, owner) == :ok, do: {:ok, host}, else: :none
        # Refill a little later: a new port's start-up competing for the CPUs with the
        # one just taken would slow down the very start it is meant to speed up.
        Process.send_after(self(), :fill, @refill_delay_ms)
        {:reply, reply, %{state | ready: ready}}
    end
  end

  def handle_info(:fill, state), do: {:noreply, fill(state)}

  @impl true
  def handle_info({:DOWN, _ref, :process, host, _reason}, state),
    do: {:noreply, %{state | ready: Map.delete(state.ready, host)}, {:continue, :fill}}

  defp fill(%{count: count, ready: ready} = state) when map_size(ready) >= count, do: state

  defp fill(state) do
    case Host.start(%EngineConfig{}, self()) do
      {:ok, host} ->
        warm_up(host)
        fill(%{state | ready: Map.put(state.ready, host, Process.monitor(host))})

      {:error, _} ->
        state
    end
  end

  # A port's first compile, instantiation and call pay one-time costs (code paged in,
  # signal handlers installed, caches opened): pay them before anyone waits. Measured:
  # start_link on a taken spare 2.3 -> see docs/performance.md.
  @warm_up_source {:wasm,
                   "(module (memory 1) (func (export \"f\") (param i32) (result i32) local.get 0))"}

  defp warm_up(host) do
    key = Wasmex.Module.key(@warm_up_source)

    with {:ok, _} <- Host.request(host, Wire.module_compile(key, @warm_up_source)),
         {:ok, store} <- Host.new_store(host, nil, nil, self()),
         {:ok, instance} <-
           Host.request(host, Wire.instantiate(store, key, nil, <<>>, [], [], 1_000)) do
      Host.request(host, Wire.call(store, instance, "f", [1], 1_000))
      Host.release(host, store, self())
    end
  end
end
