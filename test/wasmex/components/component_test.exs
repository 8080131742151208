defmodule Wasmex.Components.ComponentTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.Component

  alias Wasmex.Components.{Component, Store}

  @types "test/fixtures/components/types.wasm"

  describe "new/2" do
    setup do
      {:ok, store} = Store.new()
      %{store: store}
    end

    test "compiles binary and text components", %{store: store} do
      assert {:ok, %Component{key: key, resource: {_host, key}}} =
               Component.new(store, File.read!(@types))

      assert {:ok, %Component{}} =
               Component.new(store, File.read!("test/fixtures/components/spin.wasm"))
    end

    test "the same bytes give the same key; other bytes another", %{store: store} do
      {:ok, a} = Component.new(store, File.read!(@types))
      {:ok, b} = Component.new(store, File.read!(@types))
      {:ok, c} = Component.new(store, File.read!("test/fixtures/components/spin.wasm"))
      assert a.key == b.key
      refute a.key == c.key
    end

    test "makes atoms of the component's WIT names", %{store: store} do
      # A name only this test's component uses: not an atom before it is compiled.
      name = "field-#{System.unique_integer([:positive])}"
      assert_raise ArgumentError, fn -> String.to_existing_atom(name) end

      wat = """
      (component
        (type $r (record (field "#{name}" u32)))
        (export "r" (type $r)))
      """

      assert {:ok, _} = Component.new(store, wat)
      assert is_atom(String.to_existing_atom(name))
    end

    test "makes new atoms only while the node's atom table stays at most half full" do
      assert Component.room_for_atoms?(10_000, 500_000, 1_048_576)
      refute Component.room_for_atoms?(10_000, 520_000, 1_048_576)
      assert Component.room_for_atoms?(0, 524_288, 1_048_576)
    end

    test "a compiled component is kept on disk, and another host loads it instead of compiling",
         %{store: store} do
      wat = ~s{(component (core module (func (export "f#{System.unique_integer()}"))))}
      {:ok, component} = Component.new(store, wat)
      dir = Path.join(to_string(:filename.basedir(:user_cache, ~c"wasmex_port")), "artifacts")

      [path] =
        Path.wildcard(Path.join(dir, Base.encode16(component.key, case: :lower) <> "-*.cwasm"))

      inode = File.stat!(path).inode

      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{wasm_component_model: true})
      {:ok, other} = Wasmex.Store.new(nil, engine)
      assert {:ok, _} = Component.new(other, wat)
      # Not compiled and written again (a new file would replace it under another inode).
      assert File.stat!(path).inode == inode
    end

    test "a compile that takes longer than the engine's compile timeout is stopped" do
      config = %Wasmex.EngineConfig{wasm_component_model: true}
      {:ok, engine} = Wasmex.Engine.new(config, compile_timeout: 1)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      # Bytes no other test compiles (a custom section added), so that no cached artifact
      # answers.
      bytes = File.read!(@types) <> <<0, 10, 1, "x", System.unique_integer([:positive])::64>>

      assert {:error, "Could not compile module: compilation did not finish within 1 ms" <> _} =
               Component.new(store, bytes)
    end

    test "says what is wrong with bytes that are not a component", %{store: store} do
      assert {:error, "the bytes are a core module, not a component" <> _} =
               Component.new(store, File.read!(TestHelper.wasm_test_file_path()))

      assert {:error, "the component is truncated: " <> _} =
               Component.new(store, binary_part(File.read!(@types), 0, 4000))

      assert {:error, "the component text does not parse: " <> _} =
               Component.new(store, "(component (oops))")

      assert {:error,
              "the bytes are not a component: they start neither with \\0asm nor with text"} =
               Component.new(store, <<1, 2, 255, 254>>)
    end

    test "an engine without the component model refuses components", %{store: _} do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      assert {:error, "invalid component: " <> reason} = Component.new(store, File.read!(@types))
      assert reason =~ "component"
    end
  end
end
