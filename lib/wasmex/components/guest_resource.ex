defmodule Wasmex.Components.GuestResource do
  @moduledoc """
  Resources a component defines and exports (guest resources), with the API of Wasmex
  0.15.1: construct one, call its methods and static functions, drop it.

      iex> {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/resources.wasm")
      iex> path = ["wasmex:resources/counters@0.1.0", "counter"]
      iex> {:ok, counter} = Wasmex.Components.GuestResource.new(pid, path, [41])
      iex> Wasmex.Components.GuestResource.call(counter, :method, "increment")
      {:ok, 42}
      iex> Wasmex.Components.GuestResource.drop(counter)
      :ok
      iex> {:error, "resource handle " <> _} = Wasmex.Components.GuestResource.call(counter, :method, "increment")

  A handle is a `%GuestResource{}` tied to the store and component instance that made it.
  Calls go through that store, so a handle can be shared between processes. Resources are
  named by a path: the exported interface, then the WIT resource name.

  `use Wasmex.Components.GuestResource, wit: wit_source, resource: "counter"` generates a
  module with `new`, a function per method and static function, and `drop`
  (`Wasmex.Components.GuestResource.Generator`):

      defmodule Counter do
        use Wasmex.Components.GuestResource,
          wit: File.read!("test/fixtures/components/resources.wit"),
          resource: "counter"
      end

      {:ok, counter} = Counter.new(pid, 42)
      {:ok, 43} = Counter.increment(counter)
      :ok = Counter.drop(counter)

  ## Ownership

  Passing a handle to an `own<T>` parameter (`absorb(other: counter)`) moves it to the
  guest: later calls with it return an error, and dropping it again is `:ok`. A
  `borrow<T>` parameter leaves it yours. Dropping a handle runs the guest's destructor;
  dropping it twice is `:ok`; a method called after the drop returns an error.

  ## Handles you do not drop

  There is no finalizer: the BEAM cannot tell the port that a struct became garbage. A
  handle you do not drop lives as long as its store: it goes when the store goes (the
  `Wasmex.Components` server that made its own store stops, or `Wasmex.Store.release/2`
  of a store you made). Drop handles you no longer need in long-lived instances.

  ## Errors

  A timeout stops the guest and poisons the instance, like any component call. Functions
  that take or return handles are supported as a resource's constructor, methods and
  static functions; a freestanding function with a handle in its type is refused, as in
  Wasmex 0.15.1.
  """

  alias Wasmex.Components.Instance
  alias Wasmex.{Host, StoreOrCaller, Wire}

  @enforce_keys [:resource, :reference, :instance, :id, :interface, :name]
  # `resource` and `reference` are the fields of Wasmex's struct; the others are internal.
  defstruct [:resource, :reference, :instance, :id, :interface, :name]

  @type t :: %__MODULE__{
          resource: binary(),
          reference: reference(),
          instance: Instance.t(),
          id: non_neg_integer(),
          interface: String.t(),
          name: String.t()
        }

  @type function_kind :: :method | :async_method
  @type static_function_kind :: :static | :async_static
  @typedoc "The exported interface, then the WIT resource name."
  @type resource_path :: [String.t()] | {String.t(), String.t()}

  @doc """
  Calls the constructor of the resource at `resource_path` in the instance (or the
  `Wasmex.Components` server): `{:ok, handle}` or `{:error, reason}`.

      iex> {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/resources.wasm")
      iex> Wasmex.Components.GuestResource.new(pid, ["wasmex:resources/counters@0.1.0", "gauge"], [1])
      {:error, "the component exports no constructor of a resource gauge in wasmex:resources/counters@0.1.0"}
  """
  @spec new(Instance.t() | GenServer.server(), resource_path(), list(), timeout()) ::
          {:ok, t()} | {:error, term()}
  def new(instance_or_server, resource_path, params \\ [], timeout \\ 5_000) do
    with {:ok, instance} <- instance(instance_or_server),
         {:ok, iface, name} <- resource_path(resource_path),
         {:ok, value} <- call_in(instance, [iface, "[constructor]#{name}"], params, timeout) do
      case wrap(value, instance) do
        %__MODULE__{name: ^name} = handle ->
          {:ok, handle}

        other ->
          {:error, "the constructor of #{name} returned no #{name} handle: #{inspect(other)}"}
      end
    else
      {:error, "exported function " <> _} ->
        {iface, name} = shown(resource_path)
        {:error, "the component exports no constructor of a resource #{name} in #{iface}"}

      error ->
        error
    end
  end

  @doc """
  Calls method `function_name` of the resource: `{:ok, result}` or `{:error, reason}`.
  Handles in the result are `%GuestResource{}`s.
  """
  @spec call(t(), function_kind(), String.t() | atom(), list(), timeout()) ::
          {:ok, term()} | {:error, term()}
  def call(resource, kind, function_name, params \\ [], timeout \\ 5_000)

  def call(%__MODULE__{} = resource, kind, function_name, params, timeout)
      when kind in [:method, :async_method] and is_list(params) do
    prefix = if kind == :method, do: "[method]", else: "[async method]"
    export = "#{prefix}#{resource.name}.#{function_name}"
    shown = "method #{function_name} of #{resource.name}"
    run(resource.instance, [resource.interface, export], [resource | params], timeout, shown)
  end

  def call(%__MODULE__{}, _kind, _function_name, params, _timeout) when not is_list(params),
    do: {:error, "params must be a list, got: #{inspect(params, limit: 10)}"}

  def call(%__MODULE__{}, kind, _function_name, _params, _timeout),
    do: {:error, "a method's kind is :method or :async_method, got: #{inspect(kind)}"}

  def call(other, _kind, _function_name, _params, _timeout),
    do: {:error, "expected a resource handle, got: #{inspect(other, limit: 10)}"}

  @doc """
  Calls static function `function_name` of the resource at `resource_path`. Static
  functions take an instance (or server), not a handle.
  """
  @spec call_static(
          Instance.t() | GenServer.server(),
          resource_path(),
          static_function_kind(),
          String.t() | atom(),
          list(),
          timeout()
        ) :: {:ok, term()} | {:error, term()}
  def call_static(
        instance_or_server,
        resource_path,
        kind,
        function_name,
        params \\ [],
        timeout \\ 5_000
      )

  def call_static(instance_or_server, resource_path, kind, function_name, params, timeout)
      when kind in [:static, :async_static] do
    prefix = if kind == :static, do: "[static]", else: "[async static]"

    with {:ok, instance} <- instance(instance_or_server),
         {:ok, iface, name} <- resource_path(resource_path) do
      export = "#{prefix}#{name}.#{function_name}"

      run(
        instance,
        [iface, export],
        params,
        timeout,
        "static function #{function_name} of #{name}"
      )
    end
  end

  def call_static(_instance_or_server, _resource_path, kind, _function_name, _params, _timeout),
    do: {:error, "a static function's kind is :static or :async_static, got: #{inspect(kind)}"}

  @doc """
  Drops the handle, running the guest's destructor. Dropping a dropped (or moved) handle
  is `:ok`.
  """
  @spec drop(t(), timeout()) :: :ok | {:error, term()}
  def drop(%__MODULE__{instance: instance, id: id}, timeout \\ 5_000) do
    ctx = Instance.request_context(instance.host, StoreOrCaller.context(instance.store))
    request = Wire.component_resource_drop(ctx, instance.id, id, timeout)
    wait = Wasmex.Host.Client.for_call(timeout)

    case Wasmex.Host.Client.call(instance.host, {:request, request}, wait) do
      {:ok, :ok} -> :ok
      {:error, :timeout} -> {:error, "timed out: no answer within #{timeout} ms"}
      {:error, {:down, reason}} -> {:error, Host.down_message(reason)}
      {:error, _} = error -> error
      other -> {:error, "unexpected answer to a drop: #{inspect(other, limit: 10)}"}
    end
  end

  defp run(instance, path, params, timeout, shown) do
    case call_in(instance, path, params, timeout) do
      {:ok, value} -> {:ok, wrap(value, instance)}
      {:error, "exported function " <> _} -> {:error, "the component exports no #{shown}"}
      error -> error
    end
  end

  defp call_in(instance, path, params, timeout) when is_list(params) do
    with {:ok, params} <- unwrap(params, instance),
         do: Instance.call(instance, path, params, timeout)
  end

  defp call_in(_instance, _path, params, _timeout),
    do: {:error, "params must be a list, got: #{inspect(params, limit: 10)}"}

  @doc false
  # The instance a constructor or static function runs in.
  @spec instance(Instance.t() | GenServer.server()) :: {:ok, Instance.t()} | {:error, String.t()}
  def instance(%Instance{} = instance), do: {:ok, instance}

  def instance(server) do
    {:ok, Wasmex.Components.instance(server)}
  catch
    :exit, reason ->
      {:error, "the component server is not running: #{inspect(reason, limit: 10)}"}
  end

  defp resource_path([iface, name]) when is_binary(iface) and is_binary(name),
    do: {:ok, iface, name}

  defp resource_path({iface, name}), do: resource_path([iface, name])

  defp resource_path(other),
    do:
      {:error, "a resource path is [interface, resource name], got: #{inspect(other, limit: 10)}"}

  defp shown([iface, name]), do: {iface, name}
  defp shown({iface, name}), do: {iface, name}

  # Handles in params, as the port takes them; a handle of another store is refused (its
  # id would name another store's handle).
  defp unwrap(params, instance) do
    {:ok, replace_handles(params, instance)}
  catch
    {:foreign_handle, resource} ->
      {:error, "the resource handle #{resource.resource} belongs to another store"}
  end

  defp replace_handles(%__MODULE__{} = handle, instance) do
    same_store? =
      handle.instance.host == instance.host and handle.instance.store_id == instance.store_id

    if same_store?, do: {:wasmex_resource, handle.id}, else: throw({:foreign_handle, handle})
  end

  defp replace_handles(list, instance) when is_list(list),
    do: Enum.map(list, &replace_handles(&1, instance))

  defp replace_handles(tuple, instance) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> replace_handles(instance) |> List.to_tuple()

  defp replace_handles(map, instance) when is_map(map) and not is_struct(map),
    do: Map.new(map, fn {k, v} -> {k, replace_handles(v, instance)} end)

  defp replace_handles(other, _instance), do: other

  @doc false
  # The port's handles in a result, as structs of `instance`.
  @spec wrap(term(), Instance.t()) :: term()
  def wrap({:wasmex_resource, id, iface, name}, instance)
      when is_integer(id) and id >= 0 and is_binary(iface) and is_binary(name) do
    %__MODULE__{
      resource: "#{iface}##{name}/#{id}",
      reference: make_ref(),
      instance: instance,
      id: id,
      interface: iface,
      name: name
    }
  end

  def wrap(list, instance) when is_list(list), do: Enum.map(list, &wrap(&1, instance))

  def wrap(tuple, instance) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> wrap(instance) |> List.to_tuple()

  def wrap(map, instance) when is_map(map),
    do: Map.new(map, fn {k, v} -> {k, wrap(v, instance)} end)

  def wrap(other, _instance), do: other

  defmacro __using__(opts),
    do: Wasmex.Components.GuestResource.Generator.generate(opts, __CALLER__)
end
