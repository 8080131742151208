defmodule Wasmex.Host.StoreTasksTest do
  @moduledoc """
  Every store is a task on the port's tokio runtime (port/store/task.rs), run by a worker
  thread per CPU, instead of a thread each. What a user must still be able to count on: a
  store busy in a long call, or waiting in a callback or a WASI sleep, holds up no other
  store, and a waiting store holds no thread.
  """
  use ExUnit.Case, async: true

  alias Wasmex.{Engine, EngineConfig, Host}

  @sum File.read!(TestHelper.wasm_test_file_path())

  # Calls `started` (so the test knows the call is running), then loops until stopped.
  @started_then_loop """
  (module (import "env" "started" (func $started))
    (func (export "run") call $started (loop br 0)))
  """

  # Calls `block` and returns what it returned.
  @blocks_in_callback """
  (module (import "env" "block" (func $block (result i32)))
    (func (export "run") (result i32) call $block))
  """

  defp instances(engine, wat, imports, n) do
    {:ok, store0} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store0, wat)

    for _ <- 1..n do
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: imports})
      pid
    end
  end

  defp threads(pid) do
    {:ok, store} = Wasmex.store(pid)
    "/proc/#{Host.os_pid(store.host)}/task" |> File.ls!() |> length()
  end

  setup do
    {:ok, engine} = Engine.new(%EngineConfig{})
    %{engine: engine}
  end

  describe "a store busy in a long call" do
    test "holds up no other store of the same host", %{engine: engine} do
      test = self()
      started = %{env: %{started: {:fn, [], [], fn _ -> send(test, :started) end}}}
      [looping] = instances(engine, @started_then_loop, started, 1)
      [other] = instances(engine, @sum, %{}, 1)

      looper = Task.async(fn -> Wasmex.call_function(looping, "run", [], 60_000) end)
      assert_receive :started, 5_000
      assert Wasmex.call_function(other, "sum", [1, 2], 5_000) == {:ok, [3]}
      assert Task.yield(looper, 0) == nil
      Task.shutdown(looper, :brutal_kill)
    end
  end

  describe "stores waiting in callbacks" do
    test "many at once hold up no other store, and all finish when answered", %{
      engine: engine
    } do
      test = self()

      block = fn _ ->
        send(test, {:waiting, self()})

        receive do
          :go -> 7
        end
      end

      waiting =
        instances(engine, @blocks_in_callback, %{env: %{block: {:fn, [], [:i32], block}}}, 40)

      calls =
        Enum.map(waiting, fn pid -> Task.async(fn -> Wasmex.call_function(pid, "run", []) end) end)

      callbacks = for _ <- waiting, do: assert_receive({:waiting, cb}, 5_000) && cb
      [other] = instances(engine, @sum, %{}, 1)
      assert Wasmex.call_function(other, "sum", [1, 2]) == {:ok, [3]}

      Enum.each(callbacks, &send(&1, :go))
      assert Enum.map(calls, &Task.await/1) == List.duplicate({:ok, [7]}, 40)
    end
  end

  describe "many stores in nested callbacks at once" do
    # run(depth) calls Elixir, which calls run(depth - 1) through the caller, down to 0.
    @nested """
    (module (import "env" "cb" (func $cb (param i32) (result i32)))
      (func (export "run") (param i32) (result i32) local.get 0 call $cb))
    """

    test "all finish with the right results", %{engine: engine} do
      nest = fn %{caller: caller, instance: instance}, depth ->
        if depth == 0 do
          100
        else
          :ok =
            Wasmex.Instance.call_exported_function(caller, instance, "run", [depth - 1], depth)

          receive do
            {:returned_function_call, {:ok, [inner]}, ^depth} -> inner + depth
          end
        end
      end

      imports = %{env: %{cb: {:fn, [:i32], [:i32], nest}}}
      pids = instances(engine, @nested, imports, 16)

      results =
        pids
        |> Enum.map(fn pid ->
          Task.async(fn -> for _ <- 1..20, do: Wasmex.call_function(pid, "run", [3]) end)
        end)
        |> Enum.flat_map(&Task.await(&1, 30_000))

      assert results == List.duplicate({:ok, [106]}, 16 * 20)
    end
  end

  describe "stores blocked in WASI sleeps" do
    # `sleep(ms)` waits in WASI's poll_oneoff; `answer()` returns 42.
    @sleeper File.read!(Path.expand("../../fixtures/wasi_sleeper.wat", __DIR__))

    defp os_threads(os_pid), do: "/proc/#{os_pid}/task" |> File.ls!() |> length()

    test "200 at once hold no thread each, and the port is back to its threads once they stop",
         %{engine: engine} do
      {:ok, store0} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
      {:ok, module} = Wasmex.Module.compile(store0, @sleeper)

      pids =
        for _ <- 1..200 do
          {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
          {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
          {:ok, [42]} = Wasmex.call_function(pid, "answer", [])
          pid
        end

      os_pid = Host.os_pid(engine.host)
      before = os_threads(os_pid)

      sleeps =
        Enum.map(pids, fn pid ->
          Task.async(fn -> Wasmex.call_function(pid, "sleep", [60_000], 1_000) end)
        end)

      Enum.each(sleeps, &Wasmex.Test.Await.waiting_for_answer(&1.pid))
      # All 200 sleep once a call queued behind the last one's sleep waits.
      behind = Task.async(fn -> Wasmex.call_function(List.last(pids), "answer", [], 5_000) end)
      assert Task.yield(behind, 200) == nil
      # Another store is served meanwhile.
      [other] = instances(engine, @sum, %{}, 1)
      assert Wasmex.call_function(other, "sum", [1, 2]) == {:ok, [3]}
      assert os_threads(os_pid) <= before + 2

      # Stopped at their deadline, they leave the port's threads where they were.
      assert Enum.map(sleeps, &Task.await/1) |> Enum.all?(&match?({:error, "timed out" <> _}, &1))
      assert Task.await(behind) == {:ok, [42]}
      assert os_threads(os_pid) <= before + 2
    end
  end

  describe "idle stores" do
    test "hold no thread each", %{engine: engine} do
      pids = instances(engine, @sum, %{}, 50)
      Enum.each(pids, fn pid -> {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2]) end)
      # Main, epoch ticker, a worker per CPU and a few blocking-pool threads; a thread
      # per store was 50+.
      assert threads(hd(pids)) < 12
    end
  end
end
