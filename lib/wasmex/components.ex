defmodule Wasmex.Components do
  @moduledoc """
  WebAssembly components (the Component Model, WIT-typed interfaces) with the API of
  Wasmex 0.15.1, run in the `wasmex_port` OS process like core modules.

  A `Wasmex.Components` process is a GenServer holding one component instance:

      iex> {:ok, pid} = Wasmex.Components.start_link(%{path: "test/fixtures/components/types.wasm"})
      iex> Wasmex.Components.call_function(pid, "greet", ["World"])
      {:ok, "Hello, World!"}
      iex> Wasmex.Components.call_function(pid, {"wasmex:types/roundtrip@0.1.0", "echo-person"}, [
      ...>   %{"full-name": "Ada", age: 36, tags: ["math"], home: {:some, %{x: 1, y: 2}}}
      ...> ])
      {:ok, %{"full-name": "Ada", age: 36, tags: ["math"], home: {:some, %{x: 1, y: 2}}}}

  ## Options of `start_link/1` (a map or a keyword list)

    * `:bytes` or `:path` - the component (binary or text format);
    * `:imports` - host functions: `%{"name" => {:fn, fun}}` for world-level imports,
      `%{"ns:pkg/iface@ver" => %{"name" => {:fn, fun}}}` for functions of an imported
      interface. `fun` gets the params and returns the result (anything for a function
      without one). Each call runs outside this server, in the process that runs this
      instance's imports one after another (a nested one gets a process of its own);
    * `:wasi` - a `Wasmex.Wasi.WasiP2Options` for WASI preview 2 (without it, a component
      importing WASI gets an empty context: no arguments, environment, directories or
      stdio);
    * `:store` - a store from `Wasmex.Components.Store` to instantiate in (then `:wasi`
      and `:store_limits` are the store's); `:store_limits` - a `Wasmex.StoreLimits` for
      the store made otherwise; `:engine` - the `Wasmex.Engine` to make it in;
    * `:name` and other GenServer options.

  ## Values

  WIT values map to Elixir as in Wasmex 0.15.1: integers, floats, `bool`, `char` (a
  one-character string; a code point is accepted), `string`, lists, tuples, records as
  maps with atom keys that keep the WIT names (`%{"full-name": "Ada"}`), variants as
  `case` or `{case, value}`, enums as atoms, flags as maps of flag atoms to booleans
  (results hold the set flags), `option` as `:none` / `{:some, v}`, `result` as
  `{:ok, v}` / `{:error, e}` (bare `:ok` / `:error` for a side without a type). A value
  that does not fit gets an error naming where it is; unlike 0.15.1, an integer out of its
  type's range is an error, not wrapped:

      iex> {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/types.wasm")
      iex> Wasmex.Components.call_function(pid, {"wasmex:types/roundtrip@0.1.0", "echo-u8"}, [256])
      {:error, "256 is out of range for u8 (0 to 255) at \\"v\\""}

  ## Departures from Wasmex 0.15.1

    * A call still running at its timeout is stopped, not left running in the background.
    * A failed call (trap, timeout, fuel, failed import) poisons the instance: later calls
      return `{:error, "the component instance stopped after an earlier failure (...)"}`.
      Start a new server for a fresh instance. wasmtime enters no component instance of
      that store again, so on a store given with `:store` the others stop too (`"the
      store's component instances stopped after an earlier failure in one of them
      (...)"`), and a new instance in it is refused: start them in a new store.
    * Stopping the server stops a call still running on its instance.
    * A function without a result returns `{:ok, []}`.
  """

  use GenServer

  alias Wasmex.{Callback, Host, StoreOrCaller, Wire}
  alias Wasmex.Host.Client
  alias Wasmex.Server.Stops
  alias Wasmex.Components.{Component, Imports, Instance, Store}

  @type function_name_or_path :: Instance.function_name_or_path()

  @doc "Returns a specification to start this module under a supervisor."
  @spec child_spec(map() | keyword()) :: Supervisor.child_spec()
  def child_spec(opts), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}

  @doc """
  Starts a GenServer holding an instance of the component given by `:bytes` or `:path`.
  Returns `{:ok, pid}` or `{:error, reason}`.

      iex> Wasmex.Components.start_link(%{bytes: "(module)"})
      {:error, "the bytes are a core module, not a component: compile them with Wasmex.Module.compile/2"}
      iex> Wasmex.Components.start_link(%{})
      {:error, "either :bytes or :path must be given"}
  """
  @spec start_link(map() | keyword()) :: GenServer.on_start()
  def start_link(opts) when is_list(opts) or is_map(opts) do
    opts = Map.new(opts)
    {server_opts, opts} = Map.split(opts, [:name, :debug, :spawn_opt, :hibernate_after])

    with :ok <- check_options(opts),
         {:ok, bytes} <- component_bytes(opts),
         {:ok, imports} <- Imports.normalize(Map.get(opts, :imports, %{})) do
      GenServer.start_link(
        __MODULE__,
        opts |> Map.put(:bytes, bytes) |> Map.put(:imports, imports),
        Map.to_list(server_opts)
      )
    end
  end

  # The options whose value must be a struct of one kind (nil: not given).
  @option_kinds [
    store: {StoreOrCaller, "a store (Wasmex.Components.Store.new/0)"},
    engine: {Wasmex.Engine, "a %Wasmex.Engine{}"},
    store_limits: {Wasmex.StoreLimits, "a %Wasmex.StoreLimits{}"}
  ]

  defp check_options(%{bytes: _, path: _}),
    do: {:error, ":bytes and :path are mutually exclusive"}

  defp check_options(opts) do
    Enum.find_value(@option_kinds, :ok, fn {key, {struct, kind}} ->
      case Map.get(opts, key) do
        nil -> nil
        %{__struct__: ^struct} -> nil
        other -> {:error, ":#{key} must be #{kind}, got: #{inspect(other, limit: 5)}"}
      end
    end)
  end

  defp component_bytes(%{bytes: bytes}) when is_binary(bytes), do: {:ok, bytes}

  defp component_bytes(%{bytes: bytes}),
    do: {:error, ":bytes must be a binary, got: #{inspect(bytes, limit: 5)}"}

  defp component_bytes(%{path: path}) do
    with {:ok, path} <- path_string(path) do
      case File.read(path) do
        {:ok, bytes} -> {:ok, bytes}
        {:error, reason} -> {:error, "cannot read #{path}: #{:file.format_error(reason)}"}
      end
    end
  end

  defp component_bytes(_opts), do: {:error, "either :bytes or :path must be given"}

  defp path_string(path) when is_binary(path), do: {:ok, path}

  defp path_string(path) do
    if is_list(path) and :io_lib.printable_unicode_list(path),
      do: {:ok, List.to_string(path)},
      else: {:error, ":path must be a string, got: #{inspect(path, limit: 5)}"}
  end

  @doc """
  Calls an exported function by name, or by `{"ns:pkg/iface@ver", "name"}` (an interface
  may be named without its version when the component exports one version of it).
  Returns `{:ok, result}` or `{:error, reason}`; a call still running after `timeout`
  milliseconds is stopped and returns `{:error, "timed out: ..."}`.

  The call goes from the caller straight to the instance's host, not through the server
  process (as `Wasmex.call_function/4` does); a caller that dies has its call stopped. Each
  call is a `[:wasmex, :component, :call]` telemetry span (see `docs/telemetry.md`).

      iex> {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/types.wasm")
      iex> Wasmex.Components.call_function(pid, "no-such-function", [])
      {:error, "exported function `no-such-function` not found"}
  """
  @spec call_function(GenServer.server(), function_name_or_path(), list(), timeout()) ::
          {:ok, term()} | {:error, term()}
  def call_function(server, name_or_path, params, timeout \\ 5_000) do
    # Without :telemetry, no span (nor its metadata) is built.
    if Wasmex.Telemetry.enabled?() do
      metadata = %{instance: server, function: name_or_path, timeout: timeout}

      Wasmex.Telemetry.span([:component, :call], metadata, fn ->
        call_direct(server, name_or_path, params, timeout)
      end)
    else
      call_direct(server, name_or_path, params, timeout)
    end
  end

  # A call goes from its caller straight to the instance's host, like a core call
  # (`Wasmex.Server`): the server publishes its route in `Wasmex.Routes` under
  # `{Wasmex.Components, pid}`, and a caller that cannot read it there (another node's
  # server) asks the server for it. The host watches the caller: one that dies or stops
  # waiting has its call cancelled.
  defp call_direct(server, name_or_path, params, timeout) do
    with {:ok, {host, ctx, id}} <- route(server),
         ctx = Instance.request_context(host, ctx),
         {:ok, request} <- Instance.call_request(ctx, id, name_or_path, params, timeout) do
      case Client.call(host, {:request, request}, Client.for_call(timeout)) do
        {:error, :timeout} -> {:error, "timed out: no answer within #{timeout} ms"}
        {:error, {:down, reason}} -> not_running(reason)
        answer -> answer
      end
    else
      {:down, reason} -> not_running(reason)
      {:error, _} = error -> error
    end
  end

  defp not_running(reason), do: {:error, "the component is not running: #{inspect(reason)}"}

  # Where a server's calls go: `{host, context, component instance id}`.
  defp route(pid) when is_pid(pid) and node(pid) == node() do
    case :ets.lookup(Wasmex.Routes, {__MODULE__, pid}) do
      [{_, host, ctx, id}] ->
        if Process.alive?(pid), do: {:ok, {host, ctx, id}}, else: {:down, :noproc}

      [] ->
        ask_route(pid)
    end
  end

  defp route(pid) when is_pid(pid), do: ask_route(pid)

  defp route(name) do
    case GenServer.whereis(name) do
      pid when is_pid(pid) -> route(pid)
      {name, node} when node != node() -> ask_route({name, node})
      _ -> {:down, :noproc}
    end
  end

  # A server whose route is not in this node's table (another node's) says it itself.
  defp ask_route(server) do
    GenServer.call(server, :component_route, Client.request_timeout())
  catch
    :exit, {reason, {GenServer, :call, _}} -> {:down, reason}
  end

  @doc """
  The `Wasmex.Components.Instance` the server holds.

      iex> {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/types.wasm")
      iex> instance = Wasmex.Components.instance(pid)
      iex> Wasmex.Components.Instance.call(instance, "add", [2, 3])
      {:ok, 5}
  """
  @spec instance(GenServer.server()) :: Instance.t()
  def instance(server), do: GenServer.call(server, :instance)

  @impl true
  def init(opts) do
    # Imports are registered before instantiating: the instance's callbacks come to this
    # process's row.
    if opts.imports != %{}, do: Callback.register_component(opts.imports)

    with {:ok, store, own?} <- store(opts),
         {:ok, component} <- Component.new(store, opts.bytes),
         {:ok, instance} <- Instance.new(store, component, opts.imports) do
      Process.monitor(store.host)

      :ets.insert(
        Wasmex.Routes,
        {{__MODULE__, self()}, store.host, route_context(store), instance.id}
      )

      # What stops a call still running on the instance when this server ends (see
      # `Wasmex.Server.Stops`). A caller context's store is its own caller's.
      if is_nil(store.caller_id),
        do: Stops.put(self(), Wire.component_instance_stop(store.store_id, instance.id))

      {:ok, %{store: store, own_store?: own?, component: component, instance: instance}}
    else
      {:error, reason} ->
        Callback.unregister(self())
        fail_start(reason)
    end
  end

  # Answers start_link with {:error, reason} and ends this process with reason :normal,
  # so that the linked caller is not taken down. The exit signal to itself is not an
  # exception inside init/1, which gen_server would answer start_link a second time for
  # (a stray `{:ack, ...}` message in the caller's mailbox).
  defp fail_start(reason) do
    :proc_lib.init_ack({:error, reason})
    Process.exit(self(), :normal)

    receive do
    end
  end

  defp route_context(store), do: StoreOrCaller.context(store)

  defp store(%{store: %StoreOrCaller{} = store}) do
    with :ok <- Wasmex.Store.retain(store, self()), do: {:ok, store, false}
  end

  defp store(opts) do
    limits = Map.get(opts, :store_limits)
    engine = Map.get(opts, :engine)

    made =
      case Map.get(opts, :wasi) do
        nil -> Store.new(limits, engine)
        %Wasmex.Wasi.WasiP2Options{} = wasi -> Store.new_wasi(wasi, limits, engine)
        other -> {:error, "wasi must be a %Wasmex.Wasi.WasiP2Options{}, got: #{inspect(other)}"}
      end

    with {:ok, store} <- made, do: {:ok, store, true}
  end

  @impl true
  def handle_call(:instance, _from, state), do: {:reply, state.instance, state}

  def handle_call(:component_route, _from, %{store: store, instance: instance} = state),
    do: {:reply, {:ok, {store.host, route_context(store), instance.id}}, state}

  # What `Wasmex.call_function/4` asks a server it finds no route for: this is not one.
  def handle_call(:route, _from, state),
    do: {:reply, {:error, "a component server: use Wasmex.Components.call_function/4"}, state}

  @impl true
  def handle_info({:DOWN, _ref, :process, host, reason}, %{store: %{host: host}} = state),
    do: {:stop, {:shutdown, {:wasmex_host_down, reason}}, state}

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    :ets.delete(Wasmex.Routes, {__MODULE__, self()})
    Callback.unregister(self())
    store = state.store

    # A call still running on this instance stops, and later ones are refused: nobody
    # serves the instance any more.
    Enum.each(Stops.take(self()), &Host.notify(store.host, &1))

    Host.release_now(store.host, store.store_id, self())
    if state.own_store?, do: Wasmex.Store.release(state.store, self())
    :ok
  end
end
