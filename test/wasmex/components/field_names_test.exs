defmodule Wasmex.Components.FieldNamesTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.FieldNames

  alias Wasmex.Components.FieldNames

  describe "to_wit/1" do
    test "leaves values, atoms that are not keys, and structs alone" do
      assert FieldNames.to_wit([:some_case, {:ok, "a_b"}, nil, true]) ==
               [:some_case, {:ok, "a_b"}, nil, true]

      assert FieldNames.to_wit(%{"bin_key" => 1}) == %{"bin-key" => 1}
    end
  end

  describe "from_wit/1" do
    test "converts keys inside lists, tuples and options" do
      assert FieldNames.from_wit([{:some, %{"a-b": %{"c-d": 1}}}]) == [{:some, %{a_b: %{c_d: 1}}}]
    end
  end
end
