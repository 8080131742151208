defmodule Wasmex.WatTest do
  use ExUnit.Case, async: true

  describe "to_wasm/1" do
    test "converts a module in text format to one that runs" do
      wat = ~s{(module (func (export "add") (param i32 i32) (result i32)
                 local.get 0 local.get 1 i32.add))}

      assert {:ok, <<0, ?a, ?s, ?m, _::binary>> = wasm} = Wasmex.Wat.to_wasm(wat)
      {:ok, pid} = Wasmex.start_link(%{bytes: wasm})
      assert Wasmex.call_function(pid, "add", [50, -8]) == {:ok, [42]}
    end

    test "says where the text is wrong, as Wasmex does" do
      assert Wasmex.Wat.to_wasm("not a wat file") ==
               {:error,
                "Failed to parse WAT: expected `(`\n     --> <anon>:1:1\n      |\n    1 | not a wat file\n      | ^"}
    end

    test "refuses text that is not UTF-8" do
      assert {:error, "Failed to parse WAT: " <> _} = Wasmex.Wat.to_wasm(<<0xFF, 0xFE>>)
    end
  end
end
