defmodule Wasmex.Store do
  @moduledoc """
  Creates stores: the containers of Wasm instances and their state.

  A store created without an engine runs in an OS process of its own, which ends when
  the store is no longer used (its creator and every instance server using it have
  exited). A store created with a `Wasmex.Engine` lives in that engine's process.

      iex> {:ok, store} = Wasmex.Store.new()
      iex> match?(%Wasmex.StoreOrCaller{}, store)
      true
  """

  alias Wasmex.{Engine, EngineConfig, Host, StoreLimits, StoreOrCaller}
  alias Wasmex.Wasi.WasiOptions

  @doc "Creates a store, optionally with limits and in a given engine."
  @spec new(StoreLimits.t() | nil, Engine.t() | nil) ::
          {:ok, StoreOrCaller.t()} | {:error, term()}
  def new(limits \\ nil, engine \\ nil) do
    create(limits, nil, engine)
  end

  @doc "Creates a store whose instances get WASI, configured by `options`."
  @spec new_wasi(WasiOptions.t(), StoreLimits.t() | nil, Engine.t() | nil) ::
          {:ok, StoreOrCaller.t()} | {:error, term()}
  def new_wasi(%WasiOptions{} = options, limits \\ nil, engine \\ nil) do
    with {:ok, wasi} <- WasiOptions.to_wire(options), do: create(limits, wasi, engine)
  end

  @doc false
  # A store in an existing host (earlier Wasmex API: instances of a module).
  @spec new_in(pid(), StoreLimits.t() | nil, WasiOptions.t() | nil) ::
          {:ok, StoreOrCaller.t()} | {:error, term()}
  def new_in(host, limits, nil), do: store_in(host, false, limits, nil)

  def new_in(host, limits, wasi),
    do: with({:ok, wire} <- WasiOptions.to_wire(wasi), do: store_in(host, false, limits, wire))

  defp create(limits, wasi, engine) do
    with {:ok, host, own?} <- host_for(engine), do: store_in(host, own?, limits, wasi)
  end

  # A store in `host`; `own?`: the host was started for this store alone.
  defp store_in(host, own?, limits, wasi) do
    case Host.new_store(host, StoreLimits.to_wire(limits), wasi, self()) do
      {:ok, id} ->
        # A host of its own lives as long as its store does, not as long as its creator.
        if own?, do: Host.disown(host)
        {:ok, %StoreOrCaller{host: host, store_id: id}}

      {:error, _} = error ->
        if own?, do: GenServer.stop(host)
        error
    end
  end

  defp host_for(nil) do
    case Host.Spare.take(self()) do
      {:ok, host} -> {:ok, host, true}
      :none -> with {:ok, host} <- Host.start(%EngineConfig{}, self()), do: {:ok, host, true}
    end
  end

  defp host_for(%Engine{host: host}), do: {:ok, host, false}

  @doc false
  # Lets `pid` keep the store alive too.
  @spec retain(StoreOrCaller.t(), pid()) :: :ok | {:error, term()}
  def retain(%StoreOrCaller{host: host, store_id: id}, pid), do: Host.retain(host, id, pid)

  @doc false
  @spec release(StoreOrCaller.t(), pid()) :: :ok
  def release(%StoreOrCaller{host: host, store_id: id}, pid), do: Host.release(host, id, pid)
end
