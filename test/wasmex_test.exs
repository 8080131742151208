defmodule WasmexTest do
  use ExUnit.Case, async: true

  defp start(opts \\ %{}) do
    bytes = File.read!(TestHelper.wasm_test_file_path())
    start_supervised!({Wasmex, Map.merge(%{bytes: bytes}, opts)})
  end

  describe "start_link/1" do
    test "starts from .wasm bytes" do
      assert {:ok, pid} =
               Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})

      assert Process.alive?(pid)
    end

    test "starts from .wat text" do
      {:ok, pid} =
        Wasmex.start_link(%{bytes: "(module (func (export \"f\") (result i32) i32.const 7))"})

      assert Wasmex.call_function(pid, :f, []) == {:ok, [7]}
    end

    test "starts from a compiled module and its store" do
      %{store: store, module: module} = TestHelper.wasm_module()
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
    end

    test "refuses a module without its store" do
      %{module: module} = TestHelper.wasm_module()

      assert Wasmex.start_link(%{module: module}) ==
               {:error, :must_specify_store_used_to_compile_module}
    end

    test "registers the server under :name" do
      name = :"wasmex_named_#{System.unique_integer([:positive])}"
      bytes = File.read!(TestHelper.wasm_test_file_path())
      {:ok, pid} = Wasmex.start_link(%{bytes: bytes, name: name})
      assert Process.whereis(name) == pid
      assert Wasmex.call_function(name, "sum", [1, 2]) == {:ok, [3]}
      assert {:error, {:already_started, ^pid}} = Wasmex.start_link(%{bytes: bytes, name: name})
    end

    test "serves an instance given with its store and module, keeping its state" do
      %{store: store, module: module} = TestHelper.wasm_module()
      {:ok, instance} = Wasmex.Instance.new(store, module, %{})
      {:ok, memory} = Wasmex.Memory.from_instance(store, instance)
      :ok = Wasmex.Memory.write_binary(store, memory, 42, "hello")

      {:ok, pid} = Wasmex.start_link(%{store: store, module: module, instance: instance})
      assert Wasmex.instance(pid) == {:ok, instance}
      assert Wasmex.call_function(pid, "string_first_byte", [42, 5]) == {:ok, [?h]}
    end

    test "runs the import callbacks of an instance given to it with :imports" do
      {:ok, store} = Wasmex.Store.new()
      wat = ~s{(module (import "env" "double" (func $d (param i32) (result i32)))
                 (func (export "quad") (param i32) (result i32) local.get 0 call $d call $d))}

      {:ok, module} = Wasmex.Module.compile(store, wat)
      imports = %{env: %{double: {:fn, [:i32], [:i32], fn _context, x -> 2 * x end}}}
      {:ok, instance} = Wasmex.Instance.new(store, module, imports)

      {:ok, pid} =
        Wasmex.start_link(%{store: store, module: module, instance: instance, imports: imports})

      assert Wasmex.call_function(pid, "quad", [5]) == {:ok, [20]}
      :ok = GenServer.stop(pid)
      # What the server registered for this process goes with it.
      assert :ets.lookup(Wasmex.Callbacks, self()) == []
    end

    test "refuses an instance without its store and module" do
      %{store: store, module: module} = TestHelper.wasm_module()
      {:ok, instance} = Wasmex.Instance.new(store, module, %{})
      error = {:error, :must_specify_store_and_module_used_to_instantiate_instance}
      assert Wasmex.start_link(%{instance: instance}) == error
      assert Wasmex.start_link(%{instance: instance, store: store}) == error
      assert Wasmex.start_link(%{instance: instance, module: module}) == error
    end

    test "returns an error for an instance whose store's host has stopped" do
      %{store: store, module: module} = TestHelper.wasm_module()
      {:ok, instance} = Wasmex.Instance.new(store, module, %{})
      :ok = GenServer.stop(store.host)

      assert Wasmex.start_link(%{store: store, module: module, instance: instance}) ==
               {:error, "the Wasm host is not running"}
    end

    test "returns the compile error for invalid bytes and leaves the caller alive" do
      assert {:error, "Error while parsing bytes: " <> _} = Wasmex.start_link(%{bytes: "(modul"})

      assert {:error, "Could not compile module" <> _} =
               Wasmex.start_link(%{bytes: <<0, 97, 115, 109, 9>>})
    end

    test "refuses bytes that are not a binary, and a module that is not a Wasmex.Module" do
      assert Wasmex.start_link(%{bytes: 42}) ==
               {:error, ":bytes must be a binary (Wasm or WAT), got: 42"}

      {:ok, store} = Wasmex.Store.new()

      assert Wasmex.start_link(%{store: store, module: :nope}) ==
               {:error, ":module must be a Wasmex.Module, got: :nope"}
    end

    test "refuses malformed imports before starting a server, leaving the caller alive" do
      bytes = File.read!(TestHelper.wasm_test_file_path())

      assert Wasmex.start_link(%{bytes: bytes, imports: :nope}) ==
               {:error, "imports must be a map of namespaces to maps of functions, got: :nope"}

      assert Wasmex.start_link(%{bytes: bytes, imports: %{env: :nope}}) ==
               {:error, "import namespace env must be a map, got: :nope"}

      assert {:error, "import env.f must be {:fn, params, results, fun}, got: :nope"} =
               Wasmex.start_link(%{bytes: bytes, imports: %{env: %{f: :nope}}})
    end

    test "names a missing import" do
      wat = ~s{(module (import "env" "missing" (func)))}
      assert {:error, message} = Wasmex.start_link(%{bytes: wat})
      assert message =~ "env::missing"
    end

    test "starts under a supervisor via child_spec/1" do
      spec = Wasmex.child_spec(%{bytes: File.read!(TestHelper.wasm_test_file_path())})

      assert spec.start ==
               {Wasmex, :start_link, [%{bytes: File.read!(TestHelper.wasm_test_file_path())}]}

      pid = start_supervised!(spec)
      assert Wasmex.call_function(pid, "arity_0", []) == {:ok, [42]}
    end
  end

  describe "stopping an instance server" do
    test "tells the host it lets go of its store before it exits" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{bytes: "(module)", store: store})
      id = store.store_id
      # Not by the host's monitor of it, whose message can come after the next request of
      # the process that stopped it: a call, answered before the server exits.
      :erlang.trace(engine.host, true, [:receive])
      :ok = GenServer.stop(pid)
      assert_receive {:trace, _, :receive, {:"$gen_call", {^pid, _}, {:release, ^id, ^pid}}}
    end
  end

  describe "call_function/3,4" do
    setup do
      %{pid: start()}
    end

    test "calls by string or atom name", %{pid: pid} do
      assert Wasmex.call_function(pid, "sum", [50, -8]) == {:ok, [42]}
      assert Wasmex.call_function(pid, :sum, [50, -8], 10_000) == {:ok, [42]}
    end

    test "passes and returns every number type", %{pid: pid} do
      assert Wasmex.call_function(pid, "i32_i32", [-2_147_483_648]) == {:ok, [-2_147_483_648]}

      assert Wasmex.call_function(pid, "i64_i64", [-9_223_372_036_854_775_808]) ==
               {:ok, [-9_223_372_036_854_775_808]}

      assert Wasmex.call_function(pid, "f32_f32", [3.5]) == {:ok, [3.5]}
      assert Wasmex.call_function(pid, "f64_f64", [2.0e300]) == {:ok, [2.0e300]}
      max_u128 = 340_282_366_920_938_463_463_374_607_431_768_211_455
      assert Wasmex.call_function(pid, "v128_v128", [max_u128]) == {:ok, [max_u128]}
      assert {:ok, [sum]} = Wasmex.call_function(pid, "i32_i64_f32_f64_f64", [3, 4, 5.6, 7.8])
      assert_in_delta sum, 20.4, 0.0001
    end

    test "returns several results", %{pid: pid} do
      assert {:ok, [pointer, 5]} = Wasmex.call_function(pid, "to_string", [-1234])
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      assert Wasmex.Memory.read_string(store, memory, pointer, 5) == "-1234"
    end

    test "returns no result for a void function", %{pid: pid} do
      assert Wasmex.call_function(pid, "void", []) == {:ok, []}
    end

    test "reports an unknown export", %{pid: pid} do
      assert Wasmex.call_function(pid, "nope", []) ==
               {:error, "exported function `nope` not found"}
    end

    test "reports a wrong number of params", %{pid: pid} do
      assert Wasmex.call_function(pid, "sum", [1]) ==
               {:error, "number of params does not match. expected 2, got 1"}
    end

    test "reports a param of the wrong type", %{pid: pid} do
      assert Wasmex.call_function(pid, "sum", [1, "two"]) ==
               {:error, "Cannot convert argument #2 to a WebAssembly i32 value. Given `Binary`."}

      given = fn param -> Wasmex.call_function(pid, "i32_i32", [param]) end
      prefix = "Cannot convert argument #1 to a WebAssembly i32 value."
      assert given.(nil) == {:error, prefix <> " Given `Atom`."}
      assert given.(:an_atom) == {:error, prefix <> " Given `Atom`."}
      assert given.(%{}) == {:error, prefix <> " Given `Map`."}
      assert given.([1]) == {:error, prefix <> " Given `List`."}

      assert Wasmex.call_function(pid, "i32_i32", [1.5]) ==
               {:error, "Cannot convert argument #1 to a WebAssembly i32 value."}
    end

    test "refuses integers out of range instead of wrapping", %{pid: pid} do
      assert {:error, "Cannot convert argument #1 to a WebAssembly i32 value."} =
               Wasmex.call_function(pid, "i32_i32", [2_147_483_648])

      assert {:error, "Cannot convert argument #1 to a WebAssembly i64 value."} =
               Wasmex.call_function(pid, "i64_i64", [9_223_372_036_854_775_808])

      assert {:error, "Cannot convert argument #1 to a WebAssembly v128 value."} =
               Wasmex.call_function(pid, "v128_v128", [-1])

      assert {:error, "Cannot convert argument #1 to a WebAssembly f32 value."} =
               Wasmex.call_function(pid, "f32_f32", [1.0e300])
    end

    test "reports a division by zero trap and keeps the instance usable", %{pid: pid} do
      assert {:error, message} = Wasmex.call_function(pid, "divide", [1, 0])
      # Wasmex's text with its backtrace layout, then the trap.
      assert message ==
               "Error during function excecution: `error while executing at wasm backtrace:\n" <>
                 "    0:  0x2a8 - <unknown>!<wasm function 13>`. wasm trap: integer divide by zero"

      assert Wasmex.call_function(pid, "divide", [10, 2]) == {:ok, [5]}
    end

    test "bounds the message of a trap in a function with a 2 MB name" do
      name = String.duplicate("n", 2_000_000)

      wat =
        ~s{(module (func $#{name} (param i32) local.get 0 i32.eqz if unreachable end } <>
          ~s{local.get 0 i32.const 1 i32.sub call $#{name}) } <>
          ~s{(func (export "f") i32.const 100 call $#{name}))}

      {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      assert {:error, message} = Wasmex.call_function(pid, "f", [])
      assert byte_size(message) < 16_384
      assert message =~ ~r/^Error during function excecution: `error while executing/
      assert message =~ "<unknown>!" <> String.duplicate("n", 256) <> "...\n"
      assert String.ends_with?(message, "`. wasm trap: wasm `unreachable` instruction executed")
    end

    test "reports an unreachable trap" do
      {:ok, pid} = Wasmex.start_link(%{bytes: ~s{(module (func (export "boom") unreachable))}})
      assert {:error, message} = Wasmex.call_function(pid, "boom", [])
      assert message =~ "wasm trap: wasm `unreachable` instruction executed"
    end

    test "reports an out-of-bounds memory access trap" do
      wat = ~s{(module (memory 1) (func (export "peek") (result i32) i32.const 70000 i32.load))}
      {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      assert {:error, message} = Wasmex.call_function(pid, "peek", [])
      assert message =~ "out of bounds memory access"
      assert {:error, _} = Wasmex.call_function(pid, "peek", [])
    end

    test "stops the Wasm at the timeout and answers the next call", %{pid: pid} do
      assert {:error, "timed out" <> _} = Wasmex.call_function(pid, "endless_loop", [], 100)
      assert Wasmex.call_function(pid, "sum", [1, 1]) == {:ok, [2]}
    end

    # `bump` counts the calls that ran; `spin` says it started, then runs until stopped.
    @counter """
    (module (import "env" "started" (func $started))
      (global $n (mut i32) (i32.const 0))
      (func (export "bump") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
      (func (export "count") (result i32) (global.get $n))
      (func (export "spin") (call $started) (loop br 0)))
    """

    defp start_counter(opts \\ %{}) do
      test = self()
      started = {:fn, [], [], fn _context -> send(test, :spinning) end}
      opts = Map.merge(%{bytes: @counter, imports: %{env: %{started: started}}}, opts)
      {:ok, pid} = Wasmex.start_link(opts)
      pid
    end

    # Calls `bump` from a process that is killed while its call is queued behind `spin`;
    # only then is `spin` stopped, by killing its caller too.
    defp bump_behind_spin(pid) do
      {:ok, store} = Wasmex.store(pid)
      busy = spawn(fn -> Wasmex.call_function(pid, "spin", [], 60_000) end)
      ref = Process.monitor(busy)
      assert_receive :spinning, 5_000
      bumper = spawn(fn -> Wasmex.call_function(pid, "bump", [], 60_000) end)
      bump_ref = Process.monitor(bumper)
      TestHelper.wait_until_pending(store.host, 2)
      Process.exit(bumper, :kill)
      assert_receive {:DOWN, ^bump_ref, :process, ^bumper, :killed}
      Process.exit(busy, :kill)
      assert_receive {:DOWN, ^ref, :process, ^busy, :killed}
    end

    test "stopping the instance's server stops the call running on it; its store serves on" do
      {:ok, store} = Wasmex.Store.new()
      pid = start_counter(%{store: store})
      spin = Task.async(fn -> Wasmex.call_function(pid, "spin", [], :infinity) end)
      assert_receive :spinning, 5_000
      :ok = GenServer.stop(pid)
      assert Task.await(spin) == {:error, "stopped: the instance's server stopped"}

      other = start_counter(%{store: store})
      assert Wasmex.call_function(other, "bump", []) == {:ok, [1]}
    end

    test "a server killed while a call runs on its instance stops the call too" do
      {:ok, store} = Wasmex.Store.new()
      pid = start_counter(%{store: store})
      Process.unlink(pid)
      spin = Task.async(fn -> Wasmex.call_function(pid, "spin", [], :infinity) end)
      assert_receive :spinning, 5_000
      Process.exit(pid, :kill)
      assert Task.await(spin) == {:error, "stopped: the instance's server stopped"}
    end

    test "takes the function's name as a charlist too, as Erlang writes strings", %{pid: pid} do
      assert Wasmex.call_function(pid, ~c"sum", [1, 2]) == {:ok, [3]}
    end

    test "a caller that dies cancels its call: queued, it never runs" do
      pid = start_counter()
      bump_behind_spin(pid)
      # The abandoned bump was skipped: nothing ran between the spin and this call.
      assert Wasmex.call_function(pid, "count", []) == {:ok, [0]}
    end

    test "a call's timeout counts from when it was made: past it while queued, the port answers and never runs it" do
      pid = start_counter()
      busy = spawn(fn -> Wasmex.call_function(pid, "spin", [], 60_000) end)
      ref = Process.monitor(busy)
      assert_receive :spinning, 5_000

      # The port's own answer, while the spin still runs (the caller itself would give up
      # only after 100 ms + 2 s, with "no answer within 100 ms").
      assert Wasmex.call_function(pid, "bump", [], 100) ==
               {:error, "timed out: the call did not finish within 100 ms and was stopped"}

      assert Process.alive?(busy)
      Process.exit(busy, :kill)
      assert_receive {:DOWN, ^ref, :process, ^busy, :killed}
      assert Wasmex.call_function(pid, "count", []) == {:ok, [0]}
    end

    test "a caller without the route in its node's table cancels its call too" do
      pid = start_counter()
      # Without the route in the table the caller asks the server for it, as from another
      # node, and then calls the host directly all the same.
      :ets.delete(Wasmex.Routes, pid)
      bump_behind_spin(pid)
      assert Wasmex.call_function(pid, "count", []) == {:ok, [0]}
    end
  end

  describe "function_exists/2" do
    test "answers for strings and atoms" do
      pid = start()
      assert Wasmex.function_exists(pid, "sum")
      assert Wasmex.function_exists(pid, :sum)
      refute Wasmex.function_exists(pid, "memory")
      refute Wasmex.function_exists(pid, "nope")
    end
  end

  describe "instance/1" do
    test "returns the instance the server runs" do
      pid = start()
      {:ok, store} = Wasmex.store(pid)
      assert {:ok, %Wasmex.Instance{} = instance} = Wasmex.instance(pid)
      assert Wasmex.Instance.function_export_exists(store, instance, "sum")
    end
  end

  describe "module/1 and store/1" do
    test "return the instance's module and store" do
      pid = start()
      assert {:ok, %Wasmex.Module{} = module} = Wasmex.module(pid)
      assert {:fn, [:i32, :i32], [:i32]} = Wasmex.Module.exports(module)["sum"]
      assert {:ok, %Wasmex.StoreOrCaller{caller_id: nil}} = Wasmex.store(pid)
    end
  end

  describe "memory/1" do
    test "errors for a module without memory" do
      {:ok, pid} = Wasmex.start_link(%{bytes: "(module)"})
      assert Wasmex.memory(pid) == {:error, "The WebAssembly module has no exported memory."}
    end
  end
end
