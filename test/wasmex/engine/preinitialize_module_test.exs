defmodule Wasmex.Engine.PreinitializeModuleTest do
  use ExUnit.Case, async: true

  alias Wasmex.Engine

  describe "preinitialize_module/3" do
    # The init export counts its WASI arguments into `argc` and writes "ready" at 64; the
    # endless one never returns.
    @counting ~s{(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "start")
      (func (export "wizer-initialize")
        (drop (call $sizes (i32.const 0) (i32.const 4)))
        (i32.store (i32.const 64) (i32.const 0x64616572))
        (i32.store8 (i32.const 68) (i32.const 0x79)))
      (func (export "endless") (loop (br 0)))
      (func (export "argc") (result i32) (i32.load (i32.const 0))))}

    # Imports a function from outside WASI; its init exports return a status, or have
    # other shapes.
    @hosted ~s{(module
      (import "env" "now" (func $now (result i32)))
      (memory (export "memory") 1)
      (global $state (mut i32) (i32.const 0))
      (func (export "ready") (result i32) (global.set $state (i32.const 5)) (i32.const 0))
      (func (export "refuses") (result i32) (i32.const 3))
      (func (export "ask_host") (result i32) (call $now))
      (func (export "wide") (result i64) (i64.const 0))
      (func (export "takes") (param i32))
      (func (export "state") (result i32) global.get $state))}

    defp host_imports, do: %{env: %{now: {:fn, [], [:i32], fn _context -> 99 end}}}

    defp snapshot_instance(snapshot) do
      {:ok, pid} = Wasmex.start_link(%{bytes: snapshot, wasi: %Wasmex.Wasi.WasiOptions{}})
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      {pid, store, memory}
    end

    test "the snapshot keeps the memory as the init export left it" do
      {:ok, snapshot} = Engine.preinitialize_module(Engine.default(), @counting)
      {_pid, store, memory} = snapshot_instance(snapshot)
      assert Wasmex.Memory.read_binary(store, memory, 64, 5) == "ready"
    end

    test "the init export sees the arguments of `wasi:`" do
      wasi = %Wasmex.Wasi.WasiOptions{args: ["prog", "one", "two"]}
      {:ok, snapshot} = Engine.preinitialize_module(Engine.default(), @counting, wasi: wasi)
      {pid, _store, _memory} = snapshot_instance(snapshot)
      assert Wasmex.call_function(pid, "argc", []) == {:ok, [3]}
    end

    test "each instance of the snapshot starts from the snapshot, not from another's changes" do
      {:ok, snapshot} = Engine.preinitialize_module(Engine.default(), @counting)
      {_pid, store, memory} = snapshot_instance(snapshot)
      :ok = Wasmex.Memory.write_binary(store, memory, 64, "dirty")
      {_pid, store2, memory2} = snapshot_instance(snapshot)
      assert Wasmex.Memory.read_binary(store2, memory2, 64, 5) == "ready"
    end

    test "a module without the init export gets an error naming it" do
      assert Engine.preinitialize_module(Engine.default(), @counting, init: "missing") ==
               {:error, "Could not pre-initialize module: it exports no `missing` function"}
    end

    test "an init export that never returns is stopped at the engine's compile timeout" do
      {:ok, engine} = Engine.new(%Wasmex.EngineConfig{}, compile_timeout: 300)

      assert {:error, "Could not compile module: compilation did not finish within 300 ms" <> _} =
               Engine.preinitialize_module(engine, @counting, init: "endless")
    end

    test "WASI options beyond args and env are refused" do
      wasi = %Wasmex.Wasi.WasiOptions{preopen: [%Wasmex.Wasi.PreopenOptions{path: "."}]}

      assert Engine.preinitialize_module(Engine.default(), @counting, wasi: wasi) ==
               {:error, "pre-initialization gives WASI only args and env, not :preopen"}
    end

    test "unknown options are refused" do
      assert Engine.preinitialize_module(Engine.default(), @counting, inti: "x") ==
               {:error, "unknown pre-initialization options: [:inti]"}
    end

    test "an init export returning an i32 status of 0 is snapshotted" do
      {:ok, snapshot} = Engine.preinitialize_module(Engine.default(), @hosted, init: "ready")
      {:ok, pid} = Wasmex.start_link(%{bytes: snapshot, imports: host_imports()})
      assert Wasmex.call_function(pid, "state", []) == {:ok, [5]}
    end

    test "an init export returning another status gets an error giving it" do
      assert Engine.preinitialize_module(Engine.default(), @hosted, init: "refuses") ==
               {:error, "Could not pre-initialize module: `refuses` returned 3, not 0"}
    end

    test "an init export of another shape is refused" do
      for init <- ["wide", "takes", "memory"] do
        assert Engine.preinitialize_module(Engine.default(), @hosted, init: init) ==
                 {:error,
                  "Could not pre-initialize module: its export `#{init}` is not a function " <>
                    "of no arguments returning nothing or an i32 status"}
      end
    end

    test "the snapshot still imports what the module imported from outside WASI" do
      {:ok, snapshot} = Engine.preinitialize_module(Engine.default(), @hosted, init: "ready")
      {:ok, pid} = Wasmex.start_link(%{bytes: snapshot, imports: host_imports()})
      assert Wasmex.call_function(pid, "ask_host", []) == {:ok, [99]}
    end

    test "an init export calling an import from outside WASI fails naming it" do
      assert {:error, "Could not pre-initialize module: `ask_host` failed: " <> reason} =
               Engine.preinitialize_module(Engine.default(), @hosted, init: "ask_host")

      assert reason =~
               "the import `env::now` was called, but only WASI is available during pre-initialization"
    end

    test "an init that is not a non-empty string is refused" do
      for init <- ["", :ready, nil] do
        assert Engine.preinitialize_module(Engine.default(), @hosted, init: init) ==
                 {:error, "init: must name an export, got: #{inspect(init)}"}
      end
    end

    test "wasi: other than WasiOptions is refused" do
      assert Engine.preinitialize_module(Engine.default(), @counting, wasi: [args: []]) ==
               {:error, "wasi: must be a %Wasmex.Wasi.WasiOptions{}, got: [args: []]"}
    end
  end
end
