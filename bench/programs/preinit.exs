# The `preinit` group of bench/programs.exs: a fresh instance per request of a
# pre-initialized module (`Wasmex.Engine.preinitialize_module/3`) against the same with the
# start-up in every request, for a program of our own and for QuickJS-NG.

defmodule Programs.Preinit do
  @moduledoc false
  alias Programs.{Out, Proc}
  alias Wasmex.Wasi.WasiOptions

  def run(ctx) do
    table(ctx)
    quickjs(ctx)
  end

  # A program of our own whose start-up fills a 16 MiB table, which its first call needs.
  # A fresh store and instance per request, one call, then stop: with the start-up in
  # every request, and from the snapshot of `Wasmex.Engine.preinitialize_module/3`.
  def table(ctx) do
    wat = ~s{(module
      (memory (export "memory") 257)
      (global $ready (mut i32) (i32.const 0))
      (func $init (export "wizer-initialize") (local $i i32) (local $x i32)
        (local.set $x (i32.const 2463534242))
        (block $done (loop $fill
          (br_if $done (i32.ge_u (local.get $i) (i32.const 16777216)))
          (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
          (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
          (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
          (i32.store offset=65536 (local.get $i) (local.get $x))
          (local.set $i (i32.add (local.get $i) (i32.const 4)))
          (br $fill)))
        (global.set $ready (i32.const 1)))
      (func (export "lookup") (param i32) (result i32)
        (if (i32.eqz (global.get $ready)) (then (call $init)))
        (i32.load offset=65536
          (i32.shl (i32.and (local.get 0) (i32.const 4194303)) (i32.const 2)))))}

    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, s} = Wasmex.Store.new(nil, engine)
    t0 = System.monotonic_time()
    {:ok, snapshot} = Wasmex.Engine.preinitialize_module(engine, wat)
    ms = System.convert_time_unit(System.monotonic_time() - t0, :native, :microsecond) / 1000
    Out.figure("preinit_snapshot_16mib_once", ms, "ms")
    {:ok, plain} = Wasmex.Module.compile(s, wat)
    {:ok, snap} = Wasmex.Module.compile(s, snapshot)
    os = Proc.port(engine)

    request = fn module ->
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      {:ok, [_]} = Wasmex.call_function(pid, "lookup", [12_345])
      GenServer.stop(pid)
      Wasmex.Store.release(store)
    end

    {:ok, pid} = Wasmex.start_link(%{store: s, module: plain})
    {:ok, [expected]} = Wasmex.call_function(pid, "lookup", [12_345])
    {:ok, pid2} = Wasmex.start_link(%{store: s, module: snap})
    {:ok, [^expected]} = Wasmex.call_function(pid2, "lookup", [12_345])

    Out.measure("preinit_request_with_startup", ctx.reps.(30), 3, :ms, os, fn ->
      request.(plain)
    end)

    Out.measure("preinit_request_from_snapshot", ctx.reps.(300), 20, :ms, os, fn ->
      request.(snap)
    end)

    GenServer.stop(pid)
    GenServer.stop(pid2)
    GenServer.stop(engine.host)
  end

  # QuickJS-NG as a WASI reactor (npm quickjs-wasi): snapshotted after `qjs_init` (which
  # creates the JavaScript runtime and context), then per request a fresh store and
  # instance evaluates `1 + 2` through `qjs_eval`, as the package's JavaScript wrapper
  # does, and stops. Against the same from the original module, whose `_initialize` and
  # `qjs_init` run in every request. Its six imports from "env" are Elixir callbacks giving
  # trivial answers (`1 + 2` calls none of them).
  def quickjs(ctx) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, s} = Wasmex.Store.new(nil, engine)
    t0 = System.monotonic_time()
    {:ok, snapshot} = Wasmex.Engine.preinitialize_module(engine, ctx.qjs_wasi, init: "qjs_init")
    ms = System.convert_time_unit(System.monotonic_time() - t0, :native, :microsecond) / 1000
    Out.figure("preinit_qjs_snapshot_once", ms, "ms")
    Out.figure("preinit_qjs_snapshot_size", byte_size(snapshot), "B")
    {:ok, plain} = Wasmex.Module.compile(s, ctx.qjs_wasi)
    {:ok, snap} = Wasmex.Module.compile(s, snapshot)
    os = Proc.port(engine)

    start = fn module ->
      {:ok, store} = Wasmex.Store.new_wasi(%WasiOptions{}, nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: qjs_imports()})
      {store, pid}
    end

    stop = fn {store, pid} ->
      GenServer.stop(pid)
      Wasmex.Store.release(store)
    end

    from_snapshot = fn ->
      instance = start.(snap)
      3.0 = qjs_eval_number(instance, "1 + 2")
      stop.(instance)
    end

    with_startup = fn ->
      {_store, pid} = instance = start.(plain)
      {:ok, []} = Wasmex.call_function(pid, "_initialize", [])
      {:ok, [0]} = Wasmex.call_function(pid, "qjs_init", [])
      3.0 = qjs_eval_number(instance, "1 + 2")
      stop.(instance)
    end

    Out.measure("preinit_qjs_request_with_startup", ctx.reps.(100), 10, :ms, os, with_startup)
    Out.measure("preinit_qjs_request_from_snapshot", ctx.reps.(300), 20, :ms, os, from_snapshot)

    # The fresh store and instance alone, without the evaluation.
    Out.measure("preinit_qjs_instance_from_snapshot", ctx.reps.(300), 20, :ms, os, fn ->
      t0 = System.monotonic_time()
      instance = start.(snap)
      t = System.convert_time_unit(System.monotonic_time() - t0, :native, :nanosecond)
      stop.(instance)
      {:ns, t}
    end)

    GenServer.stop(engine.host)
  end

  # Evaluates `code` as a global script, as quickjs-wasi's `evalCode` does: code and file
  # name as NUL-terminated strings in memory from the guest's `malloc`, `qjs_eval` returns
  # a value handle, then the checks of its `dump` for a number.
  defp qjs_eval_number({store, pid}, code) do
    {:ok, memory} = Wasmex.memory(pid)
    strings = code <> <<0>> <> "<eval>" <> <<0>>
    {:ok, [ptr]} = Wasmex.call_function(pid, "malloc", [byte_size(strings)])
    :ok = Wasmex.Memory.write_binary(store, memory, ptr, strings)
    file = ptr + byte_size(code) + 1
    {:ok, [value]} = Wasmex.call_function(pid, "qjs_eval", [ptr, byte_size(code), file, 0])
    {:ok, [0]} = Wasmex.call_function(pid, "qjs_is_exception", [value])
    {:ok, [1]} = Wasmex.call_function(pid, "qjs_is_number", [value])
    {:ok, [number]} = Wasmex.call_function(pid, "qjs_get_float64", [value])
    number
  end

  # Trivial answers (evaluating `1 + 2` calls none of them): no host functions, no
  # interrupt, rejections ignored, no modules, UTC.
  defp qjs_imports do
    zero = fn _context, _a, _b -> 0 end

    %{
      env: %{
        host_call: {:fn, [:i32, :i32, :i32, :i32, :i32], [:i32], fn _, _, _, _, _, _ -> 0 end},
        host_interrupt: {:fn, [], [:i32], fn _ -> 0 end},
        host_promise_rejection: {:fn, [:i32, :i32, :i32], [], fn _, _, _, _ -> nil end},
        host_module_normalize: {:fn, [:i32, :i32], [:i32], zero},
        host_module_load: {:fn, [:i32, :i32], [:i32], zero},
        host_get_timezone_offset: {:fn, [:i32, :i32], [:i32], zero}
      }
    }
  end
end
