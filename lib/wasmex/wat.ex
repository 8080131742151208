defmodule Wasmex.Wat do
  @moduledoc """
  Works with WebAssembly text (`.wat`) files.

  The text is parsed in the default engine's `wasmex_port` process, like any other input
  that reaches the Wasm toolchain.

      iex> {:ok, wasm} = Wasmex.Wat.to_wasm("(module)")
      iex> wasm
      <<0, 97, 115, 109, 1, 0, 0, 0>>
  """

  alias Wasmex.{Engine, Host, Wire}

  @doc """
  Converts WebAssembly text (a module, or a component) to its binary encoding.

      iex> {:ok, wasm} = Wasmex.Wat.to_wasm(~s{(module (func (export "f") (result i32) i32.const 7))})
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: wasm})
      iex> Wasmex.call_function(pid, "f", [])
      {:ok, [7]}

      iex> {:error, "Failed to parse WAT: expected `(`" <> _} = Wasmex.Wat.to_wasm("not a wat file")
  """
  @spec to_wasm(String.t()) :: {:ok, binary()} | {:error, String.t()}
  def to_wasm(wat) when is_binary(wat),
    do: Host.request(Engine.default().host, Wire.wat_to_wasm(wat))
end
