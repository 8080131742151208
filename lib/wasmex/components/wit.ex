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

  @doc "The functions the world (the only one, or the one named `world`) exports."
  @spec exports(String.t(), String.t() | nil) :: {:ok, [export()]} | {:error, String.t()}
  def exports(wit, world \\ nil) when is_binary(wit) do
    {:ok, _} = Application.ensure_all_started(:wasmex)
    host = Wasmex.Components.Store.default_engine().host
    Wasmex.Host.request(host, Wasmex.Wire.wit_exports(wit, world))
  end
end
