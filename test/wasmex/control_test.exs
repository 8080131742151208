defmodule Wasmex.ControlTest do
  @moduledoc "Fuel, store limits and timeouts: what lets a user run code they don't trust."
  use ExUnit.Case, async: true

  alias Wasmex.{Engine, EngineConfig, Host, Instance, Memory, StoreLimits, StoreOrCaller}

  @wasm_test File.read!(TestHelper.wasm_test_file_path())

  # CPU time (user + system, in clock ticks) each thread of the OS process has used so
  # far, by thread id, with the thread's name.
  defp thread_ticks(os_pid) do
    for tid <- File.ls!("/proc/#{os_pid}/task"), into: %{} do
      {tid, {thread_name(os_pid, tid), stat_ticks("/proc/#{os_pid}/task/#{tid}/stat")}}
    end
  end

  defp thread_name(os_pid, tid) do
    case File.read("/proc/#{os_pid}/task/#{tid}/comm") do
      {:ok, name} -> String.trim(name)
      {:error, _} -> "gone"
    end
  end

  defp stat_ticks(path) do
    case File.read(path) do
      {:ok, stat} ->
        # Fields after the command name (which is in parentheses).
        [_, rest] = String.split(stat, ") ", parts: 2)
        fields = String.split(rest)
        String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))

      # A thread that ended between listing and reading.
      {:error, _} ->
        0
    end
  end

  # How long assert_idle/1 watches the port.
  @idle_window_ms 600

  # Asserts the port uses no CPU over a window (a measurement, so it needs the wait). On
  # failure, the message names the threads that used it.
  defp assert_idle(store) do
    os_pid = Host.os_pid(store.host)
    before = stat_ticks("/proc/#{os_pid}/stat")
    threads_before = thread_ticks(os_pid)
    Process.sleep(@idle_window_ms)
    used = stat_ticks("/proc/#{os_pid}/stat") - before

    busy =
      for {tid, {name, ticks}} <- thread_ticks(os_pid),
          {_, earlier} = Map.get(threads_before, tid, {name, 0}),
          ticks > earlier,
          do: {name, ticks - earlier}

    # A clock tick is 10 ms. The kernel truncates user and system time to ticks each on
    # its own, so the sum read twice can grow by 2 while the port uses almost nothing,
    # and by at least 3 once it uses 40 ms: 7 % of the window (a loop left running uses
    # all of it).
    assert used <= 2, "the port used #{used} ticks in #{@idle_window_ms} ms: #{inspect(busy)}"
  end

  defp start_fuel_instance(wat \\ @wasm_test, imports \\ %{}) do
    {:ok, engine} = Engine.new(%EngineConfig{consume_fuel: true})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store, wat)
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: imports})
    {pid, store}
  end

  describe "fuel" do
    test "running out traps with a message that says so; set_fuel lets the instance run again" do
      {pid, store} = start_fuel_instance()
      :ok = StoreOrCaller.set_fuel(store, 10_000)
      assert {:error, message} = Wasmex.call_function(pid, "endless_loop", [])
      assert message =~ "all fuel consumed by WebAssembly"
      assert StoreOrCaller.get_fuel(store) == {:ok, 0}
      :ok = StoreOrCaller.set_fuel(store, 10_000)
      assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
    end

    test "set_fuel and get_fuel work through the caller inside a callback" do
      wat = """
      (module (import "env" "refuel" (func $refuel (result i64)))
        (func (export "run") (result i64) call $refuel))
      """

      refuel = fn %{caller: caller} ->
        {:ok, left} = StoreOrCaller.get_fuel(caller)
        :ok = StoreOrCaller.set_fuel(caller, 1_000_000)
        left
      end

      {pid, store} = start_fuel_instance(wat, %{env: %{refuel: {:fn, [], [:i64], refuel}}})
      :ok = StoreOrCaller.set_fuel(store, 500)
      assert {:ok, [left]} = Wasmex.call_function(pid, "run", [])
      assert left in 490..500
      assert {:ok, fuel} = StoreOrCaller.get_fuel(store)
      assert fuel > 999_000
    end

    test "a runaway loop is stopped by fuel and the port goes idle" do
      {pid, store} = start_fuel_instance()
      :ok = StoreOrCaller.set_fuel(store, 50_000_000)

      assert {:error,
              "Error during function excecution: `error while executing at wasm" <> _ = message} =
               Wasmex.call_function(pid, "endless_loop", [], 60_000)

      assert message =~ ~r/`\. wasm trap: all fuel consumed by WebAssembly$/

      assert_idle(store)
    end
  end

  describe "store limits" do
    @growable ~s{(module (memory (export "memory") 1)
                   (table (export "table") 1 funcref)
                   (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
                   (func (export "grow_table") (param i32) (result i32) ref.null func local.get 0 table.grow 0))}

    defp start_limited(limits, wat \\ @growable) do
      {:ok, store} = Wasmex.Store.new(limits)
      {:ok, module} = Wasmex.Module.compile(store, wat)
      {store, module, Wasmex.start_link(%{store: store, module: module})}
    end

    test "memory.grow past memory_size returns -1" do
      {_store, _module, {:ok, pid}} = start_limited(%StoreLimits{memory_size: 3 * 65_536})
      assert Wasmex.call_function(pid, "grow", [2]) == {:ok, [1]}
      assert Wasmex.call_function(pid, "grow", [1]) == {:ok, [-1]}
    end

    test "growing memory from Elixir past the limit is an error" do
      {store, _module, {:ok, pid}} = start_limited(%StoreLimits{memory_size: 2 * 65_536})
      {:ok, memory} = Wasmex.memory(pid)
      assert {:error, "Failed to grow the memory: " <> _} = Memory.grow(store, memory, 5)
      assert Memory.grow(store, memory, 1) == 1
    end

    test "table.grow past table_elements returns -1" do
      {_store, _module, {:ok, pid}} = start_limited(%StoreLimits{table_elements: 4})
      assert Wasmex.call_function(pid, "grow_table", [3]) == {:ok, [1]}
      assert Wasmex.call_function(pid, "grow_table", [1]) == {:ok, [-1]}
    end

    test "without a table_elements limit, a table grows to 10,000,000 elements and no further" do
      {_store, _module, {:ok, pid}} = start_limited(nil)
      # The table starts with one element.
      assert Wasmex.call_function(pid, "grow_table", [10_000_000]) == {:ok, [-1]}
      assert Wasmex.call_function(pid, "grow_table", [9_999_999]) == {:ok, [1]}
    end

    test "a module whose memory exceeds the limit fails to instantiate" do
      wat = ~s{(module (memory 10))}
      {_store, _module, result} = start_limited(%StoreLimits{memory_size: 65_536}, wat)
      assert {:error, message} = result
      assert message =~ "memory minimum size of 10 pages exceeds memory limits"
    end

    test "instantiating past the instances limit fails" do
      {store, module, {:ok, _pid}} = start_limited(%StoreLimits{instances: 1})
      assert {:error, message} = Instance.new(store, module, %{})
      assert message =~ "instance count too high"
    end

    test "WASI stores take limits too" do
      {:ok, store} =
        Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, %StoreLimits{memory_size: 65_536})

      {:ok, module} = Wasmex.Module.compile(store, @growable)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "grow", [1]) == {:ok, [-1]}
    end

    test "the port's own memory stays bounded while Wasm grows as far as it may" do
      wat = ~s{(module (memory 1) (func (export "fill") (result i32) (local $n i32)
                 (loop $l (if (i32.ne (memory.grow (i32.const 16)) (i32.const -1))
                   (then (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))))
                 local.get $n))}

      {store, _module, {:ok, pid}} =
        start_limited(%StoreLimits{memory_size: 64 * 1024 * 1024}, wat)

      assert {:ok, [grows]} = Wasmex.call_function(pid, "fill", [])
      # 1 MiB per grow: 63 more MiB fit in 64 MiB.
      assert grows == 63
      status = File.read!("/proc/#{Host.os_pid(store.host)}/status")
      [_, rss_kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
      assert String.to_integer(rss_kb) < 200 * 1024
    end
  end

  describe "timeouts" do
    setup do
      {:ok, pid} = Wasmex.start_link(%{bytes: @wasm_test})
      {:ok, store} = Wasmex.store(pid)
      %{pid: pid, store: store}
    end

    test "a runaway loop is stopped at the timeout; the port goes idle; the instance answers", %{
      pid: pid,
      store: store
    } do
      {micros, result} = :timer.tc(fn -> Wasmex.call_function(pid, "endless_loop", [], 200) end)
      assert {:error, "timed out: the call did not finish within 200 ms and was stopped"} = result
      # Stopped by the port at its deadline, not by the BEAM giving up 2 s later.
      assert micros < 1_500_000
      assert_idle(store)
      assert Wasmex.call_function(pid, "sum", [20, 22]) == {:ok, [42]}
    end

    test "calls queued behind a stuck call run after it is stopped", %{pid: pid} do
      stuck = Task.async(fn -> Wasmex.call_function(pid, "endless_loop", [], 300) end)
      queued = Task.async(fn -> Wasmex.call_function(pid, "sum", [1, 2], 5_000) end)
      assert {:error, "timed out" <> _} = Task.await(stuck)
      assert Task.await(queued) == {:ok, [3]}
    end

    test "a caller that dies cancels its Wasm", %{pid: pid, store: store} do
      caller = spawn(fn -> Wasmex.call_function(pid, "endless_loop", [], 60_000) end)
      ref = Process.monitor(caller)
      # Wait until the call is running (the host has it in flight), then kill the caller.
      TestHelper.wait_until_pending(store.host)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^ref, :process, ^caller, :killed}
      # The store is free again long before the 60 s timeout.
      assert Wasmex.call_function(pid, "sum", [1, 1], 2_000) == {:ok, [2]}
      assert_idle(store)
    end

    test "a call nested in a callback stops at its own timeout; the call around it goes on" do
      wat = """
      (module
        (import "env" "reenter" (func $reenter (result i32)))
        (func (export "spin") (loop br 0))
        (func (export "run") (result i32) call $reenter))
      """

      test_pid = self()

      reenter = fn %{caller: caller, instance: instance} ->
        Instance.call_exported_function(caller, instance, "spin", [], :nested, 100)

        receive do:
                  ({:returned_function_call, result, :nested} ->
                     send(test_pid, {:nested, result}))

        7
      end

      imports = %{env: %{reenter: {:fn, [], [:i32], reenter}}}
      {:ok, pid} = Wasmex.start_link(%{bytes: wat, imports: imports})
      assert Wasmex.call_function(pid, "run", [], 5_000) == {:ok, [7]}

      assert_received {:nested,
                       {:error,
                        "timed out: the call did not finish within 100 ms and was stopped"}}
    end

    test "a loop inside an import callback chain is stopped too" do
      # Wasm -> Elixir callback -> Wasm (nested, through the caller) that loops forever.
      wat = """
      (module
        (import "env" "reenter" (func $reenter))
        (func (export "spin") (loop br 0))
        (func (export "run") call $reenter))
      """

      test_pid = self()

      reenter = fn %{caller: caller, instance: instance} ->
        send(test_pid, {:callback, self()})
        Instance.call_exported_function(caller, instance, "spin", [], :nested, :infinity)
        receive do: ({:returned_function_call, _, :nested} -> nil)
        send(test_pid, {:callback_returned, self()})
      end

      {:ok, pid} =
        Wasmex.start_link(%{bytes: wat, imports: %{env: %{reenter: {:fn, [], [], reenter}}}})

      {:ok, store} = Wasmex.store(pid)

      assert {:error, "timed out: " <> _} = Wasmex.call_function(pid, "run", [], 200)

      assert_receive {:callback, callback_pid}
      ref = Process.monitor(callback_pid)

      # The callback ends: its nested call, stopped with the outer one, returns, or its
      # process is killed first.
      receive do
        {:callback_returned, ^callback_pid} -> :ok
        {:DOWN, ^ref, :process, ^callback_pid, _} -> :ok
      after
        1_000 -> flunk("the callback neither returned nor ended")
      end

      assert_idle(store)
      assert Wasmex.call_function(pid, "spin", [], 50) |> elem(0) == :error
    end

    test "dropping a store stops every callback waiting in it, nested ones and outer ones" do
      wat = """
      (module
        (import "env" "outer" (func $outer))
        (import "env" "inner" (func $inner))
        (func (export "inner_run") call $inner)
        (func (export "run") call $outer))
      """

      test_pid = self()

      outer = fn %{caller: caller, instance: instance} ->
        send(test_pid, {:outer, self()})
        Instance.call_exported_function(caller, instance, "inner_run", [], :nested, :infinity)
        receive do: ({:returned_function_call, _, :nested} -> nil)
        receive do: (:never -> nil)
      end

      inner = fn _ctx ->
        send(test_pid, {:inner, self()})
        receive do: (:never -> nil)
      end

      imports = %{env: %{outer: {:fn, [], [], outer}, inner: {:fn, [], [], inner}}}
      # On a shared engine the host outlives the store: the port itself must give up.
      {:ok, engine} = Engine.new(%EngineConfig{})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, module} = Wasmex.Module.compile(store, wat)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: imports})
      call = Task.async(fn -> Wasmex.call_function(pid, "run", [], :infinity) end)
      assert_receive {:outer, outer_pid}
      assert_receive {:inner, inner_pid}
      refs = Enum.map([outer_pid, inner_pid], &Process.monitor/1)

      GenServer.stop(pid)
      Wasmex.Store.release(store, self())

      for {ref, callback_pid} <- Enum.zip(refs, [outer_pid, inner_pid]) do
        assert_receive {:DOWN, ^ref, :process, ^callback_pid, :killed}, 1_000
      end

      assert {:error, _} = Task.await(call)
    end

    test "a host that stops kills the callbacks it started" do
      pid = start_hanging()
      Process.unlink(pid)
      {:ok, store} = Wasmex.store(pid)
      Task.start(fn -> Wasmex.call_function(pid, "run", [], :infinity) end)
      assert_receive {:callback, callback_pid}
      ref = Process.monitor(callback_pid)
      GenServer.stop(store.host)
      assert_receive {:DOWN, ^ref, :process, ^callback_pid, :killed}
    end

    test "an Elixir callback that never returns is abandoned and stopped at the timeout" do
      pid = start_hanging()
      call = Task.async(fn -> Wasmex.call_function(pid, "run", [], 200) end)
      assert_receive {:callback, callback_pid}
      ref = Process.monitor(callback_pid)
      assert {:error, message} = Task.await(call)
      assert message =~ "timed out"
      assert_receive {:DOWN, ^ref, :process, ^callback_pid, :killed}, 1_000
    end
  end

  # An instance whose `run` calls an Elixir import that tells the test its pid and never
  # returns.
  defp start_hanging do
    wat = ~s{(module (import "env" "hang" (func $hang)) (func (export "run") call $hang))}
    test_pid = self()

    hang = fn _ctx ->
      send(test_pid, {:callback, self()})
      receive do: (:never -> nil)
    end

    {:ok, pid} = Wasmex.start_link(%{bytes: wat, imports: %{env: %{hang: {:fn, [], [], hang}}}})
    pid
  end

  describe "engine options" do
    test "cranelift_opt_level changes the generated code" do
      artifacts =
        for level <- [:none, :speed, :speed_and_size] do
          {:ok, engine} = Engine.new(%EngineConfig{cranelift_opt_level: level})
          {:ok, artifact} = Engine.precompile_module(engine, @wasm_test)
          artifact
        end

      assert artifacts |> Enum.uniq() |> length() == 3
    end
  end
end
