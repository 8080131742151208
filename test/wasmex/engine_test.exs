defmodule Wasmex.EngineTest do
  use ExUnit.Case, async: true

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
        {:ok, store} = Wasmex.Store.new(nil, engine)
        {:ok, module} = Wasmex.Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
        {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
        assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
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
