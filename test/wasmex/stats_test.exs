defmodule Wasmex.StatsTest do
  use ExUnit.Case, async: false

  alias Wasmex.Stats

  defp delta(fun) do
    before = Stats.get()
    fun.()
    after_ = Stats.get()
    Map.new(after_, fn {k, v} -> {k, v - before[k]} end)
  end

  describe "get/0" do
    test "counts calls, callbacks, traps, timeouts and bytes" do
      imports = %{env: %{cb: {:fn, [], [], fn _ -> nil end}}}

      wat =
        ~s{(module (import "env" "cb" (func $cb)) (func (export "f") call $cb) (func (export "boom") unreachable) (func (export "spin") (loop br 0)))}

      {:ok, pid} = Wasmex.start_link(%{bytes: wat, imports: imports})

      d =
        delta(fn ->
          {:ok, []} = Wasmex.call_function(pid, "f", [])
          {:error, _} = Wasmex.call_function(pid, "boom", [])
          {:error, "timed out" <> _} = Wasmex.call_function(pid, "spin", [], 50)
        end)

      assert d.calls >= 3 and d.callbacks >= 1 and d.traps >= 1 and d.timeouts >= 1
      assert d.bytes_sent > 0 and d.bytes_received > 0
    end

    test "counts component calls, and their traps and timeouts with the core ones" do
      {:ok, types} = Wasmex.Components.start_link(path: "test/fixtures/components/types.wasm")
      {:ok, spin} = Wasmex.Components.start_link(path: "test/fixtures/components/spin.wasm")

      boom = ~s{(component (core module $m (func (export "boom") unreachable))
             (core instance $i (instantiate $m))
             (func (export "boom") (canon lift (core func $i "boom"))))}

      {:ok, boom} = Wasmex.Components.start_link(bytes: boom)
      instance = Wasmex.Components.instance(types)

      d =
        delta(fn ->
          {:ok, 3} = Wasmex.Components.call_function(types, "add", [1, 2])
          {:ok, 5} = Wasmex.Components.Instance.call(instance, "add", [2, 3])
          {:error, _} = Wasmex.Components.call_function(boom, "boom", [])

          {:error, "timed out" <> _} =
            Wasmex.Components.call_function(spin, "spin-forever", [], 50)
        end)

      assert d.component_calls >= 4 and d.traps >= 1 and d.timeouts >= 1
    end

    test "counts hosts started and hosts that died" do
      Process.flag(:trap_exit, true)

      d =
        delta(fn ->
          # An engine always starts a new host (a store may take the spare one).
          {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
          ref = Process.monitor(engine.host)
          System.cmd("kill", ["-9", "#{Wasmex.Host.os_pid(engine.host)}"])
          assert_receive {:DOWN, ^ref, :process, _, _}
        end)

      assert d.hosts_started >= 1 and d.host_exits >= 1
    end
  end
end
