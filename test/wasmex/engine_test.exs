defmodule Wasmex.EngineTest do
  use ExUnit.Case, async: true

  # sum(1, 2) in an instance of the main fixture, in a store of `engine`.
  defp sum_in(engine) do
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    Wasmex.call_function(pid, "sum", [1, 2])
  end

  alias Wasmex.{Engine, EngineConfig, StoreOrCaller}

  describe "new/1" do
    test "starts an engine honouring consume_fuel" do
      {:ok, engine} = Engine.new(%EngineConfig{consume_fuel: true})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, module} = Wasmex.Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      :ok = StoreOrCaller.set_fuel(store, 2)
      assert Wasmex.call_function(pid, "void", []) == {:ok, []}
      assert StoreOrCaller.get_fuel(store) == {:ok, 1}
      assert {:error, message} = Wasmex.call_function(pid, "void", [])
      assert message =~ "all fuel consumed"
    end

    test "fuel on an engine without consume_fuel is an error" do
      {:ok, store} = Wasmex.Store.new()
      assert {:error, "Could not set fuel: " <> _} = StoreOrCaller.set_fuel(store, 10)
      assert {:error, "Could not get fuel: " <> _} = StoreOrCaller.get_fuel(store)
    end

    test "accepts every opt level" do
      for level <- [:none, :speed, :speed_and_size] do
        {:ok, engine} = Engine.new(EngineConfig.cranelift_opt_level(%EngineConfig{}, level))
        assert sum_in(engine) == {:ok, [3]}
      end
    end

    test "with wasm_backtrace_details, trap errors carry a backtrace with function names" do
      {:ok, engine} = Engine.new(%EngineConfig{wasm_backtrace_details: true})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      wat = ~s{(module $demo (func $inner unreachable) (func (export "outer") call $inner))}
      {:ok, module} = Wasmex.Module.compile(store, wat)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert {:error, message} = Wasmex.call_function(pid, "outer", [])
      assert message =~ "demo!inner"
    end
  end

  describe "new/1 with memory64, debug_info and wasm_component_model" do
    @memory64 ~s{(module (memory (export "mem") i64 1)
                   (func (export "grow") (param i64) (result i64) local.get 0 memory.grow)
                   (func (export "size") (result i64) memory.size))}

    test "memory64: true runs a module with a 64-bit memory, bounded by the store's limits" do
      {:ok, engine} = Engine.new(%EngineConfig{memory64: true})
      {:ok, store} = Wasmex.Store.new(%Wasmex.StoreLimits{memory_size: 3 * 65_536}, engine)
      {:ok, module} = Wasmex.Module.compile(store, @memory64)
      assert {:memory, %{memory64: true}} = Wasmex.Module.exports(module)["mem"]
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "grow", [2]) == {:ok, [1]}
      # Past the store's limit: refused, as memory.grow refuses (-1).
      assert Wasmex.call_function(pid, "grow", [1]) == {:ok, [-1]}
      assert Wasmex.call_function(pid, "size", []) == {:ok, [3]}
    end

    test "memory64: false (the default) refuses such a module with a clear error" do
      {:ok, store} = Wasmex.Store.new(nil, elem(Engine.new(%EngineConfig{}), 1))
      assert {:error, message} = Wasmex.Module.compile(store, @memory64)
      assert message =~ "memory64"
    end

    test "debug_info and wasm_component_model are accepted and modules still run" do
      config =
        %EngineConfig{}
        |> EngineConfig.debug_info(true)
        |> EngineConfig.wasm_component_model(true)
        |> EngineConfig.memory64(true)

      assert %EngineConfig{debug_info: true, wasm_component_model: true, memory64: true} = config
      {:ok, engine} = Engine.new(config)
      assert sum_in(engine) == {:ok, [3]}
    end
  end

  describe "the resource and reference fields" do
    test "name the engine's process, with one reference for the default engine" do
      {:ok, engine} = Engine.new(%EngineConfig{})
      assert %Engine{resource: host, reference: ref} = engine
      assert host == engine.host and is_reference(ref)
      assert Engine.default() == Engine.default()
      assert is_reference(Engine.default().reference)
    end
  end

  describe "new/2 options" do
    test "an unknown option is refused, naming it" do
      assert Engine.new(%EngineConfig{}, os_limit: [resident_memory: 50_000_000]) ==
               {:error,
                "unknown option :os_limit for Wasmex.Engine.new/2 (known: :os_limits, :compile_timeout, :instance_slots)"}
    end

    test "an option given twice is refused" do
      assert Engine.new(%EngineConfig{}, compile_timeout: 1_000, compile_timeout: 2_000) ==
               {:error, "option :compile_timeout given more than once"}
    end

    test "an os_limits key given twice is refused" do
      assert {:error, "os_limits gives a key more than once" <> _} =
               Engine.new(%EngineConfig{}, os_limits: [cpu_seconds: 60, cpu_seconds: 1])
    end

    test "a cap of zero is refused" do
      assert {:error, "os_limits resident_memory must be a positive integer, got: 0" <> _} =
               Engine.new(%EngineConfig{}, os_limits: [resident_memory: 0])
    end

    test "a setting of the config given as nil is refused" do
      assert {:error, "consume_fuel must be a boolean, got: nil" <> _} =
               Engine.new(%EngineConfig{consume_fuel: nil})
    end
  end

  describe "new/2 with :instance_slots" do
    # Instantiates `module` `n` times in `store`; the results.
    defp instantiate_n(store, module, n),
      do: for(_ <- 1..n, do: Wasmex.Instance.new(store, module, %{}))

    defp store_with_memory_module(options) do
      {:ok, engine} = Engine.new(%EngineConfig{}, options)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, module} = Wasmex.Module.compile(store, "(module (memory 1) (table 1 funcref))")
      {store, module}
    end

    test "by default holds 1000 instances at once and refuses the next, naming the option" do
      {store, module} = store_with_memory_module([])
      assert Enum.all?(instantiate_n(store, module, 1000), &match?({:ok, _}, &1))
      assert {:error, message} = Wasmex.Instance.new(store, module, %{})
      assert message =~ "maximum concurrent limit of 1000"
    end

    # Says it runs, then loops until `ns` nanoseconds have passed by the WASI clock.
    @busy_for ~s{(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
      (import "env" "running" (func $running))
      (memory (export "memory") 1)
      (func (export "busy_for") (param $ns i64) (local $until i64)
        call $running
        (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0)))
        (local.set $until (i64.add (i64.load (i32.const 0)) (local.get $ns)))
        (loop $l
          (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0)))
          (br_if $l (i64.lt_u (i64.load (i32.const 0)) (local.get $until))))))}

    # A store whose instance (holding a slot) is dropped while a call of it runs (for up
    # to `ms` milliseconds): the drop is pending in the port until the call is stopped.
    # The call's task.
    defp drop_while_busy(engine, ms) do
      test = self()
      {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
      imports = %{env: %{running: {:fn, [], [], fn _ -> send(test, :running) end}}}
      {:ok, pid} = Wasmex.start_link(%{store: store, bytes: @busy_for, imports: imports})
      call = Task.async(fn -> Wasmex.call_function(pid, "busy_for", [ms * 1_000_000], 10_000) end)
      assert_receive :running, 5_000
      # The server lets go of the store before it exits, and this process's release goes
      # ahead of its next request: the drop is on its way when the next start comes.
      GenServer.stop(pid)
      Wasmex.Store.release(store, self())
      call
    end

    # Runs `start` while a dropped store's instance may still hold a slot.
    defp start_behind_drop(engine, start) do
      call = drop_while_busy(engine, 200)
      result = start.()
      # The server stopped and the store went: either says why.
      assert {:error, "stopped: " <> _} = Task.await(call, 10_000)
      result
    end

    @utils ~s{(module (func (export "one") (result i32) i32.const 1))}
    @uses_utils ~s{(module (import "utils" "one" (func $one (result i32))) (memory 1)
      (func (export "two") (result i32) call $one call $one i32.add))}

    test "an instantiation that finds the slots full waits for a store being dropped" do
      {:ok, engine} = Engine.new(%EngineConfig{}, instance_slots: 1)

      assert {:ok, pid} =
               start_behind_drop(engine, fn ->
                 {:ok, store} = Wasmex.Store.new(nil, engine)
                 Wasmex.start_link(%{bytes: @utils, store: store})
               end)

      assert Wasmex.call_function(pid, "one", []) == {:ok, [1]}
    end

    test "stopping the last holder frees its slot for a start right after" do
      {:ok, engine} = Engine.new(%EngineConfig{}, instance_slots: 1)

      results =
        for _ <- 1..20 do
          {:ok, store} = Wasmex.Store.new(nil, engine)
          result = Wasmex.start_link(%{bytes: @utils, store: store})
          Wasmex.Store.release(store, self())
          with {:ok, pid} <- result, do: GenServer.stop(pid)
          result
        end

      assert Enum.reject(results, &match?({:ok, _}, &1)) == []
    end

    test "one with links waits for as many slots as it needs" do
      {:ok, engine} = Engine.new(%EngineConfig{}, instance_slots: 2)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      links = %{utils: %{bytes: @utils}}

      assert {:ok, pid} =
               start_behind_drop(engine, fn ->
                 Wasmex.start_link(%{bytes: @uses_utils, store: store, links: links})
               end)

      assert Wasmex.call_function(pid, "two", []) == {:ok, [2]}
    end

    test "waiting costs nothing against the store's limits" do
      {:ok, engine} = Engine.new(%EngineConfig{}, instance_slots: 1)
      {:ok, store} = Wasmex.Store.new(%Wasmex.StoreLimits{instances: 1}, engine)

      assert {:ok, _} =
               start_behind_drop(engine, fn ->
                 Wasmex.start_link(%{bytes: @utils, store: store})
               end)
    end

    test "a busy store's drop stops its call, so a start behind it does not wait it out" do
      {:ok, engine} = Engine.new(%EngineConfig{}, instance_slots: 1)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      # Compiled first, so that the start waits for the slot alone. (How long a start
      # waits for a drop at most is `drops.rs`'s to test.)
      {:ok, module} = Wasmex.Module.compile(store, @utils)
      call = drop_while_busy(engine, 30_000)
      assert {:ok, _pid} = Wasmex.start_link(%{module: module, store: store})
      # The server stopped and the store went: either says why.
      assert {:error, "stopped: " <> _} = Task.await(call, 10_000)
    end

    test "fits modules with several memories and tables" do
      {store, _} = store_with_memory_module([])
      wat = "(module (memory 1) (memory 2) (table 1 funcref) (table 2 externref))"
      {:ok, module} = Wasmex.Module.compile(store, wat)
      assert {:ok, _} = Wasmex.Instance.new(store, module, %{})
    end

    test "false allocates each instance on its own, without the pool's limit" do
      {store, module} = store_with_memory_module(instance_slots: false)
      assert Enum.all?(instantiate_n(store, module, 1001), &match?({:ok, _}, &1))
    end

    test "a store made without an engine gets a host without a pool" do
      {:ok, store} = Wasmex.Store.new()
      {:ok, module} = Wasmex.Module.compile(store, "(module (memory 1) (table 1 funcref))")
      assert Enum.all?(instantiate_n(store, module, 1001), &match?({:ok, _}, &1))
    end

    test "a size out of range is refused with the engine" do
      for bad <- [0, 20_001, :big] do
        assert {:error, "instance_slots must be false or an integer from 1 to 20000" <> _} =
                 Engine.new(%EngineConfig{}, instance_slots: bad)
      end
    end

    test "where the address space is capped from outside, allocates on demand and says so" do
      # 16 GiB of address space: room for on-demand memories, not for 1000 pool slots.
      wrapper = Path.join(System.tmp_dir!(), "capped_port_#{System.unique_integer([:positive])}")
      File.write!(wrapper, "#!/bin/sh\nulimit -v 16777216\nexec #{Wasmex.Host.executable()}\n")
      File.chmod!(wrapper, 0o755)
      on_exit(fn -> File.rm(wrapper) end)

      log =
        ExUnit.CaptureLog.capture_log(fn ->
          {:ok, host} =
            Wasmex.Host.start(%EngineConfig{}, self(), executable: wrapper, instance_slots: 1000)

          engine = %Engine{host: host, config: %EngineConfig{}}
          {:ok, store} = Wasmex.Store.new(nil, engine)
          {:ok, module} = Wasmex.Module.compile(store, "(module (memory 1))")
          assert {:ok, _} = Wasmex.Instance.new(store, module, %{})
        end)

      assert log =~ "no instance slots"
    end
  end

  describe "default/0" do
    test "is one shared engine" do
      assert Engine.default().host == Engine.default().host
    end
  end

  describe "precompile_module/2" do
    test "produces an artifact that loads into an engine of the same configuration" do
      engine = Engine.default()

      {:ok, artifact} =
        Engine.precompile_module(engine, File.read!(TestHelper.wasm_test_file_path()))

      assert {:ok, module} = Wasmex.Module.unsafe_deserialize(artifact, engine)
      assert {:fn, [:i32, :i32], [:i32]} = Wasmex.Module.exports(module)["sum"]
    end

    test "reports invalid bytes" do
      assert {:error, "Error while parsing bytes: " <> _} =
               Engine.precompile_module(Engine.default(), "(nope")
    end
  end
end
