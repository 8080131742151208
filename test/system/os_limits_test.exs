defmodule Wasmex.System.OsLimitsTest do
  @moduledoc "OS-level caps on a host's process: hitting one ends that host only."
  use ExUnit.Case, async: true

  alias Wasmex.{Engine, EngineConfig}

  # Grows memory by `pages` (64 KiB each) and writes one byte in every 4 KiB of the new
  # memory, so all of it becomes resident.
  @toucher """
  (module (memory (export "memory") 1)
    (func (export "touch") (param $pages i32) (result i32) (local $at i32) (local $end i32) (local $old i32)
      (local.set $old (memory.grow (local.get $pages)))
      (if (i32.eq (local.get $old) (i32.const -1)) (then (return (i32.const -1))))
      (local.set $at (i32.mul (local.get $old) (i32.const 65536)))
      (local.set $end (i32.mul (i32.add (local.get $old) (local.get $pages)) (i32.const 65536)))
      (loop $l
        (i32.store8 (local.get $at) (i32.const 1))
        (local.set $at (i32.add (local.get $at) (i32.const 4096)))
        (br_if $l (i32.lt_u (local.get $at) (local.get $end))))
      (local.get $old)))
  """

  defp start_capped(os_limits, wat \\ @toucher) do
    {:ok, engine} = Engine.new(%EngineConfig{}, os_limits: os_limits)
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store, wat)
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    {pid, store}
  end

  setup do
    Process.flag(:trap_exit, true)
    :ok
  end

  describe "resident_memory" do
    test "a host over its cap ends, and says why; other hosts serve on" do
      {pid, store} = start_capped(resident_memory: 150 * 1024 * 1024)
      ref = Process.monitor(store.host)
      # Within the cap: 32 MiB.
      assert {:ok, [1]} = Wasmex.call_function(pid, "touch", [512])
      # Over it: another 2 GiB.
      assert {:error, message} = Wasmex.call_function(pid, "touch", [32_768], 30_000)
      assert message =~ "resident memory cap of 157286400 bytes exceeded"
      assert_receive {:DOWN, ^ref, :process, _, {:shutdown, {:port_exited, _}}}
      {:ok, other} = Wasmex.start_link(%{bytes: @toucher})
      assert {:ok, [1]} = Wasmex.call_function(other, "touch", [16])
    end

    test "binds the host's compilations: one over the cap is stopped, the host serves on" do
      config = %EngineConfig{cranelift_opt_level: :speed}
      {:ok, engine} = Engine.new(config, os_limits: [resident_memory: 150 * 1024 * 1024])
      {:ok, store} = Wasmex.Store.new(nil, engine)
      # One function of 100,000 additions: optimising it takes about 500 MB.
      body = String.duplicate("local.get 0 i32.const 1 i32.add local.set 0 ", 100_000)
      name = "$big_#{System.system_time(:nanosecond)}"
      wat = "(module #{name} (func (export \"f\") (param i32) (result i32) #{body} local.get 0))"

      assert {:error, message} = Wasmex.Module.compile(store, wat)
      assert message =~ "over the host's resident memory cap of 157286400 bytes"
      assert {:ok, _} = Wasmex.Module.compile(store, @toucher)
    end
  end

  describe "cpu_seconds" do
    test "a host that used up its CPU time is ended with SIGXCPU" do
      wat = ~s{(module (func (export "spin") (loop br 0)))}
      {pid, store} = start_capped([cpu_seconds: 1], wat)
      ref = Process.monitor(store.host)
      assert {:error, message} = Wasmex.call_function(pid, "spin", [], :infinity)
      assert message =~ "killed by signal 24 (SIGXCPU: its cpu_seconds cap was reached)"
      assert_receive {:DOWN, ^ref, :process, _, _}
    end
  end

  describe "checks" do
    test "an unknown or mistyped key is an error naming it, not a host without the cap" do
      assert Engine.new(%EngineConfig{}, os_limits: [resident_mem: 100_000_000]) ==
               {:error,
                "unknown os_limits key :resident_mem (known: address_space, cpu_seconds, resident_memory)"}
    end

    test "a value that is not a non-negative integer, or limits that are no keyword list, are refused" do
      assert {:error, "cpu_seconds must be" <> _} =
               Engine.new(%EngineConfig{}, os_limits: [cpu_seconds: -1])

      assert {:error, "os_limits must be a keyword list or a map" <> _} =
               Engine.new(%EngineConfig{}, os_limits: 5)

      assert {:error, "os_limits must be a keyword list or a map" <> _} =
               Engine.new(%EngineConfig{}, os_limits: [1])
    end

    test "an address_space too small for the port says so, with what it needs" do
      assert {:error, message} =
               Engine.new(%EngineConfig{}, os_limits: [address_space: 24 * 1024 * 1024])

      assert message =~
               "os_limits address_space of 25165824 bytes is too small: the Wasm host needs at least"
    end
  end

  describe "address_space" do
    test "memory within the cap works, growth past it fails inside Wasm" do
      {pid, _store} = start_capped(address_space: 1024 * 1024 * 1024)
      assert {:ok, [1]} = Wasmex.call_function(pid, "touch", [160])
      assert {:ok, [-1]} = Wasmex.call_function(pid, "touch", [32_768])
      assert {:ok, [161]} = Wasmex.call_function(pid, "touch", [16])
    end
  end
end
