defmodule Wasmex.Components.InstanceTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.Instance

  alias Wasmex.Components.{Component, Instance, Store}

  @types "test/fixtures/components/types.wasm"
  @imports "test/fixtures/components/imports.wasm"

  defp component(file) do
    {:ok, store} = Store.new()
    {:ok, component} = Component.new(store, File.read!(file))
    %{store: store, component: component}
  end

  describe "new/2,3" do
    test "instantiates; instances of one store are distinct" do
      %{store: store, component: component} = component(@types)
      {:ok, a} = Instance.new(store, component)
      {:ok, b} = Instance.new(store, component, %{})
      refute a.id == b.id
      assert a.store_id == store.store_id
    end

    test "a store of another host gets the component's bytes from the struct" do
      %{component: component} = component(@types)
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{wasm_component_model: true})
      {:ok, other} = Store.new(nil, engine)
      {:ok, instance} = Instance.new(other, component)
      assert {:ok, 2} = Instance.call(instance, "add", [1, 1])
    end

    test "refuses imports of the wrong shape" do
      %{store: store, component: component} = component(@imports)

      assert {:error, "imports must be a map, got: []"} = Instance.new(store, component, [])
    end

    test "a process that makes the instance itself gets its import calls as messages" do
      %{store: store, component: component} = component(@imports)
      noop = {:fn, fn -> :ok end}

      imports = %{
        "log" => noop,
        "add" => noop,
        "wasmex:host/kv@0.1.0" => %{"get" => noop, "set" => noop}
      }

      {:ok, instance} = Instance.new(store, component, imports)
      task = Task.async(fn -> Instance.call(instance, "add-plus-one", [2, 3]) end)
      assert_receive {:wasmex_callback, host, store_id, callback_id, "", "add", [2, 3]}
      Wasmex.Host.notify(host, :callback_return, {store_id, callback_id, {:ok, 10}})
      assert {:ok, 11} = Task.await(task)
    end
  end

  describe "call/3,4" do
    test "calls by name or path and answers a wrong value with its place" do
      %{store: store, component: component} = component(@types)
      {:ok, instance} = Instance.new(store, component)
      assert {:ok, "Hello, B!"} = Instance.call(instance, "greet", ["B"])

      assert {:error, "expected a string (a UTF-8 binary), got: 1 at \"name\""} =
               Instance.call(instance, "greet", [1])

      assert {:error, "params must be a list, got: :x"} = Instance.call(instance, "greet", :x)
    end
  end

  describe "call_function/4,5" do
    test "sends the result to the given GenServer caller" do
      %{store: store, component: component} = component(@types)
      {:ok, instance} = Instance.new(store, component)
      ref = make_ref()
      :ok = Instance.call_function(instance, "add", [20, 22], {self(), ref})
      assert_receive {^ref, {:ok, 42}}
      :ok = Instance.call_function(instance, 7, [], {self(), ref})
      assert_receive {^ref, {:error, "a function is a name or {interface, name}, got: 7"}}
    end
  end

  describe "timing/1" do
    test "sums the port's steps over the calls that reached wasmtime" do
      %{store: store, component: component} = component(@types)
      {:ok, instance} = Instance.new(store, component)

      assert {:ok, %{calls: 0, lookup_ns: 0, params_ns: 0, call_ns: 0, results_ns: 0}} =
               Instance.timing(instance)

      person = %{"full-name": "Ada", age: 36, tags: ["math"], home: :none}
      path = {"wasmex:types/roundtrip@0.1.0", "echo-person"}
      assert {:ok, ^person} = Instance.call(instance, path, [person])
      {:ok, one} = Instance.timing(instance)
      assert one.calls == 1
      assert Enum.all?([one.lookup_ns, one.params_ns, one.call_ns, one.results_ns], &(&1 > 0))

      # A wrong value never reaches wasmtime: not counted.
      assert {:error, _} = Instance.call(instance, path, [%{person | age: 256}])
      assert {:ok, ^one} = Instance.timing(instance)

      assert {:ok, ^person} = Instance.call(instance, path, [person])
      {:ok, two} = Instance.timing(instance)
      assert two.calls == 2
      assert two.call_ns > one.call_ns and two.results_ns > one.results_ns
    end

    test "counts a call that failed in wasmtime, and answers an unknown instance with an error" do
      {:ok, store} = Store.new()
      {:ok, component} = Component.new(store, File.read!("test/fixtures/components/spin.wasm"))
      {:ok, instance} = Instance.new(store, component)
      assert {:error, "timed out" <> _} = Instance.call(instance, "spin-forever", [], 50)
      assert {:ok, %{calls: 1, call_ns: call_ns, results_ns: 0}} = Instance.timing(instance)
      assert call_ns >= 50_000_000

      assert {:error, "unknown component instance 999"} = Instance.timing(%{instance | id: 999})
    end
  end
end
