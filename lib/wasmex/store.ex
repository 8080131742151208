defmodule Wasmex.Store do
  @moduledoc """
  Creates stores: the containers of Wasm instances and their state.

  A store created without an engine runs in an OS process of its own, which ends when
  the store goes. A store created with a `Wasmex.Engine` lives in that engine's process.

      iex> {:ok, store} = Wasmex.Store.new()
      iex> match?(%Wasmex.StoreOrCaller{}, store)
      true

  ## Lifetime

  A store is held by the process that created it and by every `Wasmex` instance server
  using it. It goes, with its instances and their memory, when the last of them exits,
  or at once when `release/1` is called. (Wasmex frees a store when its term is garbage
  collected; a store here lives in another OS process, which cannot see that, so a store
  lives as long as the processes holding it.)

  An instance lives as long as its store, as in wasmtime: stopping its server stops any
  call running on it and refuses later ones, but its memory and its engine slot are
  freed only with the store. Starting and stopping instances over and over in one store
  thus grows it; give each short-lived instance a store of its own.

  A long-lived process that creates stores as it works (a GenServer handling jobs) must
  call `release/1` on each store it is done with; otherwise they pile up until it exits,
  and an engine refuses more instances than its `instance_slots`. A process that holds
  more stores than the application environment's `:stores_per_process_warning` (default
  500) gets a warning logged, once each time it goes past that number.

      iex> {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      iex> {:ok, store} = Wasmex.Store.new(nil, engine)
      iex> {:ok, module} = Wasmex.Module.compile(store, ~s{(module (func (export "f") (result i32) i32.const 1))})
      iex> {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      iex> Wasmex.call_function(pid, "f", [])
      {:ok, [1]}
      iex> GenServer.stop(pid)
      iex> Wasmex.Store.release(store)
      :ok
      iex> {:error, "unknown store" <> _} = Wasmex.StoreOrCaller.get_fuel(store)
  """

  require Logger

  alias Wasmex.{Engine, EngineConfig, Host, StoreLimits, StoreOrCaller}
  alias Wasmex.Wasi.WasiOptions

  # The process dictionary key of the stores the calling process created and holds.
  @held {__MODULE__, :held}

  @doc """
  Creates a store, optionally with limits and in a given engine.

  The store is made in its host's OS process along with its first request, so creating
  it waits for no answer from there. Should that process fail to make it, every request
  on the store returns `{:error, "the store could not be created: " <> reason}`.
  (Limits that are not non-negative integers are checked first, and refused here.)
  """
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

  @doc false
  # A store whose WASI options are already in their wire form (WASI preview 2 for
  # components, see Wasmex.Components.Store.new_wasi/3).
  @spec new_wired(term(), StoreLimits.t() | nil, Engine.t() | nil) ::
          {:ok, StoreOrCaller.t()} | {:error, term()}
  def new_wired(wasi, limits, engine), do: create(limits, wasi, engine)

  defp create(limits, wasi, engine) do
    with {:ok, host, own?} <- host_for(engine), do: store_in(host, own?, limits, wasi)
  end

  # A store in `host`; `own?`: the host was started for this store alone.
  defp store_in(host, own?, limits, wasi) do
    case Host.new_store(host, StoreLimits.to_wire(limits), wasi, self()) do
      {:ok, id} ->
        # A host of its own lives as long as its store does, not as long as its creator.
        if own?, do: Host.disown(host)
        count_held(host, id)
        {:ok, StoreOrCaller.new(host, id)}

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
  # `pid` stops holding the store; the store goes when nobody holds it.
  @spec release(StoreOrCaller.t(), pid()) :: :ok
  def release(%StoreOrCaller{host: host, store_id: id}, pid) do
    if pid == self(), do: forget_held(host, id)
    Host.release(host, id, pid)
  end

  @doc """
  Frees the store now, whoever holds it: its instances and their memory go (in the
  port process), a call running on it is stopped (`{:error, "stopped: the store was
  released"}`), and instance servers using it get `{:error, reason}` from then on. Any
  later request on the store returns `{:error, "unknown store " <> _}`, as does releasing
  it again. A caller (inside an import callback) cannot be released.

      iex> {:ok, store} = Wasmex.Store.new()
      iex> Wasmex.Store.release(store)
      :ok
      iex> {:error, "unknown store" <> _} = Wasmex.Store.release(store)
  """
  @spec release(StoreOrCaller.t()) :: :ok | {:error, String.t()}
  def release(%StoreOrCaller{caller_id: nil, host: host, store_id: id}) do
    forget_held(host, id)

    case Host.free_store(host, id) do
      :ok -> :ok
      {:error, "the Wasm host is not running" <> _} -> {:error, "unknown store #{id}"}
      error -> error
    end
  end

  def release(%StoreOrCaller{}),
    do: {:error, "a caller cannot be released; release the store it stands for"}

  # The stores this process created and still holds, to warn when there are many. A
  # store leaves the set when this process releases it; stores of hosts that stopped are
  # swept when the warning is considered.
  defp count_held(host, id) do
    held = MapSet.put(Process.get(@held, MapSet.new()), {host, id})
    limit = Application.get_env(:wasmex, :stores_per_process_warning, 500)

    held =
      if MapSet.size(held) > limit,
        do: MapSet.filter(held, fn {h, _} -> node(h) != node() or Process.alive?(h) end),
        else: held

    Process.put(@held, held)

    if MapSet.size(held) == limit + 1 do
      Logger.warning(
        "#{inspect(self())} holds #{limit + 1} Wasmex stores (more than " <>
          ":stores_per_process_warning): release each store it is done with, " <>
          "see Wasmex.Store.release/1"
      )
    end
  end

  defp forget_held(host, id) do
    case Process.get(@held) do
      nil -> :ok
      held -> Process.put(@held, MapSet.delete(held, {host, id}))
    end
  end
end
