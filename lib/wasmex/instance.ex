defmodule Wasmex.Instance do
  @moduledoc """
  An instantiated module inside a store. Usually used through the `Wasmex` server, which
  also runs the instance's import callbacks.

  Import callbacks of an instance made by a `Wasmex` server run by themselves (the server
  registers its imports, see `Wasmex.start_link/1`). A process that calls `new/4` itself
  receives `{:wasmex_callback, host, store_id, callback_id, namespace, name, params}` and
  answers with `Wasmex.Host.notify(host, Wasmex.Wire.callback_return(store_id, callback_id, result))`,
  `result` being `{:ok, [values]}` or `{:error, message}`.
  """

  alias Wasmex.{Host, Module, StoreOrCaller, Wire}

  @enforce_keys [:host, :store_id, :id, :module]
  # `resource` (`{host, store_id, instance_id}`: where the instance lives) and `reference`
  # (made with the handle) are the fields of Wasmex's struct; the others are internal.
  defstruct [:resource, :reference, :host, :store_id, :id, :module]

  @type t :: %__MODULE__{
          resource: {pid(), non_neg_integer(), non_neg_integer()},
          reference: reference(),
          host: pid(),
          store_id: non_neg_integer(),
          id: non_neg_integer(),
          module: Module.t()
        }

  @typedoc "A linked module, importable by the instance under `name`."
  @type link :: %{name: String.t(), module: Module.t()}

  @instantiate_timeout 5_000

  @doc """
  Instantiates `module` in a store.

  `imports` maps namespaces to maps of import names to `{:fn, params, results, fun}`
  (string or atom keys). `links` lists modules to instantiate first, in dependency order,
  whose exports the module can import under their `name`.
  """
  @spec new(StoreOrCaller.t(), Module.t(), map(), [link()], keyword()) ::
          {:ok, t()} | {:error, String.t()}
  def new(%StoreOrCaller{} = store, %Module{} = module, imports, links \\ [], opts \\ [])
      when is_map(imports) do
    metadata = %{store: store, module: module}

    Wasmex.Telemetry.span([:instantiate], metadata, fn ->
      instantiate(store, module, imports, links, opts[:holder], opts[:handler] || self())
    end)
  end

  defp instantiate(store, module, imports, links, holder, handler) do
    with {:ok, import_specs} <- import_specs(imports) do
      handler = :erlang.term_to_binary(handler)

      links =
        Enum.map(links, fn %{name: name, module: m} -> {to_string(name), m.key, m.source} end)

      request =
        Wire.instantiate(
          StoreOrCaller.context(store),
          module.key,
          module.source,
          handler,
          import_specs,
          links,
          @instantiate_timeout
        )

      Module.mark_instantiated(module)

      with {:ok, id} <- instantiate_request(store, request, holder) do
        {:ok,
         %__MODULE__{
           resource: {store.host, store.store_id, id},
           reference: make_ref(),
           host: store.host,
           store_id: store.store_id,
           id: id,
           module: module
         }}
      end
    end
  end

  # `holder` (an instance server) becomes a holder of the store with the same message.
  defp instantiate_request(store, request, nil), do: Host.request(store.host, request)

  defp instantiate_request(store, request, holder),
    do: Host.request_holding(store.host, request, store.store_id, holder)

  @doc false
  # The shape of an imports map, checked before a server starts (whose init would fail on
  # a malformed one, taking a linked caller along).
  @spec check_imports(term()) :: :ok | {:error, String.t()}
  def check_imports(imports) when is_map(imports) do
    with {:ok, _specs} <- import_specs(imports), do: :ok
  end

  def check_imports(other),
    do:
      {:error, "imports must be a map of namespaces to maps of functions, got: #{inspect(other)}"}

  defp import_specs(imports) do
    Enum.reduce_while(imports, {:ok, []}, fn {ns, fns}, {:ok, acc} ->
      case namespace_specs(to_string(ns), fns) do
        {:ok, specs} -> {:cont, {:ok, specs ++ acc}}
        error -> {:halt, error}
      end
    end)
  end

  defp namespace_specs(ns, fns) when is_map(fns) do
    Enum.reduce_while(fns, {:ok, []}, fn
      {name, {:fn, params, results, fun}}, {:ok, acc}
      when is_list(params) and is_list(results) and is_function(fun) ->
        {:cont, {:ok, [{ns, to_string(name), params, results} | acc]}}

      {name, other}, _ ->
        {:halt,
         {:error,
          "import #{ns}.#{name} must be {:fn, params, results, fun}, got: #{inspect(other)}"}}
    end)
  end

  defp namespace_specs(ns, other),
    do: {:error, "import namespace #{ns} must be a map, got: #{inspect(other)}"}

  @doc "Whether the instance exports a function of that name."
  @spec function_export_exists(StoreOrCaller.t(), t(), String.t()) :: boolean()
  def function_export_exists(_store, %__MODULE__{module: module}, name) when is_binary(name) do
    match?({:fn, _, _}, Map.get(module.exports, name))
  end

  @doc """
  Calls an exported function without waiting: the calling process later receives
  `{:returned_function_call, result, from}`, where `result` is `{:ok, results}` or
  `{:error, reason}`.
  """
  @spec call_exported_function(StoreOrCaller.t(), t(), String.t(), [number()], term()) :: :ok
  def call_exported_function(store, instance, name, params, from, timeout \\ 5_000) do
    case of_store(store, instance) do
      :ok ->
        request = call_request(store, instance, name, params, timeout)
        Host.cast_request(instance.host, request, {:send, self(), from})

      error ->
        send(self(), {:returned_function_call, error, from})
        :ok
    end
  end

  @doc false
  # Whether `instance` lives in `store` (or in the store whose callback `store` is the
  # caller of): an id names an instance only within its store.
  @spec of_store(StoreOrCaller.t(), t()) :: :ok | {:error, String.t()}
  def of_store(%StoreOrCaller{host: host, store_id: id}, %__MODULE__{host: host, store_id: id}),
    do: :ok

  def of_store(%StoreOrCaller{}, %__MODULE__{}),
    do: {:error, "the instance does not belong to this store"}

  @doc """
  Reads an exported global.

      iex> wat = "(module (global (export \\"meaning_of_life\\") i32 (i32.const 42)))"
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      iex> {:ok, store} = Wasmex.store(pid)
      iex> instance = :sys.get_state(pid).instance
      iex> Wasmex.Instance.get_global_value(store, instance, "meaning_of_life")
      {:ok, 42}
  """
  @spec get_global_value(StoreOrCaller.t(), t(), String.t()) ::
          {:ok, number()} | {:error, String.t()}
  def get_global_value(%StoreOrCaller{} = store, %__MODULE__{id: id} = instance, name) do
    with :ok <- of_store(store, instance),
         do:
           Host.request(
             store.host,
             Wire.global_get(StoreOrCaller.context(store), id, to_string(name))
           )
  end

  @doc "Writes a mutable exported global."
  @spec set_global_value(StoreOrCaller.t(), t(), String.t(), number()) ::
          :ok | {:error, String.t()}
  def set_global_value(%StoreOrCaller{} = store, %__MODULE__{id: id} = instance, name, value) do
    with :ok <- of_store(store, instance),
         {:ok, :ok} <-
           Host.request(
             store.host,
             Wire.global_set(StoreOrCaller.context(store), id, to_string(name), value)
           ),
         do: :ok
  end

  @doc "The first memory the instance exports; see `Wasmex.Memory.from_instance/2`."
  @spec memory(StoreOrCaller.t(), t()) :: {:ok, Wasmex.Memory.t()} | {:error, String.t()}
  def memory(store, instance), do: Wasmex.Memory.from_instance(store, instance)

  @doc false
  # The `call` request for the instance's function `name`.
  @spec call_request(StoreOrCaller.t(), t(), String.t() | atom(), list(), timeout()) ::
          Wire.request()
  def call_request(store, %__MODULE__{id: id}, name, params, timeout),
    do: Wire.call(StoreOrCaller.context(store), id, to_string(name), params, timeout)

  # The earlier Wasmex API: instances that carry their store.

  @doc false
  @spec store_of(t()) :: StoreOrCaller.t()
  def store_of(%__MODULE__{host: host, store_id: id}),
    do: StoreOrCaller.new(host, id)

  @doc """
  Instantiates `module` in a new store of the host that compiled it (earlier Wasmex API).
  Import callbacks are delivered to the calling process.

      iex> {:ok, module} = Wasmex.Module.compile(File.read!(TestHelper.wasm_test_file_path()))
      iex> {:ok, instance} = Wasmex.Instance.new(module, %{})
      iex> {:ok, memory} = Wasmex.Instance.memory(instance, :uint8, 0)
      iex> Wasmex.Memory.length(memory)
      1114112
  """
  @spec new(Module.t(), map()) :: {:ok, t()} | {:error, String.t()}
  def new(%Module{} = module, imports), do: new_in_own_store(module, imports, nil)

  @doc "Like `new/2`, with WASI configured by an options map (earlier Wasmex API)."
  @spec new_wasi(Module.t(), map(), map()) :: {:ok, t()} | {:error, String.t()}
  def new_wasi(%Module{} = module, imports, wasi) when is_map(wasi),
    do: new_in_own_store(module, imports, wasi)

  @deprecated "Compile the module with Wasmex.Module.compile/1 and then use new/2 instead"
  @doc false
  def from_bytes(bytes, imports) do
    with {:ok, module} <- Module.compile(bytes), do: new(module, imports)
  end

  @deprecated "Compile the module with Wasmex.Module.compile/1 and then use new_wasi/3 instead"
  @doc false
  def wasi_from_bytes(bytes, imports, wasi) do
    with {:ok, module} <- Module.compile(bytes), do: new_wasi(module, imports, wasi)
  end

  defp new_in_own_store(module, imports, wasi) do
    options = if wasi, do: Wasmex.Wasi.WasiOptions.new(wasi)

    with {:ok, store} <- Wasmex.Store.new_in(module.host, nil, options) do
      new(store, module, imports)
    end
  end

  @doc """
  Whether the instance exports a function of that name (earlier Wasmex API).

      iex> {:ok, module} = Wasmex.Module.compile(File.read!(TestHelper.wasm_test_file_path()))
      iex> {:ok, instance} = Wasmex.Instance.new(module, %{})
      iex> Wasmex.Instance.function_export_exists(instance, "sum")
      true
      iex> Wasmex.Instance.function_export_exists(instance, "memory")
      false
  """
  @spec function_export_exists(t(), String.t()) :: boolean()
  def function_export_exists(%__MODULE__{} = instance, name) when is_binary(name),
    do: function_export_exists(store_of(instance), instance, name)

  @doc "A typed view of the instance's first exported memory (earlier Wasmex API)."
  @spec memory(t(), Wasmex.Memory.view_type(), non_neg_integer()) ::
          {:ok, Wasmex.Memory.t()} | {:error, String.t()}
  def memory(%__MODULE__{} = instance, size, offset),
    do: Wasmex.Memory.from_instance(instance, size, offset)

  @doc """
  Calls an exported function of an instance made with the earlier API; the calling process
  receives `{:returned_function_call, result, from}`.
  """
  @spec call_exported_function(t(), String.t(), [number()], term()) :: :ok
  def call_exported_function(%__MODULE__{} = instance, name, params, from),
    do: call_exported_function(store_of(instance), instance, name, params, from)
end
