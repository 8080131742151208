defmodule Wasmex.Components.WitTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.Wit

  describe "exports/1,2" do
    test "selects a world by name when the WIT has several" do
      wit = """
      package a:b;
      world one { export f: func(x: u32) -> u32; }
      world two { export g: func(); }
      """

      assert {:ok, [{nil, "g", []}]} = Wasmex.Components.Wit.exports(wit, "two")
      assert {:error, "no world to use in the WIT" <> _} = Wasmex.Components.Wit.exports(wit)
    end
  end
end
