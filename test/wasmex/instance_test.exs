defmodule Wasmex.InstanceTest do
  use ExUnit.Case, async: true

  alias Wasmex.Instance

  setup do
    TestHelper.wasm_module()
  end

  describe "new/3,4" do
    test "instantiates a module in a store", %{store: store, module: module} do
      assert {:ok, %Instance{}} = Instance.new(store, module, %{})
    end

    test "links modules given in dependency order", %{store: store, module: utils} do
      {:ok, calculator} =
        Wasmex.Module.compile(store, File.read!(TestHelper.wasm_link_test_file_path()))

      {:ok, instance} = Instance.new(store, calculator, %{}, [%{name: "utils", module: utils}])
      Instance.call_exported_function(store, instance, "sum_range", [1, 5], :tag)
      assert_receive {:returned_function_call, {:ok, [15]}, :tag}
    end

    test "rejects a malformed import spec", %{store: store, module: module} do
      assert {:error, "import env.f must be {:fn, params, results, fun}" <> _} =
               Instance.new(store, module, %{env: %{f: :oops}})
    end

    test "names an import whose signature differs", %{store: store} do
      {:ok, module} =
        Wasmex.Module.compile(store, ~s{(module (import "env" "f" (func (param i32))))})

      imports = %{env: %{f: {:fn, [:i64], [], fn _ctx, _x -> nil end}}}
      assert {:error, message} = Instance.new(store, module, imports)
      assert message =~ "env::f"
    end
  end

  describe "the resource and reference fields" do
    test "name where the instance lives", %{store: store, module: module} do
      {:ok, instance} = Instance.new(store, module, %{})
      assert %Instance{resource: {host, store_id, id}, reference: ref} = instance
      assert {host, store_id, id} == {store.host, store.store_id, instance.id}
      assert is_reference(ref)
    end
  end

  describe "function_export_exists/3" do
    test "is true only for exported functions", %{store: store, module: module} do
      {:ok, instance} = Instance.new(store, module, %{})
      assert Instance.function_export_exists(store, instance, "sum")
      refute Instance.function_export_exists(store, instance, "memory")
      refute Instance.function_export_exists(store, instance, "nope")
    end
  end

  describe "call_exported_function/5" do
    test "sends {:returned_function_call, result, from} to the caller", %{
      store: store,
      module: module
    } do
      {:ok, instance} = Instance.new(store, module, %{})
      assert :ok = Instance.call_exported_function(store, instance, "arity_0", [], :fake_from)
      assert_receive {:returned_function_call, {:ok, [42]}, :fake_from}
    end

    test "delivers errors the same way", %{store: store, module: module} do
      {:ok, instance} = Instance.new(store, module, %{})
      Instance.call_exported_function(store, instance, "nope", [], :from)

      assert_receive {:returned_function_call, {:error, "exported function `nope` not found"},
                      :from}
    end

    test "refuses an instance of another store", %{store: store, module: module} do
      {:ok, other} = Wasmex.Store.new(nil, Wasmex.Engine.default())
      {:ok, instance} = Instance.new(store, module, %{})
      Instance.call_exported_function(other, instance, "arity_0", [], :from)

      assert_receive {:returned_function_call,
                      {:error, "the instance does not belong to this store"}, :from}
    end
  end

  describe "get_global_value/3 and set_global_value/4" do
    test "read and write all four number types", %{store: store, module: module} do
      {:ok, instance} = Instance.new(store, module, %{})

      for {name, value} <- [
            global_i32_mut: 7,
            global_i64_mut: -(2 ** 40),
            global_f32_mut: 1.25,
            global_f64_mut: 0.1
          ] do
        assert Instance.set_global_value(store, instance, "#{name}", value) == :ok
        assert Instance.get_global_value(store, instance, "#{name}") == {:ok, value}
      end
    end

    test "refuse an instance of another store", %{store: store, module: module} do
      {:ok, instance} = Instance.new(store, module, %{})
      {:ok, other} = Wasmex.Store.new(nil, Wasmex.Engine.default())
      error = {:error, "the instance does not belong to this store"}

      assert {Instance.get_global_value(other, instance, "global_i32_mut"),
              Instance.set_global_value(other, instance, "global_i32_mut", 1)} == {error, error}
    end

    test "report unknown, immutable and mistyped globals", %{store: store, module: module} do
      {:ok, instance} = Instance.new(store, module, %{})

      assert Instance.get_global_value(store, instance, "nope") ==
               {:error, "exported global `nope` not found"}

      assert Instance.set_global_value(store, instance, "global_i32_const", 1) ==
               {:error, "Could not set global: immutable global cannot be set"}

      assert Instance.set_global_value(store, instance, "global_i32_mut", :x) ==
               {:error, "Cannot convert to a WebAssembly i32 value."}
    end
  end
end
