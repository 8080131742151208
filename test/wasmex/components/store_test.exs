defmodule Wasmex.Components.StoreTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.Store

  alias Wasmex.Components.{Component, Instance, Store}
  alias Wasmex.StoreOrCaller

  @types "test/fixtures/components/types.wasm"

  describe "new/0,1,2" do
    test "stores without an engine share the component engine" do
      {:ok, a} = Store.new()
      {:ok, b} = Store.new()
      assert %StoreOrCaller{caller_id: nil} = a
      assert a.host == b.host and a.host == Store.default_engine().host
      refute a.store_id == b.store_id
    end

    test "a store in a given engine lives in that engine's process" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{wasm_component_model: true})
      {:ok, store} = Store.new(nil, engine)
      assert store.host == engine.host
      {:ok, component} = Component.new(store, File.read!(@types))
      {:ok, instance} = Instance.new(store, component)
      assert {:ok, 3} = Instance.call(instance, "add", [1, 2])
    end

    test "limits bound the store's component instances" do
      {:ok, store} = Store.new(%Wasmex.StoreLimits{instances: 1})
      {:ok, component} = Component.new(store, File.read!(@types))
      assert {:ok, _} = Instance.new(store, component)

      assert {:error, "resource limit exceeded: instance count too high at 2"} =
               Instance.new(store, component)
    end

    test "refuses limits of the wrong shape" do
      assert {:error, "memory_size must be a non-negative integer" <> _} =
               Store.new(%Wasmex.StoreLimits{memory_size: -1})
    end

    test "a released store's instances are gone" do
      {:ok, store} = Store.new()
      {:ok, component} = Component.new(store, File.read!(@types))
      {:ok, instance} = Instance.new(store, component)
      :ok = Wasmex.Store.release(store)
      assert {:error, "unknown store " <> _} = Instance.call(instance, "add", [1, 2])
    end
  end

  describe "new_wasi/1,2,3" do
    test "gives the store's components WASI preview 2, with limits and in an engine" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{wasm_component_model: true})
      options = %Wasmex.Wasi.WasiP2Options{stdout: {:messages, self()}, inherit_stderr: false}
      {:ok, store} = Store.new_wasi(options, %Wasmex.StoreLimits{memory_size: 10_000_000}, engine)
      assert store.host == engine.host

      {:ok, component} =
        Component.new(store, File.read!("test/fixtures/components/wasi_cli.wasm"))

      {:ok, instance} = Instance.new(store, component)
      assert {:ok, :ok} = Instance.call(instance, {"wasi:cli/run", "run"}, [])
      assert_receive {:wasmex_stdout, %StoreOrCaller{}, "args:" <> _}
    end

    test "refuses options it cannot give" do
      assert {:error, "allow_http is not supported" <> _} =
               Store.new_wasi(%Wasmex.Wasi.WasiP2Options{allow_http: true})
    end
  end

  describe "default_engine/0" do
    test "is one host, started once" do
      assert Store.default_engine().host == Store.default_engine().host
      assert Process.whereis(Wasmex.Components.Engine) == Store.default_engine().host
    end
  end
end
