defmodule Wasmex.Components.Instance do
  @moduledoc """
  An instantiated component inside a store: the component model equivalent of
  `Wasmex.Instance`. Most applications use `Wasmex.Components` instead, which also runs
  the instance's imports.

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> {:ok, component} = Wasmex.Components.Component.new(store, File.read!("test/fixtures/components/types.wasm"))
      iex> {:ok, instance} = Wasmex.Components.Instance.new(store, component, %{})
      iex> Wasmex.Components.Instance.call(instance, {"wasmex:types/roundtrip@0.1.0", "echo-point"}, [%{x: 1, y: -2}])
      {:ok, %{x: 1, y: -2}}

  Import functions given to `new/3` run in processes of their own when the instance is
  served by `Wasmex.Components`. A process that calls `new/3` itself receives
  `{:wasmex_callback, host, store_id, callback_id, interface, name, params}` for each
  import call (`interface` is `""` for a world-level import) and answers with
  `Wasmex.Host.notify(host, Wasmex.Wire.callback_return(store_id, callback_id, {:ok, value}))`.

  After a failed call (a trap, a timeout, fuel running out, an import that failed) the
  instance cannot be entered again: later calls return `{:error, "the component
  instance stopped after an earlier failure (" <> reason}`. Start a new instance.
  """

  alias Wasmex.{Host, Stats, StoreOrCaller, Wire}
  alias Wasmex.Components.{Component, Imports}

  @enforce_keys [:host, :store_id, :id]
  # `store_resource`, `instance_resource` and `reference` are the fields of Wasmex's
  # struct; the others are internal.
  defstruct [:store_resource, :instance_resource, :reference, :host, :store_id, :id, :store]

  @type t :: %__MODULE__{
          store_resource: {pid(), Wasmex.Wire.context()},
          instance_resource: {pid(), non_neg_integer(), non_neg_integer()},
          reference: reference(),
          host: pid(),
          store_id: non_neg_integer(),
          id: non_neg_integer(),
          store: StoreOrCaller.t()
        }

  @typedoc "A function name, or an exported interface and a function name."
  @type function_name_or_path :: String.t() | atom() | [String.t() | atom()] | tuple()

  @instantiate_timeout 5_000

  @doc """
  Instantiates `component` in `store`, with `imports`
  (`%{"name" => {:fn, fun}, "ns:pkg/iface@ver" => %{"name" => {:fn, fun}}}`).

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> {:ok, component} = Wasmex.Components.Component.new(store, File.read!("test/fixtures/components/imports.wasm"))
      iex> {:error, reason} = Wasmex.Components.Instance.new(store, component, %{})
      iex> reason =~ "component imports instance `wasmex:host/kv@0.1.0`"
      true
  """
  @spec new(StoreOrCaller.t(), Component.t(), map()) :: {:ok, t()} | {:error, String.t()}
  def new(%StoreOrCaller{} = store, %Component{} = component, imports \\ %{}) do
    Wasmex.Telemetry.span([:component, :instantiate], %{store: store, component: component}, fn ->
      instantiate(store, component, imports)
    end)
  end

  defp instantiate(store, component, imports) do
    with {:ok, normalized} <- Imports.normalize(imports) do
      handler = :erlang.term_to_binary(self())
      ctx = request_context(store.host, StoreOrCaller.context(store))
      imports = Imports.to_wire(normalized)

      instantiate = fn source ->
        Wire.component_instantiate(
          ctx,
          component.key,
          source,
          handler,
          imports,
          @instantiate_timeout
        )
      end

      result =
        case Host.request(store.host, instantiate.(nil)) do
          {:error, "the component is not loaded" <> _} ->
            Host.request(store.host, instantiate.(component.source))

          result ->
            result
        end

      with {:ok, id} <- result do
        {:ok,
         %__MODULE__{
           store_resource: store.resource,
           instance_resource: {store.host, store.store_id, id},
           reference: make_ref(),
           host: store.host,
           store_id: store.store_id,
           id: id,
           store: store
         }}
      end
    end
  end

  @doc """
  Calls an exported function and waits for its result: `{:ok, value}` (`{:ok, []}` for a
  function without a result) or `{:error, reason}`. A call still running after `timeout`
  milliseconds is stopped, and the instance with it.

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> {:ok, component} = Wasmex.Components.Component.new(store, File.read!("test/fixtures/components/types.wasm"))
      iex> {:ok, instance} = Wasmex.Components.Instance.new(store, component, %{})
      iex> Wasmex.Components.Instance.call(instance, "add", [1, 2])
      {:ok, 3}
      iex> Wasmex.Components.Instance.call(instance, "add", [1, 4_294_967_296])
      {:error, "4294967296 is out of range for u32 (0 to 4294967295) at \\"b\\""}
  """
  @spec call(t(), function_name_or_path(), list(), timeout()) :: {:ok, term()} | {:error, term()}
  def call(%__MODULE__{} = instance, name_or_path, params, timeout \\ 5_000) do
    with {:ok, request} <- call_request(instance, name_or_path, params, timeout) do
      case Wasmex.Host.Client.call(
             instance.host,
             {:request, request},
             Wasmex.Host.Client.wait_for(request)
           ) do
        {:error, :timeout} -> {:error, "timed out: no answer within #{timeout} ms"}
        {:error, {:down, reason}} -> {:error, Host.down_message(reason)}
        answer -> answer
      end
    end
  end

  @doc """
  Schedules a call to an exported function. `from` is the caller tuple given to
  `c:GenServer.handle_call/3`: the result is sent there with `GenServer.reply/2`. Unlike
  Wasmex 0.15.1, a call still running after `timeout` is stopped (and the instance with
  it), not left running.
  """
  @spec call_function(t(), function_name_or_path(), list(), GenServer.from(), timeout()) :: :ok
  def call_function(%__MODULE__{} = instance, name_or_path, params, from, timeout \\ 5_000) do
    case call_request(instance, name_or_path, params, timeout) do
      {:ok, request} -> Host.cast_request(instance.host, request, {:reply, from})
      {:error, _} = error -> GenServer.reply(from, error)
    end

    :ok
  end

  defp call_request(instance, name_or_path, params, timeout) do
    ctx = request_context(instance.host, StoreOrCaller.context(instance.store))
    call_request(ctx, instance.id, name_or_path, params, timeout)
  end

  @doc false
  # The context of a component request to store context `ctx` on `host`: through the
  # caller when the calling process is an import of the store's running call, which then
  # serves it inside that call (as a core request through the import's caller is); any
  # other waits for the running call to end, like every request for the store.
  @spec request_context(pid(), Wire.context()) :: Wire.context()
  def request_context(host, store_id) when is_integer(store_id) do
    case Process.get(:wasmex_waiting_store) do
      {^host, ^store_id, callback_id} -> {:caller, store_id, callback_id}
      _ -> store_id
    end
  end

  def request_context(_host, ctx), do: ctx

  @doc false
  # The `component_call` request, or the error of a bad path or params.
  @spec call_request(
          Wire.context(),
          non_neg_integer(),
          function_name_or_path(),
          term(),
          timeout()
        ) ::
          {:ok, Wire.request()} | {:error, String.t()}
  def call_request(ctx, id, name_or_path, params, timeout) when is_list(params) do
    with {:ok, path} <- path(name_or_path) do
      Stats.add(:component_calls)
      {:ok, Wire.component_call(ctx, id, path, params, timeout)}
    end
  end

  def call_request(_ctx, _id, _name_or_path, params, _timeout),
    do: {:error, "params must be a list, got: #{inspect(params)}"}

  @typedoc """
  Where an instance's calls spent their time in the port, in nanoseconds summed over
  `calls` (see `timing/1`).
  """
  @type timing :: %{
          calls: non_neg_integer(),
          lookup_ns: non_neg_integer(),
          params_ns: non_neg_integer(),
          call_ns: non_neg_integer(),
          results_ns: non_neg_integer()
        }

  @doc """
  Where the instance's calls spent their time in the port, summed since it was made:
  `calls` (those that reached wasmtime), and in nanoseconds `lookup_ns` (finding the
  export along the call's path), `params_ns` (converting the params to the function's WIT
  types), `call_ns` (wasmtime lowering them into the guest, the guest running, and
  lifting its results) and `results_ns` (converting the results to terms). The rest of a
  call's time is the BEAM's and the way there and back.

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> {:ok, component} = Wasmex.Components.Component.new(store, File.read!("test/fixtures/components/types.wasm"))
      iex> {:ok, instance} = Wasmex.Components.Instance.new(store, component, %{})
      iex> {:ok, 3} = Wasmex.Components.Instance.call(instance, "add", [1, 2])
      iex> {:ok, %{calls: 1, call_ns: call_ns}} = Wasmex.Components.Instance.timing(instance)
      iex> call_ns > 0
      true
  """
  @spec timing(t()) :: {:ok, timing()} | {:error, term()}
  def timing(%__MODULE__{} = instance) do
    ctx = request_context(instance.host, StoreOrCaller.context(instance.store))

    case Host.request(instance.host, {:component_timing, {ctx, instance.id}}) do
      {:ok, {calls, lookup, params, call, results} = counts} ->
        if Enum.all?(Tuple.to_list(counts), &(is_integer(&1) and &1 >= 0)),
          do:
            {:ok,
             %{
               calls: calls,
               lookup_ns: lookup,
               params_ns: params,
               call_ns: call,
               results_ns: results
             }},
          else: unexpected(counts)

      {:ok, other} ->
        unexpected(other)

      {:error, _} = error ->
        error
    end
  end

  defp unexpected(answer),
    do: {:error, "unexpected answer to component_timing: #{inspect(answer)}"}

  @doc false
  # A function name or `{interface, name}` (or a list of them) as the port's path.
  @spec path(function_name_or_path()) :: {:ok, [String.t()]} | {:error, String.t()}
  # The common shapes first, without walking a list.
  def path(name) when is_binary(name), do: {:ok, [name]}
  def path({iface, name}) when is_binary(iface) and is_binary(name), do: {:ok, [iface, name]}
  def path(name) when is_atom(name), do: path([name])
  def path({iface, name}), do: path([iface, name])

  def path(parts) when is_list(parts) and parts != [] do
    if Enum.all?(parts, &(is_binary(&1) or (is_atom(&1) and not is_nil(&1)))),
      do: {:ok, Enum.map(parts, &to_string/1)},
      else: bad_path(parts)
  end

  def path(other), do: bad_path(other)

  defp bad_path(other),
    do: {:error, "a function is a name or {interface, name}, got: #{inspect(other)}"}
end
