defmodule Wasmex.WireTest do
  use ExUnit.Case, async: true

  alias Wasmex.Wire

  doctest Wire

  describe "encode_request/2" do
    test "is the term_to_binary of {id, op, args}, large binaries included" do
      large = :binary.copy(<<7>>, 70_000)

      for args <- [{}, {1, "x"}, {{:caller, 1, 2}, 0, "memory", 5, large}, {1, large}, {large, 2}] do
        assert IO.iodata_to_binary(Wire.encode_request(9, {:memory_write, args})) ==
                 :erlang.term_to_binary({9, :memory_write, args})
      end
    end

    test "does not copy a large last binary into the frame" do
      large = :binary.copy(<<1>>, 100_000)
      frame = Wire.encode_request(1, Wire.memory_write(1, 0, "memory", 0, large))
      assert is_list(frame) and List.last(frame) == large
    end
  end

  # The shapes of docs/protocol.md, which port/protocol.rs decodes: a constructor that
  # changed one would break the port.
  describe "request constructors" do
    test "build each request's {op, args} as the protocol table gives it" do
      ctx = {:caller, 1, 2}
      src = {:wasm, "b"}

      assert Wire.init(%{a: 1}) == {:init, {%{a: 1}}}
      assert Wire.module_compile("k", src) == {:module_compile, {"k", src}}
      assert Wire.module_serialize("k", nil) == {:module_serialize, {"k", nil}}
      assert Wire.precompile("b") == {:precompile, {"b"}}
      assert Wire.wat_to_wasm("(module)") == {:wat_to_wasm, {"(module)"}}
      assert Wire.store_new(nil, nil) == {:store_new, {nil, nil}}

      assert Wire.instantiate(ctx, "k", src, "h", [], [{"l", "k2", nil}], 5) ==
               {:instantiate, {ctx, "k", src, "h", [], [{"l", "k2", nil}], 5}}

      assert Wire.call(3, 4, "f", [1], :infinity) == {:call, {3, 4, "f", [1], :infinity}}
      assert Wire.memory_size(ctx, 4, "m") == {:memory_size, {ctx, 4, "m"}}
      assert Wire.memory_grow(ctx, 4, "m", 2) == {:memory_grow, {ctx, 4, "m", 2}}
      assert Wire.memory_read(ctx, 4, "m", 8, 16) == {:memory_read, {ctx, 4, "m", 8, 16}}
      assert Wire.memory_write(ctx, 4, "m", 8, "x") == {:memory_write, {ctx, 4, "m", 8, "x"}}

      assert Wire.memory_write_bulk(ctx, 4, "m", 8, 16) ==
               {:memory_write_bulk, {ctx, 4, "m", 8, 16}}

      assert Wire.memory_read_bulk(ctx, 4, "m", 8, 16) ==
               {:memory_read_bulk, {ctx, 4, "m", 8, 16}}

      assert Wire.memory_stage(ctx, 7, "x") == {:memory_stage, {ctx, 7, "x"}}
      assert Wire.memory_stage_bulk(ctx, 7, 16) == {:memory_stage_bulk, {ctx, 7, 16}}

      assert Wire.memory_write_staged(ctx, 4, "m", 8, 7) ==
               {:memory_write_staged, {ctx, 4, "m", 8, 7}}

      assert Wire.global_get(ctx, 4, "g") == {:global_get, {ctx, 4, "g"}}
      assert Wire.global_set(ctx, 4, "g", 1.5) == {:global_set, {ctx, 4, "g", 1.5}}
      assert Wire.fuel_get(3) == {:fuel_get, {3}}
      assert Wire.fuel_set(3, 10) == {:fuel_set, {3, 10}}
      assert Wire.preinitialize("b", %{init: "i"}) == {:preinitialize, {"b", %{init: "i"}}}
      assert Wire.component_compile("k", nil) == {:component_compile, {"k", nil}}
      assert Wire.wit_exports("w", nil) == {:wit_exports, {"w", nil}}

      assert Wire.component_instantiate(3, "k", nil, "h", [], 5) ==
               {:component_instantiate, {3, "k", nil, "h", [], 5}}

      assert Wire.component_call(3, 1, ["f"], [1], 5) ==
               {:component_call, {3, 1, ["f"], [1], 5}}
    end

    test "build each notification's {op, args} as the protocol table gives it" do
      assert Wire.store_drop(3) == {:store_drop, {3}}
      assert Wire.module_drop("k") == {:module_drop, {"k"}}
      assert Wire.callback_return(3, 9, {:ok, [1]}) == {:callback_return, {3, 9, {:ok, [1]}}}
      assert Wire.stdin_data(3, "in") == {:stdin_data, {3, "in"}}
      assert Wire.stdin_eof(3) == {:stdin_eof, {3}}
      assert Wire.cancel(nil, 17) == {:cancel, {nil, 17}}
      assert Wire.output_ack(3, "h", 10, nil) == {:output_ack, {3, "h", 10, nil}}
    end
  end

  describe "decode/1" do
    test "refuses what is not ETF" do
      assert {:error, "undecodable frame" <> _} = Wire.decode("nope")
    end
  end
end
