defmodule Wasmex.System.HostileRuntimeTest do
  @moduledoc """
  Hostile Wasm at run time: start functions that trap or never return, memory grown
  without bound, instance slots used up, 64-bit memories. None of them takes its host
  down; after each one the same host still instantiates and runs a module.
  """
  use ExUnit.Case, async: true

  import Wasmex.Test.HostileHost

  alias Wasmex.{Memory, StoreLimits}

  @page 65_536

  setup do
    %{host: new_host()}
  end

  describe "start functions" do
    test "a start function that traps fails the instantiation", %{host: host} do
      module = compile!(host, "(module (func $s unreachable) (start $s))")

      assert {:error, message} = Wasmex.start_link(%{store: host.store, module: module})
      assert message =~ "wasm trap: wasm `unreachable` instruction executed"
      assert_serving(host)
    end

    @tag timeout: 60_000
    test "a start function that never returns is stopped at the instantiation timeout", %{
      host: host
    } do
      module = compile!(host, "(module (func $s (loop br 0)) (start $s))")

      {micros, result} =
        :timer.tc(fn -> Wasmex.start_link(%{store: host.store, module: module}) end)

      assert result ==
               {:error, "timed out: the call did not finish within 5000 ms and was stopped"}

      assert micros < 15_000_000
      assert_serving(host)
    end
  end

  @grow_loop ~s{(module (memory (export "memory") 1)
    (func (export "fill") (param $step i32) (result i32 i32) (local $n i32)
      (loop $l (if (i32.ne (memory.grow (local.get $step)) (i32.const -1))
        (then (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))))
      local.get $n memory.size)
    (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  for slots <- [false, 1000] do
    describe "allocation without bound, instance_slots: #{slots}" do
      @describetag slots: slots

      test "a memory.grow loop stops at memory_size: -1 from Wasm, an error from Elixir",
           %{slots: slots} do
        host = new_host(%StoreLimits{memory_size: 16 * @page}, slots)
        pid = start!(host, @grow_loop)
        # 15 single-page grows fit; the 16th gets -1 and ends the loop.
        assert Wasmex.call_function(pid, "fill", [1]) == {:ok, [15, 16]}
        assert Wasmex.call_function(pid, "fill", [1]) == {:ok, [0, 16]}
        {:ok, memory} = Wasmex.memory(pid)
        assert Memory.size(host.store, memory) == 16 * @page
        assert {:error, "Failed to grow the memory: " <> _} = Memory.grow(host.store, memory, 1)
        assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
        assert_serving(host)
      end

      test "a memory or table whose minimum exceeds the limits fails to instantiate",
           %{slots: slots} do
        host = new_host(%StoreLimits{memory_size: 4 * @page, table_elements: 1_000}, slots)

        # (A table larger than the slots' is refused earlier: see "instance slots".)
        for {wat, expected} <- [
              {"(module (table 4294967295 funcref))",
               "table minimum size of 4294967295 elements exceeds table limits"}
            ],
            slots == false do
          module = compile!(host, wat)
          assert {:error, message} = Wasmex.start_link(%{store: host.store, module: module})
          assert message =~ expected
        end

        for {wat, expected} <- [
              {"(module (memory 5))", "memory minimum size of 5 pages exceeds memory limits"},
              {"(module (memory 65536))",
               "memory minimum size of 65536 pages exceeds memory limits"},
              {"(module (table 10000000 funcref))",
               "table minimum size of 10000000 elements exceeds table limits"}
            ] do
          module = compile!(host, wat)
          assert {:error, message} = Wasmex.start_link(%{store: host.store, module: module})
          assert message =~ expected
        end

        assert_serving(host)
      end

      test "a table.grow loop stops at table_elements", %{slots: slots} do
        host = new_host(%StoreLimits{table_elements: 50_000}, slots)

        wat = ~s{(module (table 0 funcref)
          (func (export "fill") (result i32 i32) (local $n i32)
            (loop $l (if (i32.ne (table.grow 0 (ref.null func) (i32.const 1000)) (i32.const -1))
              (then (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))))
            local.get $n table.size 0))}

        pid = start!(host, wat)
        assert Wasmex.call_function(pid, "fill", []) == {:ok, [50, 50_000]}
        assert_serving(host)
      end

      test "with no limit a 32-bit memory grows to 65,536 pages, then gets -1; the port's RSS stays small",
           %{slots: slots} do
        host = new_host(nil, slots)
        pid = start!(host, @grow_loop)
        # One page at a time from 1 page: 65,535 grows succeed. The pages are never touched.
        assert Wasmex.call_function(pid, "fill", [1], 30_000) == {:ok, [65_535, 65_536]}
        assert Wasmex.call_function(pid, "fill", [1]) == {:ok, [0, 65_536]}
        {:ok, memory} = Wasmex.memory(pid)
        assert Memory.size(host.store, memory) == 4 * 1024 * 1024 * 1024
        assert {:error, "Failed to grow the memory: " <> _} = Memory.grow(host.store, memory, 1)
        assert port_rss_kb(host) < 200 * 1024
        assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
        assert_serving(host)
      end
    end
  end

  describe "instance slots" do
    test "an engine with instance slots refuses a table larger than its slots' when compiling" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, instance_slots: 10)
      {:ok, store} = Wasmex.Store.new(%StoreLimits{table_elements: 1_000}, engine)
      host = %{store: store, ref: Process.monitor(store.host)}

      assert {:error, message} =
               Wasmex.Module.compile(store, "(module (table 4294967295 funcref))")

      assert message =~ "minimum element size of 4294967295 which exceeds the limit of 10000000"
      assert message =~ ":instance_slots"
      assert_serving(host)
    end
  end

  describe "64-bit memories" do
    test "are refused at compile time, so no memory can grow past 4 GiB" do
      {:ok, store} = Wasmex.Store.new()

      wat =
        ~s{(module (memory i64 1) (func (export "grow") (param i64) (result i64) local.get 0 memory.grow))}

      assert {:error, message} = Wasmex.Module.compile(store, wat)
      assert message =~ "memory64"
    end
  end
end
