defmodule Wasmex.Components.ComponentServer do
  @moduledoc """
  Generates a module around `Wasmex.Components` with a function per function a WIT world
  exports. The WIT is read at compile time by the port's WIT parser (the `wit-parser`
  crate, see `Wasmex.Components.Wit`).

      defmodule MyApp.Greeter do
        use Wasmex.Components.ComponentServer, wit: "path/to/greeter.wit"
      end

      {:ok, pid} = MyApp.Greeter.start_link(path: "path/to/greeter.wasm")
      MyApp.Greeter.greet(pid, "World")
      #=> {:ok, "Hello, World!"}

  Each exported function `name-of-fn` becomes `name_of_fn(server, param..., timeout \\\\
  5000)`; functions of an exported interface get theirs too, calling
  `{"ns:pkg/iface@ver", "name-of-fn"}`. Two exports of the same snake_case name are a
  compile error.

  Options:

    * `:wit` - the path of the WIT file (a recompile follows its changes);
    * `:world` - which world, when the WIT has several;
    * `:imports` - the default `:imports` of `start_link/1` (those given there win);
    * `:convert_field_names` (default `true`) - map keys of arguments go from snake_case to
      kebab-case and those of results back (`Wasmex.Components.FieldNames`).

  The generated `start_link/1` and `child_spec/1` take the options of
  `Wasmex.Components.start_link/1`.
  """

  alias Wasmex.Components.{FieldNames, Wit}

  defmacro __using__(opts) do
    wit_path = Keyword.fetch!(opts, :wit) |> Macro.expand(__CALLER__)
    world = Keyword.get(opts, :world)
    convert? = Keyword.get(opts, :convert_field_names, true)
    imports = Keyword.get(opts, :imports, quote(do: %{}))

    exports =
      case Wit.exports(File.read!(wit_path), world) do
        {:ok, exports} -> exports
        {:error, reason} -> raise CompileError, description: "#{wit_path}: #{reason}"
      end

    check_unique!(exports, wit_path)
    functions = Enum.map(exports, &function(&1, convert?))

    quote do
      @external_resource unquote(wit_path)

      @doc "Starts the component server (options of `Wasmex.Components.start_link/1`)."
      @spec start_link(map() | keyword()) :: GenServer.on_start()
      def start_link(opts) do
        opts = Map.new(opts)
        defaults = unquote(imports)

        Wasmex.Components.start_link(
          Map.put(opts, :imports, Map.merge(defaults, Map.get(opts, :imports, %{})))
        )
      end

      @doc "A child specification starting the component server with `opts`."
      @spec child_spec(map() | keyword()) :: Supervisor.child_spec()
      def child_spec(opts), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}

      unquote_splicing(functions)
    end
  end

  @doc false
  def snake(name), do: String.replace(name, "-", "_")

  defp check_unique!(exports, wit_path) do
    exports
    |> Enum.group_by(fn {_iface, name, _params} -> snake(name) end)
    |> Enum.each(fn
      {_, [_]} ->
        :ok

      {name, _} ->
        raise CompileError,
          description: "#{wit_path}: more than one exported function would be named #{name}"
    end)
  end

  defp function({iface, name, params}, convert?) do
    fun = String.to_atom(snake(name))
    args = Enum.map(params, &Macro.var(String.to_atom("arg_" <> snake(&1)), __MODULE__))
    server = Macro.var(:server, __MODULE__)
    timeout = Macro.var(:timeout, __MODULE__)
    path = if iface, do: Macro.escape({iface, name}), else: name
    shown = if iface, do: "`#{name}` of `#{iface}`", else: "`#{name}`"
    params_ast = if convert?, do: quote(do: FieldNames.to_wit(unquote(args))), else: args

    call =
      quote do
        Wasmex.Components.call_function(
          unquote(server),
          unquote(path),
          unquote(params_ast),
          unquote(timeout)
        )
      end

    body = if convert?, do: quote(do: FieldNames.from_wit(unquote(call))), else: call

    quote do
      @doc "Calls the exported function #{unquote(shown)}."
      @spec unquote(fun)(
              GenServer.server(),
              unquote_splicing(Enum.map(args, fn _ -> quote(do: term()) end)),
              timeout()
            ) ::
              {:ok, term()} | {:error, term()}
      def unquote(fun)(unquote(server), unquote_splicing(args), unquote(timeout) \\ 5_000) do
        unquote(body)
      end
    end
  end
end
