defmodule Wasmex.Components.StoppingTest do
  @moduledoc """
  A component call stops at its deadline, when its caller dies, and when its server stops
  or is shut down; a stopped call poisons its instance, not the store's core instances.
  Calls go from the caller to the host by the route the server publishes.
  """
  use ExUnit.Case, async: true

  import Wasmex.Test.ComponentFixtures

  alias Wasmex.Components

  @types "test/fixtures/components/types.wasm"
  @imports "test/fixtures/components/imports.wasm"
  @spin "test/fixtures/components/spin.wasm"

  describe "call_function/3,4 stops" do
    test "a call still running at its timeout is stopped, and later calls say the instance stopped" do
      pid = start(path: @spin)
      assert {:ok, 42} = Components.call_function(pid, "ping", [])
      started = System.monotonic_time(:millisecond)

      assert {:error, "timed out: the call did not finish within 100 ms and was stopped"} =
               Components.call_function(pid, "spin-forever", [], 100)

      assert System.monotonic_time(:millisecond) - started < 1_000

      assert {:error, "the component instance stopped after an earlier failure (timed out: " <> _} =
               Components.call_function(pid, "ping", [])

      # A new server gets a fresh instance.
      assert {:ok, 42} = Components.call_function(start(path: @spin), "ping", [])
    end

    test "fuel bounds a component like a core instance" do
      config = %Wasmex.EngineConfig{consume_fuel: true, wasm_component_model: true}
      {:ok, engine} = Wasmex.Engine.new(config)
      {:ok, store} = Components.Store.new(nil, engine)
      :ok = Wasmex.StoreOrCaller.set_fuel(store, 100_000)
      pid = start(path: @spin, store: store)
      assert {:error, reason} = Components.call_function(pid, "spin-forever", [], :infinity)
      assert reason =~ "all fuel consumed"
      assert {:ok, 0} = Wasmex.StoreOrCaller.get_fuel(store)
    end

    test "goes from the caller straight to the host: the server receives nothing" do
      pid = start(path: @types)
      :erlang.trace(pid, true, [:receive])
      assert {:ok, 3} = Components.call_function(pid, "add", [1, 2])
      # A message the trace reports after anything the call would have sent the server.
      _ = Components.instance(pid)
      assert_receive {:trace, ^pid, :receive, {:"$gen_call", _, :instance}}
      refute_received {:trace, ^pid, :receive, _}
      :erlang.trace(pid, false, [:receive])
    end

    test "a start function that traps leaves no component of its store to be entered again" do
      {:ok, store} = Components.Store.new()

      traps =
        ~s{(component (core module $m (func $s unreachable) (start $s)) (core instance $i (instantiate $m)))}

      assert {:error, _trap} = Components.start_link(bytes: traps, store: store)

      assert {:error, "the store's component instances stopped after an earlier failure" <> _} =
               Components.start_link(path: @types, store: store)
    end

    test "a caller that dies has its call stopped, which poisons the instance" do
      pid = start(path: @imports, imports: imports(%{"log" => blocking_import()}))
      caller = spawn(fn -> Components.call_function(pid, "log-and-count", ["x"], :infinity) end)
      assert_receive {:in_import, callback}
      ref = Process.monitor(callback)
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^ref, :process, ^callback, _}

      assert {:error, "the component instance stopped after an earlier failure (" <> reason} =
               Components.call_function(pid, "add-plus-one", [1, 2])

      assert reason =~ "cancel"
    end

    test "stopping the server stops the call running on its instance" do
      {:ok, store} = Components.Store.new()
      imports = imports(%{"log" => blocking_import()})
      {:ok, pid} = Components.start_link(path: @imports, imports: imports, store: store)

      call =
        Task.async(fn -> Components.call_function(pid, "log-and-count", ["x"], :infinity) end)

      assert_receive {:in_import, _callback}
      :ok = GenServer.stop(pid)
      assert Task.await(call) == {:error, "stopped: the instance's server stopped"}
    end

    test "a server shut down by its supervisor stops the call running on its instance" do
      {:ok, store} = Components.Store.new()
      imports = imports(%{"log" => blocking_import()})
      spec = {Components, path: @imports, imports: imports, store: store}
      pid = start_supervised!(Supervisor.child_spec(spec, id: :shut_down))

      call =
        Task.async(fn -> Components.call_function(pid, "log-and-count", ["x"], :infinity) end)

      assert_receive {:in_import, _callback}
      :ok = stop_supervised!(:shut_down)
      assert Task.await(call) == {:error, "stopped: the instance's server stopped"}
    end

    test "after a failed call no component instance of its store runs, and a new one is refused" do
      {:ok, store} = Components.Store.new()
      spin = start(path: @spin, store: store)
      other = start(path: @types, store: store)
      assert {:error, "timed out" <> _} = Components.call_function(spin, "spin-forever", [], 50)

      assert {:error,
              "the store's component instances stopped after an earlier failure in one of them (timed out: " <>
                _} = Components.call_function(other, "add", [1, 2])

      assert {:error, "the store's component instances stopped" <> _} =
               Components.start_link(path: @types, store: store)
    end

    test "after a failed component call, core instances of its store still run" do
      {:ok, store} = Components.Store.new()
      spin = start(path: @spin, store: store)
      wat = ~s{(module (func (export "seven") (result i32) i32.const 7))}
      {:ok, core} = Wasmex.start_link(%{bytes: wat, store: store})
      assert {:error, "timed out" <> _} = Components.call_function(spin, "spin-forever", [], 50)
      assert Wasmex.call_function(core, "seven", []) == {:ok, [7]}
    end

    test "a call past its timeout while queued behind another is answered at its deadline" do
      # A call from another process while an import waits is served as a nested one (and
      # refused): the queued call here waits behind Wasm that spins.
      {:ok, store} = Components.Store.new()
      spin = start(path: @spin, store: store)
      pid = start(path: @types, store: store)
      busy = Task.async(fn -> Components.call_function(spin, "spin-forever", [], 2_000) end)
      :ok = TestHelper.wait_until_pending(store.host, 1)
      started = System.monotonic_time(:millisecond)

      assert {:error, "timed out: the call did not finish within 100 ms and was stopped"} =
               Components.call_function(pid, "add", [1, 2], 100)

      # The port's answer at the deadline, while the spin still runs (the caller itself
      # would give up later, and with another message).
      assert System.monotonic_time(:millisecond) - started < 1_000
      assert {:error, "timed out" <> _} = Task.await(busy)
    end

    test "a server asked by a caller without its route in the table answers it" do
      pid = start(path: @types)
      assert {:ok, {host, _ctx, id}} = GenServer.call(pid, :component_route)
      assert host == Components.instance(pid).host and id == Components.instance(pid).id
    end

    test "Wasmex.call_function/4 on a component server gets an error and leaves it running" do
      pid = start(path: @types)
      assert {:error, reason} = Wasmex.call_function(pid, "add", [1, 2])
      assert reason =~ "use Wasmex.Components.call_function/4"
      assert {:ok, 3} = Components.call_function(pid, "add", [1, 2])
    end

    test "call_function/4 on a core instance server gets an error and leaves it running" do
      {:ok, core} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      assert {:error, reason} = Components.call_function(core, "add", [1, 2])
      assert reason =~ "use Wasmex.call_function/4"
      assert Wasmex.call_function(core, "sum", [1, 2]) == {:ok, [3]}
    end

    test "the route goes when the server stops or is killed" do
      {:ok, pid} = Components.start_link(path: @types)
      host = Components.instance(pid).host
      assert [_] = :ets.lookup(Wasmex.Routes, {Components, pid})
      :ok = GenServer.stop(pid)
      assert [] = :ets.lookup(Wasmex.Routes, {Components, pid})

      {:ok, pid} = Components.start_link(path: @types)
      Process.unlink(pid)
      :erlang.trace(host, true, [:receive])
      Process.exit(pid, :kill)
      assert_receive {:trace, ^host, :receive, {:DOWN, _, :process, ^pid, :killed}}
      :erlang.trace(host, false, [:receive])
      # The host has handled the :DOWN once it answers a later call.
      _ = :sys.get_state(host)
      assert [] = :ets.lookup(Wasmex.Routes, {Components, pid})

      assert {:error, "the component is not running: :noproc"} =
               Components.call_function(pid, "add", [1, 2])
    end
  end
end
