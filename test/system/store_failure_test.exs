defmodule Wasmex.System.StoreFailureTest do
  @moduledoc """
  A store whose code panics in the port (a bug; injected here through a port started
  with `WASMEX_PORT_FAULTS` set, which enables the request `fault_panic`) answers every
  request it held and is dropped. Nobody is left waiting, and its host and the host's
  other stores work on.
  """
  use ExUnit.Case, async: true

  alias Wasmex.{Host, StoreOrCaller}

  @sum ~s{(module (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  # Calls the import "env" "cb" with its argument and returns what it returns.
  @calls_back """
  (module
    (import "env" "cb" (func $cb (param i32) (result i32)))
    (func (export "run") (param i32) (result i32) local.get 0 call $cb))
  """

  setup_all do
    dir = Path.join(System.tmp_dir!(), "wasmex_faults_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    script = Path.join(dir, "wasmex_port_with_faults")
    File.write!(script, "#!/bin/sh\nWASMEX_PORT_FAULTS=1 exec '#{Host.executable()}' \"$@\"\n")
    File.chmod!(script, 0o755)
    on_exit(fn -> File.rm_rf!(dir) end)
    %{executable: script}
  end

  setup %{executable: executable} do
    {:ok, host} = Host.start(%Wasmex.EngineConfig{}, self(), executable: executable)
    engine = %Wasmex.Engine{host: host, config: %Wasmex.EngineConfig{}}
    %{host: host, engine: engine}
  end

  defp instance(engine, wat, imports \\ %{}) do
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, pid} = Wasmex.start_link(%{store: store, bytes: wat, imports: imports})
    %{store: store, pid: pid}
  end

  defp panic(host, store_or_caller),
    do: Host.request(host, :fault_panic, {StoreOrCaller.context(store_or_caller)})

  describe "a request that panics" do
    test "gets an error that says the store failed", %{host: host, engine: engine} do
      %{store: store} = instance(engine, @sum)

      assert {:error, message} = panic(host, store)
      assert message =~ "internal error: the Wasm host failed while serving this request"
    end

    test "ends its store: later requests are refused, saying why", %{
      host: host,
      engine: engine
    } do
      %{store: store, pid: pid} = instance(engine, @sum)
      {:error, _} = panic(host, store)

      assert {:error, message} = Wasmex.call_function(pid, "sum", [1, 2])
      assert message =~ "internal error: the Wasm host failed"
    end

    test "answers the requests queued behind it", %{host: host, engine: engine} do
      %{store: store} = instance(engine, @sum)
      context = StoreOrCaller.context(store)
      Host.cast_request(host, :fault_panic, {context}, {:send, self(), :panic})
      for i <- 1..5, do: Host.cast_request(host, :fuel_get, {context}, {:send, self(), i})

      replies =
        for tag <- [:panic | Enum.to_list(1..5)] do
          assert_receive {:returned_function_call, {:error, message}, ^tag}
          message =~ "internal error: the Wasm host failed"
        end

      assert replies == List.duplicate(true, 6)
    end

    test "leaves the host's other stores working", %{host: host, engine: engine} do
      %{store: store} = instance(engine, @sum)
      %{pid: other} = instance(engine, @sum)
      {:error, _} = panic(host, store)

      assert Wasmex.call_function(other, "sum", [1, 2]) == {:ok, [3]}
    end

    test "does not take its host down", %{host: host, engine: engine} do
      ref = Process.monitor(host)
      %{store: store} = instance(engine, @sum)
      {:error, _} = panic(host, store)
      %{pid: pid} = instance(engine, @sum)

      assert {Wasmex.call_function(pid, "sum", [2, 3]), Process.alive?(host)} ==
               {{:ok, [5]}, true}

      refute_received {:DOWN, ^ref, :process, _, _}
    end
  end

  describe "a panic inside an import callback's request" do
    # The callback first sends a request for the store itself (deferred until the call
    # ends), then one through its caller, which panics while the call waits.
    setup %{host: host, engine: engine} do
      test_pid = self()

      cb = fn %{caller: caller}, x ->
        store_context = caller.store_id
        Host.cast_request(host, :fuel_get, {store_context}, {:send, test_pid, :deferred})
        send(test_pid, {:nested, panic(host, caller)})
        x
      end

      %{pid: pid} = instance(engine, @calls_back, %{env: %{cb: {:fn, [:i32], [:i32], cb}}})
      %{result: Wasmex.call_function(pid, "run", [7])}
    end

    test "answers the call it is nested in", %{result: result} do
      assert {:error, message} = result
      assert message =~ "internal error: the Wasm host failed"
    end

    test "answers the nested request itself" do
      assert_receive {:nested, {:error, message}}
      assert message =~ "internal error: the Wasm host failed"
    end

    test "answers the request deferred until the call's end" do
      assert_receive {:returned_function_call, {:error, message}, :deferred}
      assert message =~ "internal error: the Wasm host failed"
    end
  end
end
