defmodule Wasmex.StoreTest do
  use ExUnit.Case, async: true

  alias Wasmex.{Store, StoreOrCaller}

  describe "new/0,1,2" do
    test "without an engine, each store gets its own host process" do
      {:ok, a} = Store.new()
      {:ok, b} = Store.new()
      assert %StoreOrCaller{caller_id: nil} = a
      refute a.host == b.host
      refute Wasmex.Host.os_pid(a.host) == Wasmex.Host.os_pid(b.host)
    end

    test "with an engine, stores share its host" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, a} = Store.new(nil, engine)
      {:ok, b} = Store.new(%Wasmex.StoreLimits{memory_size: 1_000_000}, engine)
      assert a.host == engine.host and b.host == engine.host
      refute a.store_id == b.store_id
    end

    test "refuses limits of the wrong shape" do
      assert {:error, "memory_size must be a non-negative integer" <> _} =
               Store.new(%Wasmex.StoreLimits{memory_size: -1})
    end

    test "a store's own host stops when the store is released, while its creator lives on" do
      {:ok, store} = Store.new()
      ref = Process.monitor(store.host)
      Store.release(store, self())
      assert_receive {:DOWN, ^ref, :process, _, :normal}
    end

    test "a store's own host stops when its last holder exits" do
      test_pid = self()

      holder =
        spawn(fn ->
          {:ok, store} = Store.new()
          send(test_pid, {:store, store})
          receive do: (:exit -> :ok)
        end)

      assert_receive {:store, store}
      ref = Process.monitor(store.host)
      send(holder, :exit)
      assert_receive {:DOWN, ^ref, :process, _, :normal}
    end
  end

  describe "new_wasi/1,2,3" do
    test "creates a store whose instances get WASI" do
      {:ok, store} = Store.new_wasi(%Wasmex.Wasi.WasiOptions{args: ["a"]})
      wat = ~s{(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))}
      {:ok, module} = Wasmex.Module.compile(store, wat)
      assert {:ok, _pid} = Wasmex.start_link(%{store: store, module: module})
    end

    test "refuses options longer than one message may carry, and the host goes on" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      too_long = TestHelper.filled(?a, Wasmex.Wire.max_frame() + 1)
      options = %Wasmex.Wasi.WasiOptions{args: [too_long]}

      assert {:error, "the request is " <> _} = Store.new_wasi(options, nil, engine)
      assert {:ok, %StoreOrCaller{}} = Store.new(nil, engine)
    end

    test "a plain store does not provide WASI imports" do
      {:ok, store} = Store.new()
      wat = ~s{(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))}
      {:ok, module} = Wasmex.Module.compile(store, wat)
      assert {:error, message} = Wasmex.start_link(%{store: store, module: module})
      assert message =~ "wasi_snapshot_preview1::proc_exit"
    end
  end
end
