defmodule Wasmex.ComponentsTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components

  import Wasmex.Test.ComponentFixtures

  alias Wasmex.Components

  @types "test/fixtures/components/types.wasm"
  @imports "test/fixtures/components/imports.wasm"
  @spin "test/fixtures/components/spin.wasm"
  @roundtrip "wasmex:types/roundtrip@0.1.0"
  @kv "wasmex:host/kv@0.1.0"

  describe "start_link/1" do
    test "starts from bytes or a path, given as a map or a keyword list" do
      pid = start(%{bytes: File.read!(@types)})
      assert {:ok, "Hello, A!"} = Components.call_function(pid, "greet", ["A"])
      {:ok, pid} = Components.start_link(path: @types)
      assert {:ok, 3} = Components.call_function(pid, "add", [1, 2])
    end

    test "without the imports its component needs, says which one is missing" do
      assert {:error, "component imports instance `wasmex:host/kv@0.1.0`, but a matching " <> _} =
               Components.start_link(path: @imports)
    end

    test "starts a component without imports in many stores, each its own instance" do
      pids = for _ <- 1..3, do: start(path: @types)

      assert Enum.map(pids, &Components.call_function(&1, "add", [1, 2])) ==
               List.duplicate({:ok, 3}, 3)
    end

    test "registers the server under :name" do
      start(path: @types, name: :components_test_named)
      assert {:ok, 7} = Components.call_function(:components_test_named, "add", [3, 4])
    end

    test "refuses bytes that are not a component, naming what they are, and leaves the caller alone" do
      assert {:error, "the bytes are a core module, not a component" <> _} =
               Components.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})

      assert {:error, "the component is truncated" <> _} =
               Components.start_link(%{bytes: binary_part(File.read!(@types), 0, 1000)})

      assert {:error, "the bytes are empty, not a component"} = Components.start_link(bytes: "")
      # The failed start left nothing in this process's mailbox.
      refute_received _
    end

    test "a failed start leaves no process behind" do
      {:links, before} = Process.info(self(), :links)
      assert {:error, _} = Components.start_link(bytes: "(module)")
      # The server may still be exiting: each process linked since ends, normally.
      {:links, links} = Process.info(self(), :links)

      for pid <- links -- before do
        ref = Process.monitor(pid)
        assert_receive {:DOWN, ^ref, :process, ^pid, reason}
        assert reason in [:normal, :noproc]
      end
    end

    test "needs :bytes or :path, and a path that can be read" do
      assert {:error, "either :bytes or :path must be given"} = Components.start_link(%{})

      assert {:error, "cannot read /no/such.wasm: no such file or directory"} =
               Components.start_link(path: "/no/such.wasm")
    end

    test "refuses a path that is not a string and bytes that are not a binary" do
      assert Components.start_link(path: nil) == {:error, ":path must be a string, got: nil"}
      assert Components.start_link(bytes: 42) == {:error, ":bytes must be a binary, got: 42"}
    end

    test "refuses :bytes given together with :path" do
      assert Components.start_link(bytes: File.read!(@types), path: @types) ==
               {:error, ":bytes and :path are mutually exclusive"}
    end

    test "refuses a :store, :engine or :store_limits of the wrong kind, leaving the caller alone" do
      assert Components.start_link(path: @types, store: :nope) ==
               {:error, ":store must be a store (Wasmex.Components.Store.new/0), got: :nope"}

      assert Components.start_link(path: @types, engine: :x) ==
               {:error, ":engine must be a %Wasmex.Engine{}, got: :x"}

      assert Components.start_link(path: @types, store_limits: %{memory_size: 1}) ==
               {:error, ":store_limits must be a %Wasmex.StoreLimits{}, got: %{memory_size: 1}"}
    end

    test "reads a path given as a charlist" do
      assert {:ok, pid} = Components.start_link(path: String.to_charlist(@types))
      assert {:ok, 5} = Components.call_function(pid, "add", [2, 3])
    end

    test "refuses imports that are not functions, naming them" do
      assert {:error, "import log must be {:fn, fun} or a map" <> _} =
               Components.start_link(path: @imports, imports: %{"log" => :nope})

      assert {:error, "import wasmex:host/kv@0.1.0#get must be {:fn, fun}" <> _} =
               Components.start_link(path: @imports, imports: %{@kv => %{"get" => 1}})
    end

    test "refuses import names that are neither strings nor atoms" do
      fun = {:fn, fn -> :ok end}

      assert Components.start_link(path: @imports, imports: %{{:a} => fun}) ==
               {:error, "import names must be strings or atoms, got: {:a}"}

      assert Components.start_link(path: @imports, imports: %{@kv => %{1 => fun}}) ==
               {:error, "import names must be strings or atoms, got: 1"}
    end

    test "names an import the component needs and was not given" do
      imports = Map.delete(imports(), @kv)
      assert {:error, reason} = Components.start_link(path: @imports, imports: imports)
      assert reason =~ @kv
    end

    test "refuses WASI options that are not WasiP2Options" do
      assert {:error, "wasi must be a %Wasmex.Wasi.WasiP2Options{}, got: true"} =
               Components.start_link(path: @types, wasi: true)
    end

    test "instantiates in a given store, which then holds the instance too" do
      {:ok, store} = Components.Store.new()
      pid = start(path: @types, store: store)
      assert {:ok, 2} = Components.call_function(pid, "add", [1, 1])
      assert Components.instance(pid).store_id == store.store_id
    end

    test "applies store limits to the component's memory" do
      limits = %Wasmex.StoreLimits{memory_size: 65_536}
      assert {:error, reason} = Components.start_link(path: @types, store_limits: limits)
      assert reason =~ "memory"
    end
  end

  describe "call_function/3,4" do
    setup do
      %{pid: start(path: @types)}
    end

    test "a call stopped before it begins leaves the instance usable", %{pid: pid} do
      assert {:error, "timed out" <> _} = Components.call_function(pid, "add", [1, 2], 0)
      assert Components.call_function(pid, "add", [1, 2]) == {:ok, 3}
    end

    test "takes a timeout longer than a receive can wait", %{pid: pid} do
      assert Components.call_function(pid, "add", [1, 2], Bitwise.bsl(1, 40)) == {:ok, 3}
    end

    test "calls world-level exports by name, string or atom", %{pid: pid} do
      assert {:ok, 5} = Components.call_function(pid, "add", [2, 3])
      assert {:ok, 5} = Components.call_function(pid, :add, [2, 3])
      assert {:ok, []} = Components.call_function(pid, "nothing", [])
    end

    test "calls interface exports by {interface, name}, a list, or the interface without its version",
         %{pid: pid} do
      assert {:ok, "é"} = Components.call_function(pid, {@roundtrip, "echo-char"}, ["é"])
      assert {:ok, 8} = Components.call_function(pid, [@roundtrip, "echo-u8"], [8])

      assert {:ok, true} =
               Components.call_function(pid, {"wasmex:types/roundtrip", "echo-bool"}, [true])
    end

    test "round-trips every WIT type family", %{pid: pid} do
      person = %{"full-name": "Ada", age: 36, tags: ["a", "b"], home: {:some, %{x: -1, y: 2}}}

      cases = [
        {"echo-s8", -128},
        {"echo-u16", 65_535},
        {"echo-s32", -2_147_483_648},
        {"echo-u32", 4_294_967_295},
        {"echo-s64", -9_223_372_036_854_775_808},
        {"echo-u64", 18_446_744_073_709_551_615},
        {"echo-f32", 1.5},
        {"echo-f64", -0.25},
        {"echo-string", "héllo"},
        {"echo-list", [1, 2, 3]},
        {"echo-tuple", {1, "two", false}},
        {"echo-point", %{x: 3, y: 4}},
        {"echo-person", person},
        {"echo-people", [person, %{person | home: :none}]},
        {"echo-shape", {:circle, 2.0}},
        {"echo-shape", {:rect, %{x: 1, y: 1}}},
        {"echo-shape", :empty},
        {"echo-size", :medium},
        {"echo-perms", %{read: true, exec: true}},
        {"echo-option", :none},
        {"echo-option", {:some, "x"}},
        {"echo-result", {:ok, 1}},
        {"echo-result", {:error, "bad"}},
        {"echo-result-ok-only", {:ok, "fine"}},
        {"echo-result-ok-only", :error},
        {"echo-result-err-only", :ok},
        {"echo-result-err-only", {:error, 7}},
        {"echo-result-empty", :ok},
        {"echo-result-empty", :error}
      ]

      for {name, value} <- cases do
        assert {:ok, ^value} = Components.call_function(pid, {@roundtrip, name}, [value]),
               "#{name} of #{inspect(value)}"
      end
    end

    test "flags given false come back left out; two params of one record type", %{pid: pid} do
      assert {:ok, %{write: true}} =
               Components.call_function(pid, {@roundtrip, "echo-perms"}, [
                 %{read: false, write: true}
               ])

      assert {:ok, 25} =
               Components.call_function(pid, {@roundtrip, "distance"}, [
                 %{x: 0, y: 0},
                 %{x: 3, y: 4}
               ])
    end

    test "a wrong value gets an error naming its place, and the instance still works", %{pid: pid} do
      person = %{"full-name": "Ada", age: 300, tags: [], home: :none}

      assert {:error, "300 is out of range for u8 (0 to 255) at \"v.age\""} =
               Components.call_function(pid, {@roundtrip, "echo-person"}, [person])

      assert {:error, "expected a s32 (an integer), got: \"1\" at \"v[1].home.some.x\""} =
               Components.call_function(pid, {@roundtrip, "echo-people"}, [
                 [%{person | age: 1}, %{person | age: 1, home: {:some, %{x: "1", y: 2}}}]
               ])

      assert {:error, "expected 2 params, got 1"} = Components.call_function(pid, "add", [1])
      assert {:ok, 2} = Components.call_function(pid, "add", [1, 1])
    end

    test "shows the wrong value as Elixir writes it", %{pid: pid} do
      assert {:error, "expected a u32 (an integer), got: 1.0 at \"v\""} =
               Components.call_function(pid, {@roundtrip, "echo-u32"}, [1.0])

      assert {:error, "expected a u32 (an integer), got: {:circle, 1, 2} at \"v\""} =
               Components.call_function(pid, {@roundtrip, "echo-u32"}, [{:circle, 1, 2}])
    end

    test "names a function that is not exported, and a bad path", %{pid: pid} do
      assert {:error, "exported function `nope` not found"} =
               Components.call_function(pid, "nope", [])

      assert {:error, "exported function `wasmex:types/roundtrip@0.1.0#nope` not found"} =
               Components.call_function(pid, {@roundtrip, "nope"}, [])

      assert {:error, "a function is a name or {interface, name}, got: 42"} =
               Components.call_function(pid, 42, [])
    end

    test "a server that is not running gives an error" do
      assert {:error, "the component is not running: :noproc"} =
               Components.call_function(:components_test_nobody, "add", [1, 2])
    end
  end

  describe "instance/1" do
    test "returns the instance the server holds, callable directly" do
      pid = start(path: @types)
      instance = Components.instance(pid)
      assert %Components.Instance{} = instance
      assert {:ok, 9} = Components.Instance.call(instance, "add", [4, 5])
    end
  end

  describe "imports" do
    test "world-level imports and functions of an imported interface run in processes of their own" do
      pid = start(path: @imports, imports: imports())
      assert {:ok, 5} = Components.call_function(pid, "log-and-count", ["hello"])
      assert_received {:logged, "hello", callback_pid}
      refute callback_pid in [self(), pid]
      assert {:ok, 6} = Components.call_function(pid, "add-plus-one", [2, 3])

      assert {:ok, {:some, "value of k"}} =
               Components.call_function(pid, "store-and-fetch", ["k", "v"])

      assert_received {:set, "k", "v"}
    end

    test "an import that returns a wrong value fails the call naming the place, and poisons the instance" do
      pid = start(path: @imports, imports: imports(%{"add" => {:fn, fn _, _ -> -1 end}}))

      assert {:error, reason} = Components.call_function(pid, "add-plus-one", [2, 3])
      assert reason =~ "import add returned a wrong value: -1 is out of range for u32"
      assert reason =~ ~s(at "result")

      assert {:error, "the component instance stopped after an earlier failure" <> _} =
               Components.call_function(pid, "log-and-count", ["x"])
    end

    test "an import that raises fails the call with its message" do
      pid = start(path: @imports, imports: imports(%{"log" => {:fn, fn _ -> raise "boom" end}}))
      assert {:error, reason} = Components.call_function(pid, "log-and-count", ["x"])
      assert reason =~ "the import log raised: boom"
    end

    test "an import calls into another instance of its store, inside the waiting call" do
      {:ok, store} = Components.Store.new()
      adder = start(path: @types, store: store)
      test = self()
      log = fn _ -> send(test, {:inner, Components.call_function(adder, "add", [20, 22])}) end
      pid = start(path: @imports, imports: imports(%{"log" => {:fn, log}}), store: store)
      assert {:ok, _} = Components.call_function(pid, "log-and-count", ["x"], 2_000)
      assert_received {:inner, {:ok, 42}}
    end

    test "stopping the server of an instance running inside an import's call stops that call" do
      {:ok, store} = Components.Store.new()
      {:ok, spinner} = Components.start_link(path: @spin, store: store)
      test = self()

      log = fn _ ->
        send(test, {:nested_running, self()})
        send(test, {:nested, Components.call_function(spinner, "spin-forever", [], :infinity)})
      end

      pid = start(path: @imports, imports: imports(%{"log" => {:fn, log}}), store: store)
      outer = Task.async(fn -> Components.call_function(pid, "log-and-count", ["x"], 5_000) end)
      assert_receive {:nested_running, _}
      :ok = TestHelper.wait_until_pending(store.host, 2)
      :ok = GenServer.stop(spinner)
      assert_receive {:nested, {:error, "stopped: the instance's server stopped"}}, 2_000
      Task.await(outer, 10_000)
    end

    test "a call from another process waits for the store's running call; past its deadline it never runs" do
      test = self()

      log = fn _ ->
        send(test, {:in_import, self()})
        receive do: (:go -> :ok)
      end

      {:ok, store} = Components.Store.new()
      spin = start(path: @spin, store: store)
      pid = start(path: @imports, imports: imports(%{"log" => {:fn, log}}), store: store)
      outer = Task.async(fn -> Components.call_function(pid, "log-and-count", ["x"], 5_000) end)
      assert_receive {:in_import, callback}

      # Queued behind the waiting call (not run inside it), and answered at its deadline.
      assert {:error, "timed out: the call did not finish within 200 ms and was stopped"} =
               Components.call_function(spin, "spin-forever", [], 200)

      send(callback, :go)
      assert {:ok, _} = Task.await(outer)
      assert {:ok, 42} = Components.call_function(spin, "ping", [])
    end

    test "an import that calls into its own instance gets an error at once, never hangs" do
      test = self()

      log = fn _ ->
        send(
          test,
          {:reentered, Components.call_function(:components_test_reenter, "add-plus-one", [1, 2])}
        )
      end

      pid =
        start(
          path: @imports,
          imports: imports(%{"log" => {:fn, log}}),
          name: :components_test_reenter
        )

      assert {:ok, 5} = Components.call_function(pid, "log-and-count", ["hello"], 2_000)

      assert_received {:reentered,
                       {:error,
                        "the component instance is running a call already: an import cannot call into its own instance"}}

      assert {:ok, 4} = Components.call_function(pid, "add-plus-one", [1, 2])
    end

    test "an import still running at the call's timeout is stopped with the call" do
      test = self()

      slow = fn _ ->
        send(test, {:slow, self()})
        Process.sleep(:infinity)
      end

      pid = start(path: @imports, imports: imports(%{"log" => {:fn, slow}}))

      assert {:error, "timed out: the call did not finish within 200 ms and was stopped"} =
               Components.call_function(pid, "log-and-count", ["x"], 200)

      assert_received {:slow, callback}
      ref = Process.monitor(callback)
      # Killed (possibly before the monitor was set: then :noproc).
      assert_receive {:DOWN, ^ref, :process, ^callback, reason}
      assert reason in [:killed, :noproc]
    end
  end
end
