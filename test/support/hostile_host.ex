defmodule Wasmex.Test.HostileHost do
  @moduledoc false
  # What the hostile-Wasm tests (test/system/hostile_*_test.exs) share: a store in a host
  # of its own, and the check that the host still serves after a hostile case.

  import ExUnit.Assertions

  alias Wasmex.{Host, Memory}

  # What every host must still run after a hostile case; small enough for limited stores.
  @serving ~s{(module (memory (export "memory") 1)
    (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  def new_host(limits \\ nil, instance_slots \\ false) do
    {:ok, store} =
      if instance_slots do
        {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, instance_slots: instance_slots)
        Wasmex.Store.new(limits, engine)
      else
        Wasmex.Store.new(limits)
      end

    %{store: store, ref: Process.monitor(store.host)}
  end

  # The host did not go down and serves a fresh instance of a valid module. (Getting
  # here at all means the BEAM, and this test process with it, survived.)
  def assert_serving(%{store: store, ref: ref}) do
    assert Process.alive?(self())
    refute_received {:DOWN, ^ref, :process, _, _}
    assert Process.alive?(store.host)
    assert {:ok, module} = Wasmex.Module.compile(store, @serving)
    assert {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    assert Wasmex.call_function(pid, "sum", [40, 2]) == {:ok, [42]}
    {:ok, memory} = Wasmex.memory(pid)
    assert Memory.write_binary(store, memory, 100, "still here") == :ok
    assert Memory.read_binary(store, memory, 100, 10) == "still here"
    GenServer.stop(pid)
  end

  def compile!(%{store: store}, wat) do
    assert {:ok, module} = Wasmex.Module.compile(store, wat)
    module
  end

  def start!(%{store: store} = host, wat) do
    assert {:ok, pid} = Wasmex.start_link(%{store: store, module: compile!(host, wat)})
    pid
  end

  def port_rss_kb(%{store: store}) do
    status = File.read!("/proc/#{Host.os_pid(store.host)}/status")
    [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
    String.to_integer(kb)
  end

  # A module name never used before: the engine's compile cache cannot answer for it, so
  # the compiler really runs.
  def fresh_name, do: "$m#{System.unique_integer([:positive])}_#{System.os_time()}"

  def nested(open, close, n), do: String.duplicate(open, n) <> String.duplicate(close, n)
end
