defmodule Wasmex.Components.GuestResource.Generator do
  @moduledoc """
  The code `use Wasmex.Components.GuestResource` generates, from the WIT of an exported
  resource (read at compile time by the port's WIT parser, `Wasmex.Components.Wit.resource/5`).

  Options: `:wit` (the WIT source, evaluated at compile time, e.g. `File.read!("x.wit")`),
  `:resource` (its WIT name), `:world` (when the WIT has several worlds) and `:interface`
  (when several exported interfaces define a resource of that name).

  Generated, each taking a final keyword list with `:timeout` (default 5000 ms):

    * `new(instance_or_server, param..., opts \\\\ [])` for the constructor;
    * `name_of_method(handle, param..., opts \\\\ [])` for each method;
    * `name_of_static(instance_or_server, param..., opts \\\\ [])` for each static function;
    * `drop(handle, opts \\\\ [])`.

  A method given a handle of another resource returns an error without calling the guest.
  """

  alias Wasmex.Components.{GuestResource, Wit}

  @doc false
  def generate(opts, caller) do
    {wit, _} = Code.eval_quoted(Keyword.fetch!(opts, :wit), [], caller)
    resource = Keyword.fetch!(opts, :resource)
    world = Keyword.get(opts, :world)
    interface = Keyword.get(opts, :interface)

    {iface, name, functions} =
      case Wit.resource({:text, wit}, world, resource, interface, :export) do
        {:ok, {iface, name, functions, _files}} ->
          {iface, name, functions}

        {:error, reason} ->
          raise CompileError, description: "GuestResource #{resource}: #{reason}"
      end

    check_unique!(functions, resource)
    path = [iface, name]
    generated = Enum.map(functions, &function(&1, path))

    quote do
      @doc "The resource path: the exported interface and the resource name."
      @spec resource_path() :: [String.t()]
      def resource_path, do: unquote(path)

      unquote_splicing(generated)

      @doc "Drops the resource handle (`:ok` for a handle already dropped or moved)."
      @spec drop(GuestResource.t(), keyword()) :: :ok | {:error, term()}
      def drop(resource, opts \\ []) when is_list(opts) do
        with :ok <- GuestResource.Generator.check(resource, unquote(path)),
             do: GuestResource.drop(resource, Keyword.get(opts, :timeout, 5_000))
      end
    end
  end

  @doc false
  # Refuses a handle of another resource before any call.
  @spec check(term(), [String.t()]) :: :ok | {:error, String.t()}
  def check(%GuestResource{interface: iface, name: name}, [iface, name]), do: :ok

  def check(%GuestResource{} = other, [_iface, name]),
    do: {:error, "expected a #{name} handle, got a #{other.name} handle"}

  def check(other, [_iface, name]),
    do: {:error, "expected a #{name} handle, got: #{inspect(other, limit: 10)}"}

  defp fun_name({:constructor, _, _, _}), do: :new
  defp fun_name({_kind, name, _, _}), do: String.to_atom(String.replace(name, "-", "_"))

  defp check_unique!(functions, resource) do
    names = Enum.map(functions, &fun_name/1) ++ [:drop, :resource_path]

    case names -- Enum.uniq(names) do
      [] ->
        :ok

      [dup | _] ->
        raise CompileError,
          description: "GuestResource #{resource}: more than one function would be named #{dup}"
    end
  end

  defp function({kind, wit_name, params, _shape} = f, path) do
    fun = fun_name(f)

    args =
      Enum.map(
        params,
        &Macro.var(String.to_atom("arg_" <> String.replace(&1, "-", "_")), __MODULE__)
      )

    opts = Macro.var(:opts, __MODULE__)
    timeout = quote(do: Keyword.get(unquote(opts), :timeout, 5_000))
    arg_specs = Enum.map(args, fn _ -> quote(do: term()) end)

    case kind do
      :constructor ->
        quote do
          @doc "Constructs a new guest resource."
          @spec new(
                  Wasmex.Components.Instance.t() | GenServer.server(),
                  unquote_splicing(arg_specs),
                  keyword()
                ) ::
                  {:ok, GuestResource.t()} | {:error, term()}
          def new(instance, unquote_splicing(args), unquote(opts) \\ [])
              when is_list(unquote(opts)) do
            GuestResource.new(instance, unquote(path), unquote(args), unquote(timeout))
          end
        end

      kind when kind in [:method, :async_method] ->
        resource = Macro.var(:resource, __MODULE__)

        quote do
          @doc "Calls the `#{unquote(wit_name)}` guest resource method."
          @spec unquote(fun)(GuestResource.t(), unquote_splicing(arg_specs), keyword()) ::
                  {:ok, term()} | {:error, term()}
          def unquote(fun)(unquote(resource), unquote_splicing(args), unquote(opts) \\ [])
              when is_list(unquote(opts)) do
            with :ok <- GuestResource.Generator.check(unquote(resource), unquote(path)) do
              GuestResource.call(
                unquote(resource),
                unquote(kind),
                unquote(wit_name),
                unquote(args),
                unquote(timeout)
              )
            end
          end
        end

      kind when kind in [:static, :async_static] ->
        instance = Macro.var(:instance, __MODULE__)

        quote do
          @doc "Calls the `#{unquote(wit_name)}` guest resource static function."
          @spec unquote(fun)(
                  Wasmex.Components.Instance.t() | GenServer.server(),
                  unquote_splicing(arg_specs),
                  keyword()
                ) :: {:ok, term()} | {:error, term()}
          def unquote(fun)(unquote(instance), unquote_splicing(args), unquote(opts) \\ [])
              when is_list(unquote(opts)) do
            GuestResource.call_static(
              unquote(instance),
              unquote(path),
              unquote(kind),
              unquote(wit_name),
              unquote(args),
              unquote(timeout)
            )
          end
        end
    end
  end
end
