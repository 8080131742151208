defmodule Wasmex.EarlierApiTest do
  @moduledoc "The earlier (wasmer-era) Wasmex API, supported beside 0.9.1."
  use ExUnit.Case, async: true

  alias Wasmex.{Instance, Memory, Module, Pipe}

  @wasm_test File.read!(TestHelper.wasm_test_file_path())

  defp view(type, offset \\ 0) do
    {:ok, module} = Module.compile(@wasm_test)
    {:ok, instance} = Instance.new(module, %{})
    {:ok, memory} = Instance.memory(instance, type, offset)
    memory
  end

  describe "Module.compile/1" do
    test "compiles a module any store or host can instantiate" do
      {:ok, module} = Module.compile(@wasm_test)
      {:ok, store} = Wasmex.Store.new()
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
    end

    test "start_link with a module but no store still refuses (0.9.1 wins)" do
      {:ok, module} = Module.compile(@wasm_test)

      assert Wasmex.start_link(%{module: module}) ==
               {:error, :must_specify_store_used_to_compile_module}
    end
  end

  describe "Module.set_name/2" do
    test "works before instantiation and is refused after" do
      {:ok, module} = Module.compile("(module $before)")
      assert Module.set_name(module, "renamed") == :ok
      assert Module.name(module) == "renamed"
      {:ok, _instance} = Instance.new(module, %{})

      assert {:error, "the module was already instantiated" <> _} =
               Module.set_name(module, "late")

      assert Module.name(module) == "renamed"
    end

    test "keeps the name with the module, not in a table row" do
      rows = :ets.info(Wasmex.Module, :size)

      for i <- 1..50 do
        {:ok, module} = Module.compile("(module)")
        assert Module.set_name(module, "name #{i} é") == :ok
        assert Module.name(module) == "name #{i} é"
      end

      assert :ets.info(Wasmex.Module, :size) == rows
    end

    test "takes names up to 256 bytes and refuses longer ones" do
      {:ok, module} = Module.compile("(module $original)")
      longest = String.duplicate("x", 256)
      assert Module.set_name(module, longest) == :ok
      assert Module.name(module) == longest

      assert Module.set_name(module, longest <> "x") ==
               {:error, "a module name is at most 256 bytes, got 257"}

      assert Module.set_name(module, "") == :ok
      assert Module.name(module) == ""
    end

    test "is refused on a struct from another node (its atomics stayed there)" do
      {:ok, module} = Module.compile("(module $travelled)")

      assert Module.set_name(%{module | id: make_ref()}, "x") ==
               {:error, "a module's name can only be set on the node that compiled it"}
    end

    # set_name/2 on an instantiated module: refused, and no table row is left behind.
    defp assert_refused_without_row(module) do
      assert {:error, "the module was already instantiated" <> _} =
               Module.set_name(module, "late")

      refute :ets.member(Wasmex.Module, {:instantiated, module.id})
    end

    test "is refused for the module start_link/1 compiled for its instance, which leaves no row behind" do
      {:ok, pid} = Wasmex.start_link(%{bytes: "(module)"})
      {:ok, module} = Wasmex.module(pid)
      assert_refused_without_row(module)
    end

    test "is refused after an instantiation, which leaves no table row behind" do
      {:ok, module} = Module.compile("(module $marked)")
      {:ok, _instance} = Instance.new(module, %{})
      assert_refused_without_row(module)
    end

    test "is refused after an instantiation on a struct that came from another node" do
      {:ok, module} = Module.compile("(module $travelled)")
      # What a struct's atomics become on another node: a plain reference.
      travelled = %{module | id: make_ref()}
      {:ok, _instance} = Instance.new(travelled, %{})

      assert {:error, "the module was already instantiated" <> _} =
               Module.set_name(travelled, "late")
    end
  end

  describe "Instance.function_export_exists/2" do
    test "is true only for exported functions" do
      {:ok, module} = Module.compile(@wasm_test)
      {:ok, instance} = Instance.new(module, %{})
      assert Instance.function_export_exists(instance, "sum")
      refute Instance.function_export_exists(instance, "memory")
      refute Instance.function_export_exists(instance, "nope")
    end
  end

  describe "Instance.new/2, from_bytes/2 and call_exported_function/4" do
    test "instantiate without a store and call" do
      {:ok, module} = Module.compile(@wasm_test)
      {:ok, instance} = Instance.new(module, %{})
      :ok = Instance.call_exported_function(instance, "sum", [50, -8], :from)
      assert_receive {:returned_function_call, {:ok, [42]}, :from}
    end

    test "from_bytes/2 compiles and instantiates, and reports bad bytes" do
      {:ok, instance} = apply(Instance, :from_bytes, [@wasm_test, %{}])
      :ok = Instance.call_exported_function(instance, "arity_0", [], :f)
      assert_receive {:returned_function_call, {:ok, [42]}, :f}

      assert {:error, "Error while parsing bytes" <> _} =
               apply(Instance, :from_bytes, ["(nope", %{}])
    end
  end

  describe "Instance.new_wasi/3 and wasi_from_bytes/3" do
    test "run a WASI program with an options map and pipes" do
      {:ok, stdout} = Pipe.create()
      {:ok, module} = Module.compile(File.read!(TestHelper.wasi_test_file_path()))

      {:ok, instance} =
        Instance.new_wasi(module, %{}, %{args: ["w", "args", "old"], stdout: stdout})

      :ok = Instance.call_exported_function(instance, "_start", [], :run)
      assert_receive {:returned_function_call, {:ok, []}, :run}, 5_000
      Pipe.seek(stdout, 0)
      assert Pipe.read(stdout) == "w\nargs\nold\n"
    end

    test "preopen flags are enforced: without :write or :create the directory is read-only" do
      dir =
        Path.join(System.tmp_dir!(), "wasmex_old_preopen_#{System.unique_integer([:positive])}")

      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf!(dir) end)

      run = fn flags, args ->
        {:ok, stdout} = Pipe.create()

        wasi = %{
          args: ["w" | args],
          stdout: stdout,
          preopen: %{dir => %{flags: flags, alias: "d"}}
        }

        {:ok, instance} =
          apply(Instance, :wasi_from_bytes, [
            File.read!(TestHelper.wasi_test_file_path()),
            %{},
            wasi
          ])

        :ok = Instance.call_exported_function(instance, "_start", [], :run)
        assert_receive {:returned_function_call, {:ok, []}, :run}, 5_000
        Pipe.seek(stdout, 0)
        Pipe.read(stdout)
      end

      assert "error: " <> _ = run.([:read], ["write", "d/x.txt", "no"])
      refute File.exists?(Path.join(dir, "x.txt"))
      assert run.([:read, :write, :create], ["write", "d/x.txt", "yes"]) == "ok\n"
      assert File.read!(Path.join(dir, "x.txt")) == "yes"
    end
  end

  describe "typed memory views" do
    test "bytes written as int8 read back as int16 and int32, little-endian (the earlier docs' diagram)" do
      int8 = view(:int8)
      Memory.set(int8, 0, 0b00000001)
      Memory.set(int8, 1, 0b00000100)
      Memory.set(int8, 2, 0b00010000)
      Memory.set(int8, 3, 0b01000000)

      assert Memory.get(%{int8 | size: :int16}, 0) == 0b00000100_00000001
      assert Memory.get(%{int8 | size: :int16}, 1) == 0b01000000_00010000
      assert Memory.get(int8, :int32, 0, 0) == 0b01000000_00010000_00000100_00000001
    end

    test "offset and index count elements: a :uint16 view at offset 50, index 3 is bytes 106-107" do
      uint16 = view(:uint16, 50)
      assert Memory.set(uint16, 3, 0xBEEF) == 0xBEEF
      bytes = Memory.read_binary(uint16, :uint8, 0, 104, 6)
      assert bytes == <<0, 0, 0xEF, 0xBE, 0, 0>>
    end

    test "signed views read negative values" do
      int16 = view(:int16)
      Memory.set(int16, 0, -2)
      assert Memory.get(int16, 0) == -2
      assert Memory.get(int16, :uint16, 0, 0) == 65_534
    end

    test "values that don't fit the type are errors, not wraps" do
      uint8 = view(:uint8)
      assert Memory.set(uint8, 0, 256) == {:error, "256 does not fit in uint8"}
      assert Memory.set(uint8, 0, -1) == {:error, "-1 does not fit in uint8"}
      assert Memory.set(uint8, :int8, 0, 0, 128) == {:error, "128 does not fit in int8"}
      assert Memory.get(uint8, 0) == 0
    end

    test "out-of-range indexes are errors" do
      uint32 = view(:uint32, 2)
      last = Memory.length(uint32) - 1
      assert Memory.set(uint32, last, 7) == 7
      assert {:error, "index " <> _} = Memory.get(uint32, last + 1)
      assert {:error, "index " <> _} = Memory.read_binary(uint32, last, 2)
    end

    test "length/1,3 and bytes_per_element/1" do
      memory = view(:uint8)
      assert Memory.length(memory) == 1_114_112
      assert Memory.length(memory, :uint32, 4) == div(1_114_112, 4) - 4
      assert Memory.bytes_per_element(memory) == 1
      assert Memory.bytes_per_element(:int16) == 2
    end

    test "grow/2 returns the previous pages" do
      memory = view(:uint8)
      assert Memory.grow(memory, 1) == 17
      assert Memory.length(memory) == 18 * 65_536
    end

    test "read_binary, write_binary and read_string in a view" do
      memory = view(:uint8, 10)
      assert Memory.write_binary(memory, 5, "hello") == :ok
      assert Memory.read_binary(memory, 5, 5) == "hello"
      assert Memory.read_string(memory, :uint8, 0, 15, 5) == "hello"
      assert Memory.write_binary(memory, :uint8, 0, 20, "x") == :ok
      assert Memory.read_string(memory, 10, 1) == "x"
    end

    test "Wasmex.memory/3 refuses a bad type or offset, the instance running on" do
      {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})

      assert {Wasmex.memory(pid, :uint64, 0), Wasmex.memory(pid, :uint8, -1)} ==
               {{:error,
                 "a view's type must be one of [:int16, :int32, :int8, :uint16, :uint32, :uint8], got: :uint64"},
                {:error, "a view's offset must be a non-negative integer, got: -1"}}

      assert {:ok, _} = Wasmex.memory(pid, :uint8, 0)
    end

    test "Wasmex.memory/3 gives a view of a running instance" do
      {:ok, pid} = Wasmex.start_link(%{bytes: @wasm_test})
      {:ok, memory} = Wasmex.memory(pid, :uint8, 0)
      {:ok, [pointer]} = Wasmex.call_function(pid, "string", [])
      assert Memory.read_string(memory, pointer, 13) == "Hello, World!"
    end

    test "views need a store: a 0.9.1 memory used with the view API is an error" do
      {:ok, pid} = Wasmex.start_link(%{bytes: @wasm_test})
      {:ok, memory} = Wasmex.memory(pid)
      assert {:error, "this memory has no store" <> _} = Memory.get(memory, 0)
    end
  end

  describe "Pipe.create/0 and set_len/2" do
    test "behave like new/0 and resize" do
      {:ok, pipe} = Pipe.create()
      {:ok, 3} = Pipe.write(pipe, "abc")
      assert Pipe.set_len(pipe, 1) == :ok
      assert Pipe.size(pipe) == 1
    end
  end
end
