defmodule Wasmex.Components.HostResource do
  @moduledoc """
  A resource a component imports, implemented in Elixir (a host resource), with the API of
  Wasmex 0.15.1.

  Given the imported WIT resource

  ```wit
  interface counters {
    resource counter {
      constructor(initial: u32);
      with-value: static func(value: u32) -> counter;
      increment: func() -> u32;
      take-other: func(other: counter) -> u32;
    }
  }
  ```

  implement its functions in a module and give the component its `imports/0`:

      defmodule CounterHost do
        use Wasmex.Components.HostResource,
          wit_path: "test/fixtures/components/host_resources.wit",
          resource: "counter"

        def new(initial), do: start(initial)
        def with_value(value), do: start(value)
        def increment(counter), do: Agent.get_and_update(counter, &{&1 + 1, &1 + 1})

        # `other` is owned: this function is responsible for it now (no drop/1 follows).
        def take_other(counter, other) do
          value = Agent.get(counter, & &1) + Agent.get(other, & &1)
          Agent.stop(other)
          value
        end

        def drop(counter), do: Agent.stop(counter)

        defp start(initial) do
          {:ok, counter} = Agent.start(fn -> initial end)
          counter
        end
      end

      {:ok, pid} = Wasmex.Components.start_link(path: "host_resources.wasm", imports: CounterHost.imports())

  A runnable one, whose terms are plain numbers:

      iex> defmodule DocCounter do
      ...>   use Wasmex.Components.HostResource,
      ...>     wit_path: "test/fixtures/components/host_resources.wit",
      ...>     resource: "counter"
      ...>
      ...>   def new(initial), do: initial
      ...>   def with_value(value), do: value
      ...>   def try_make(value), do: {:ok, value}
      ...>   def increment(value), do: value + 1
      ...>   def take_other(value, other), do: value + other
      ...>   def peek(_value, other), do: other
      ...> end
      iex> {:ok, pid} =
      ...>   Wasmex.Components.start_link(
      ...>     path: "test/fixtures/components/host_resources.wasm",
      ...>     imports: DocCounter.imports()
      ...>   )
      iex> Wasmex.Components.call_function(pid, "take", [3, 4])
      {:ok, 7}
      iex> Wasmex.Components.call_function(pid, "try-make", [41])
      {:ok, {:ok, 42}}

  ## Callbacks

  A resource is any Elixir term (a pid, a reference, a struct...), kept in the BEAM: the
  guest's handle holds only a number (`Wasmex.Components.HostResource.Table`).

    * The constructor maps to `new/arity` and returns the term. Returning `{:error, reason}`
      traps the guest's call instead (no resource is made).
    * A method maps to its snake_case name and gets the term first; a static function
      maps to its snake_case name, without a term.
    * A handle of the resource in a result (directly, or in an option, result, list,
      tuple, record or variant) is given as the term in that place.
    * `drop/1` is called when the guest drops an owned handle. The default does nothing:
      override it when the term owns something.

  A `borrow<T>` param leaves the guest's handle live. An `own<T>` param moves the term to
  the callback: the guest's handle is gone and `drop/1` is not called for it.

  Each callback runs in a process of its own. An exception, or a value that does not fit
  the result type, traps the guest's call (the component instance stops, as after any
  trap) and the `Wasmex.Components` server stays alive. A term made for a result that
  did not fit as a whole is released again without `drop/1`.

  When the instance goes (its server stops), its terms go from the table, and `drop/1` is
  called for those the guest still held.

  ## Options

    * `:wit` - the WIT source, or `:wit_path` - a WIT file or a directory (which may
      hold the standard `deps/`); the files read are `@external_resource`s;
    * `:resource` - the WIT name of the resource;
    * `:interface` - the imported interface, when several define a resource of that name;
    * `:world` - the world, when the WIT has several.

  `merge_imports/1` merges the imports of several modules and ordinary import maps.
  """

  alias Wasmex.Components.Wit

  defmacro __using__(opts) do
    source =
      case {Keyword.get(opts, :wit), Keyword.get(opts, :wit_path)} do
        {nil, nil} -> raise CompileError, description: "HostResource: give :wit or :wit_path"
        {wit, nil} -> {:text, elem(Code.eval_quoted(wit, [], __CALLER__), 0)}
        {nil, path} -> {:path, Path.expand(elem(Code.eval_quoted(path, [], __CALLER__), 0))}
        _ -> raise CompileError, description: "HostResource: give :wit or :wit_path, not both"
      end

    resource = Keyword.fetch!(opts, :resource)
    world = Keyword.get(opts, :world)
    interface = Keyword.get(opts, :interface)

    {iface, name, functions, files} =
      case Wit.resource(source, world, resource, interface, :import) do
        {:ok, found} -> found
        {:error, reason} -> raise CompileError, description: "HostResource #{resource}: #{reason}"
      end

    entries = Enum.map(functions, &import_entry(&1, name))

    drop_entry =
      {"[resource-drop]#{name}", quote(do: {:resource_fn, __MODULE__, :drop, :drop, nil})}

    type_entry = {name, quote(do: {:resource, __MODULE__})}

    map = {:%{}, [], Enum.map([type_entry, drop_entry | entries], fn {k, v} -> {k, v} end)}

    quote do
      for file <- unquote(files), do: @external_resource(file)

      @doc "The component imports this host resource's module implements."
      @spec imports() :: map()
      def imports, do: %{unquote(iface) => unquote(map)}

      @doc "Releases the Elixir state of a resource the guest dropped (by default nothing)."
      @spec drop(term()) :: term()
      def drop(_resource), do: :ok

      defoverridable drop: 1
    end
  end

  defp import_entry({kind, wit_name, _params, shape}, resource) do
    {export, fun} =
      case kind do
        :constructor -> {"[constructor]#{resource}", :new}
        :method -> {"[method]#{resource}.#{wit_name}", snake(wit_name)}
        :static -> {"[static]#{resource}.#{wit_name}", snake(wit_name)}
        :async_method -> {"[async method]#{resource}.#{wit_name}", snake(wit_name)}
        :async_static -> {"[async static]#{resource}.#{wit_name}", snake(wit_name)}
      end

    {export,
     quote(
       do: {:resource_fn, __MODULE__, unquote(fun), unquote(kind), unquote(Macro.escape(shape))}
     )}
  end

  defp snake(name), do: String.to_atom(String.replace(name, "-", "_"))

  @doc """
  Merges the imports of host resource modules and import maps, interface by interface
  (a later source wins for the same name).

      iex> Wasmex.Components.HostResource.merge_imports([
      ...>   %{"a:b/c" => %{"f" => {:fn, &Function.identity/1}}},
      ...>   %{"a:b/c" => %{"g" => {:fn, &Function.identity/1}}, "log" => {:fn, &IO.puts/1}}
      ...> ]) |> Map.update!("a:b/c", &Map.keys/1)
      %{"a:b/c" => ["f", "g"], "log" => {:fn, &IO.puts/1}}
  """
  @spec merge_imports([module() | map()]) :: map()
  def merge_imports(sources) when is_list(sources) do
    sources
    |> Enum.map(fn
      module when is_atom(module) -> module.imports()
      map when is_map(map) -> map
    end)
    |> Enum.reduce(%{}, fn imports, acc ->
      Map.merge(acc, imports, fn
        _key, a, b when is_map(a) and is_map(b) -> Map.merge(a, b)
        _key, _a, b -> b
      end)
    end)
  end
end
