defmodule Wasmex.WireTest do
  use ExUnit.Case, async: true

  alias Wasmex.Wire

  describe "encode_request/3" do
    test "is the term_to_binary of {id, op, args}, large binaries included" do
      large = :binary.copy(<<7>>, 70_000)

      for args <- [{}, {1, "x"}, {{:caller, 1, 2}, 0, "memory", 5, large}, {1, large}, {large, 2}] do
        assert IO.iodata_to_binary(Wire.encode_request(9, :memory_write, args)) ==
                 :erlang.term_to_binary({9, :memory_write, args})
      end
    end

    test "does not copy a large last binary into the frame" do
      large = :binary.copy(<<1>>, 100_000)
      frame = Wire.encode_request(1, :memory_write, {1, 0, "memory", 0, large})
      assert is_list(frame) and List.last(frame) == large
    end
  end

  describe "decode/1" do
    test "refuses what is not ETF" do
      assert {:error, "undecodable frame" <> _} = Wire.decode("nope")
    end
  end
end
