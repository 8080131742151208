defmodule Wasmex.ModuleTest do
  use ExUnit.Case, async: true

  alias Wasmex.Module

  @wat_with_everything """
  (module $everything
    (import "env" "log" (func (param i32 f64)))
    (import "env" "g" (global i64))
    (memory (export "mem") 1 4)
    (table (export "tab") 2 funcref)
    (global (export "counter") (mut i32) (i32.const 0))
    (func (export "pair") (result i32 i64) i32.const 1 i64.const 2))
  """

  setup do
    {:ok, store} = Wasmex.Store.new()
    %{store: store}
  end

  # A module of `functions` functions of no params, each declaring `locals` i32 locals.
  defp many_locals(functions, locals) do
    body = <<1>> <> leb(locals) <> <<0x7F, 0x0B>>
    code = leb(functions) <> :binary.copy(leb(byte_size(body)) <> body, functions)
    funcs = leb(functions) <> :binary.copy(<<0>>, functions)

    <<0, "asm", 1, 0, 0, 0>> <>
      section(1, <<1, 0x60, 0, 0>>) <> section(3, funcs) <> section(10, code)
  end

  defp section(id, body), do: <<id>> <> leb(byte_size(body)) <> body

  defp leb(n) when n < 128, do: <<n>>
  defp leb(n), do: <<Bitwise.bor(Bitwise.band(n, 0x7F), 0x80)>> <> leb(Bitwise.bsr(n, 7))

  describe "compile/2" do
    test "compiles .wasm bytes", %{store: store} do
      assert {:ok, %Module{}} =
               Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
    end

    test "reports invalid WAT with Wasmex's message", %{store: store} do
      assert {:error, "Error while parsing bytes: " <> _} = Module.compile(store, "wat is this?")
    end

    test "reports an error message longer than a pipe holds, not a timeout" do
      # The compile child's message (over 64 KiB: it quotes the line) must not block it.
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, compile_timeout: 10_000)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      source = "(module " <> String.duplicate("a", 70_000) <> ")"

      assert {:error, "Error while parsing bytes: expected `(`" <> _} =
               Module.compile(store, source)
    end

    test "of a small module that declares many locals stops at the compile timeout" do
      # 500 functions of 50,000 locals in under 4 KiB: seconds of compiling, done in a
      # compile child like a large module's.
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, compile_timeout: 200)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      module = many_locals(500, 50_000)
      assert byte_size(module) < 4096

      assert {:error, "Could not compile module: compilation did not finish within 200 ms" <> _} =
               Module.compile(store, module)
    end

    test "reports an invalid Wasm binary", %{store: store} do
      assert {:error, "Could not compile module" <> _} =
               Module.compile(store, <<0, "asm", 1, 0, 0, 0, 99>>)
    end
  end

  describe "exports/1" do
    test "describes functions, globals, memories and tables", %{store: store} do
      {:ok, module} = Module.compile(store, @wat_with_everything)

      assert Module.exports(module) == %{
               "pair" => {:fn, [], [:i32, :i64]},
               "counter" => {:global, %{type: :i32, mutability: :var}},
               "mem" => {:memory, %{minimum: 1, maximum: 4, shared: false, memory64: false}},
               "tab" => {:table, %{type: {:reference, "(ref null func)"}, minimum: 2}}
             }
    end

    test "omits maximum when a memory has none", %{store: store} do
      {:ok, module} = Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))

      assert Module.exports(module)["memory"] ==
               {:memory, %{minimum: 17, shared: false, memory64: false}}
    end
  end

  describe "reference types in exports/1 and imports/1" do
    test "read {:reference, text} as in Wasmex: params, results, tables and globals",
         %{store: store} do
      wat = """
      (module
        (import "env" "take" (func (param externref) (result funcref)))
        (import "env" "ext" (global externref))
        (table (export "externs") 1 externref)
        (global (export "fref") funcref (ref.null func))
        (func (export "id") (param externref) (result externref) local.get 0))
      """

      {:ok, module} = Module.compile(store, wat)
      func = {:reference, "(ref null func)"}
      extern = {:reference, "(ref null extern)"}

      assert Module.imports(module) == %{
               "env" => %{
                 "take" => {:fn, [extern], [func]},
                 "ext" => {:global, %{type: extern, mutability: :const}}
               }
             }

      assert %{
               "externs" => {:table, %{type: ^extern, minimum: 1}},
               "fref" => {:global, %{type: ^func, mutability: :const}},
               "id" => {:fn, [^extern], [^extern]}
             } = Module.exports(module)
    end
  end

  describe "the resource and reference fields" do
    test "name where the compiled code lives", %{store: store} do
      {:ok, module} = Module.compile(store, "(module)")
      assert %Module{resource: {host, key}, reference: ref} = module
      assert host == store.host and key == module.key and is_reference(ref)
    end
  end

  describe "imports/1" do
    test "groups imports by namespace", %{store: store} do
      {:ok, module} = Module.compile(store, @wat_with_everything)

      assert Module.imports(module) == %{
               "env" => %{
                 "log" => {:fn, [:i32, :f64], []},
                 "g" => {:global, %{type: :i64, mutability: :const}}
               }
             }
    end
  end

  describe "name/1" do
    test "is the name section's module name, or nil", %{store: store} do
      {:ok, named} = Module.compile(store, "(module $helloTest)")
      {:ok, unnamed} = Module.compile(store, "(module)")
      assert Module.name(named) == "helloTest"
      assert Module.name(unnamed) == nil
    end
  end

  describe "serialize/1 and unsafe_deserialize/2" do
    test "round-trip a module into a working instance", %{store: store} do
      {:ok, module} = Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
      {:ok, serialized} = Module.serialize(module)
      {:ok, loaded} = Module.unsafe_deserialize(serialized)
      assert Module.exports(loaded) == Module.exports(module)

      engine = Wasmex.Engine.default()
      {:ok, default_store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: default_store, module: loaded})
      assert Wasmex.call_function(pid, "sum", [2, 3]) == {:ok, [5]}
    end

    test "refuses bytes that are not a serialized module" do
      assert {:error, "Could not deserialize module" <> _} =
               Module.unsafe_deserialize("not an artifact")
    end

    test "refuses an artifact changed after it was serialized; the engine serves on", %{
      store: store
    } do
      {:ok, module} = Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
      {:ok, serialized} = Module.serialize(module)
      at = div(byte_size(serialized), 2)
      <<before::binary-size(at), byte, rest::binary>> = serialized
      tampered = <<before::binary, Bitwise.bxor(byte, 0xFF), rest::binary>>

      assert {:error, "Could not deserialize module: the artifact's seal does not match" <> _} =
               Module.unsafe_deserialize(tampered)

      assert {:ok, _} = Module.unsafe_deserialize(serialized)
    end

    test "refuses an artifact of an engine with another configuration", %{store: store} do
      {:ok, module} = Module.compile(store, "(module)")
      {:ok, serialized} = Module.serialize(module)
      {:ok, fuel_engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{consume_fuel: true})

      assert {:error, "Could not deserialize module" <> _} =
               Module.unsafe_deserialize(serialized, fuel_engine)
    end
  end

  describe "the compiled-artifact cache" do
    test "a large module compiled in one host is kept, and another host loads it" do
      # Over 4 KiB, so compiled in a child process, with a name no other test uses.
      funcs = for i <- 1..300, do: ~s{(func (export "f#{i}") (result i32) i32.const #{i})}
      wat = "(module $artifact_#{System.system_time(:nanosecond)} #{Enum.join(funcs, " ")})"
      {:ok, store} = Wasmex.Store.new()
      {:ok, module} = Module.compile(store, wat)
      dir = Path.join(to_string(:filename.basedir(:user_cache, ~c"wasmex_port")), "artifacts")
      hex = Base.encode16(module.key, case: :lower)
      assert [_artifact] = Path.wildcard(Path.join(dir, hex <> "-*.cwasm"))

      {:ok, other} = Wasmex.Store.new()
      {:ok, again} = Module.compile(other, wat)
      {:ok, pid} = Wasmex.start_link(%{store: other, module: again})
      assert Wasmex.call_function(pid, "f300", []) == {:ok, [300]}
    end

    test "a host holding a large module's artifact is sent its key, not its source" do
      funcs = for i <- 1..3000, do: ~s{(func (export "f#{i}") (result i32) i32.const #{i})}
      wat = "(module $by_key_#{System.system_time(:nanosecond)} #{Enum.join(funcs, " ")})"
      {:ok, store} = Wasmex.Store.new()
      {:ok, module} = Module.compile(store, wat)
      # Were the source sent, the port would check it against the key and refuse it.
      unsent = %{module | source: {:wasm, :binary.copy("x", byte_size(wat))}}

      {:ok, other} = Wasmex.Store.new()
      {:ok, pid} = Wasmex.start_link(%{store: other, module: unsent})
      assert Wasmex.call_function(pid, "f3000", []) == {:ok, [3000]}
    end

    test "a file holding another module's code is not run, whatever its name" do
      # Two large modules that differ only in what f300 returns.
      large = fn sign ->
        funcs =
          for i <- 1..300, do: ~s{(func (export "f#{i}") (result i32) i32.const #{sign}#{i})}

        "(module $swapped_#{System.system_time(:nanosecond)} #{Enum.join(funcs, " ")})"
      end

      {positive, negative} = {large.(""), large.("-")}
      {:ok, store} = Wasmex.Store.new()
      {:ok, compiled} = Module.compile(store, positive)
      dir = Path.join(to_string(:filename.basedir(:user_cache, ~c"wasmex_port")), "artifacts")
      hex = &Base.encode16(Module.key({:wasm, &1}), case: :lower)
      [file] = Path.wildcard(Path.join(dir, hex.(positive) <> "-*.cwasm"))
      # What a key collision, or anyone writing the cache, would leave behind: the code of
      # one module under the other's name.
      File.cp!(file, String.replace(file, hex.(positive), hex.(negative)))

      {:ok, other} = Wasmex.Store.new()
      {:ok, module} = Module.compile(other, negative)
      {:ok, pid} = Wasmex.start_link(%{store: other, module: module})

      assert {compiled.key != module.key, Wasmex.call_function(pid, "f300", [])} ==
               {true, {:ok, [-300]}}
    end
  end

  describe "many modules in one host" do
    test "a module the host dropped to make room is sent again when it is needed" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Wasmex.Store.new(nil, engine)

      first = compile_past_capacity(store)

      {:ok, pid} = Wasmex.start_link(%{store: store, module: first})
      assert Wasmex.call_function(pid, "f", []) == {:ok, [1]}
    end

    test "serializing a module the host dropped sends it again" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Wasmex.Store.new(nil, engine)

      first = compile_past_capacity(store)

      assert {:ok, serialized} = Module.serialize(first)
      assert {:ok, module} = Module.unsafe_deserialize(serialized, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "f", []) == {:ok, [1]}
    end
  end

  describe "instantiating in another host" do
    test "a module compiled in one store's host runs in another's", %{store: store} do
      {:ok, module} = Module.compile(store, File.read!(TestHelper.wasm_test_file_path()))
      {:ok, other_store} = Wasmex.Store.new()
      refute other_store.host == store.host
      {:ok, pid} = Wasmex.start_link(%{store: other_store, module: module})
      assert Wasmex.call_function(pid, "sum", [20, 22]) == {:ok, [42]}
    end
  end

  # Compiles more modules than a host keeps loaded (256), so the first ones are dropped in
  # the port; returns the first.
  defp compile_past_capacity(store) do
    [first | _] =
      for i <- 1..260 do
        {:ok, module} =
          Module.compile(store, ~s{(module (func (export "f") (result i32) i32.const #{i}))})

        module
      end

    first
  end
end
