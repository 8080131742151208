defmodule Wasmex.Components.Wit do
  @moduledoc """
  What a WIT world exports, read by the port with the `wit-parser` crate (no WIT parser
  in Elixir). Used at compile time by `Wasmex.Components.ComponentServer`.

      iex> {:ok, exports} = Wasmex.Components.Wit.exports(File.read!("test/fixtures/components/types.wit"))
      iex> {nil, "greet", ["name"]} in exports
      true
      iex> {"wasmex:types/roundtrip@0.1.0", "distance", ["a", "b"]} in exports
      true
      iex> {:error, "the WIT does not parse" <> _} = Wasmex.Components.Wit.exports("package a:b;\\nworld w { export f: func(")
  """

  @typedoc "An exported function: its interface (`nil` for the world's own), name and parameter names."
  @type export :: {String.t() | nil, String.t(), [String.t()]}

  @typedoc """
  Where owned handles of a resource are in a function's result (`nil`: nowhere).
  """
  @type shape ::
          nil
          | :handle
          | {:list | :option, shape()}
          | {:result, shape(), shape()}
          | {:tuple, [shape()]}
          | {:record | :variant, [{String.t(), shape()}]}
          | {:foreign, String.t()}

  @typedoc "A constructor, method or static function of a resource."
  @type resource_function ::
          {:constructor | :method | :static | :async_method | :async_static, String.t(),
           [String.t()], shape()}

  @doc """
  What the resource `resource` of a world offers: its interface, its functions (a method's
  params leave out `self`) and the WIT files read. `source` is `{:text, wit}` or `{:path,
  file_or_directory}` (a directory may hold the standard `deps/`); `direction` is `:export`
  for a resource the component defines, `:import` for one the host implements.

      iex> wit = File.read!("test/fixtures/components/resources.wit")
      iex> {:ok, {iface, "label", functions, []}} =
      ...>   Wasmex.Components.Wit.resource({:text, wit}, nil, "label", nil, :export)
      iex> {iface, functions}
      {"wasmex:resources/counters@0.1.0",
       [{:constructor, "constructor", ["text"], :handle}, {:method, "text", [], nil}]}
      iex> Wasmex.Components.Wit.resource({:text, wit}, nil, "label", nil, :import)
      {:error, "the world resources imports no resource label"}
  """
  @spec resource(
          {:text | :path, String.t()},
          String.t() | nil,
          String.t(),
          String.t() | nil,
          :export | :import
        ) ::
          {:ok, {String.t(), String.t(), [resource_function()], [String.t()]}}
          | {:error, String.t()}
  def resource(source, world, resource, interface, direction) do
    {:ok, _} = Application.ensure_all_started(:wasmex)
    host = Wasmex.Components.Store.default_engine().host

    Wasmex.Host.request(
      host,
      Wasmex.Wire.wit_resource(source, world, resource, interface, direction)
    )
  end

  @doc "The functions the world (the only one, or the one named `world`) exports."
  @spec exports(String.t(), String.t() | nil) :: {:ok, [export()]} | {:error, String.t()}
  def exports(wit, world \\ nil) when is_binary(wit) do
    {:ok, _} = Application.ensure_all_started(:wasmex)
    host = Wasmex.Components.Store.default_engine().host
    Wasmex.Host.request(host, Wasmex.Wire.wit_exports(wit, world))
  end
end
