defmodule Wasmex.Host.WorkersTest do
  @moduledoc """
  Stores share a small pool of worker threads in the port (port/workers.rs) instead of a
  thread each. What a user must still be able to count on: a store busy in a long call,
  or waiting in a callback, holds up no other store.
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

  describe "idle stores" do
    test "hold no thread each", %{engine: engine} do
      pids = instances(engine, @sum, %{}, 50)
      Enum.each(pids, fn pid -> {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2]) end)
      # Main, epoch ticker, worker monitor and a few workers; a thread per store was 50+.
      assert threads(hd(pids)) < 12
    end
  end

  describe "workers moved off the main thread's CPU during callbacks" do
    @callback_loop """
    (module (import "env" "cb" (func $cb (param i32) (result i32)))
      (func (export "run") (param $n i32) (result i32) (local $acc i32)
        (loop $l
          (local.set $acc (i32.add (local.get $acc) (call $cb (local.get $n))))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $l (local.get $n)))
        (local.get $acc)))
    """

    defp cpus_allowed(os_pid) do
      # A thread may end between the listing and the read (compile threads do).
      for tid <- File.ls!("/proc/#{os_pid}/task"),
          {:ok, status} <- [File.read("/proc/#{os_pid}/task/#{tid}/status")],
          into: MapSet.new() do
        [_, cpus] = Regex.run(~r/Cpus_allowed_list:\s+(\S+)/, status)
        cpus
      end
    end

    test "get every CPU back, and so do the threads started meanwhile", %{engine: engine} do
      imports = %{env: %{cb: {:fn, [:i32], [:i32], fn _context, x -> x end}}}
      [looping] = instances(engine, @callback_loop, imports, 1)
      os_pid = Host.os_pid(engine.host)

      # Stores created, called and dropped while the callbacks run make the port start
      # workers (and a worker waiting for an answer may be the one that reads them).
      churn =
        for _ <- 1..4 do
          Task.async(fn ->
            for _ <- 1..10 do
              {:ok, store} = Wasmex.Store.new(nil, engine)
              {:ok, module} = Wasmex.Module.compile(store, @sum)
              {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
              {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
              GenServer.stop(pid)
              Wasmex.Store.release(store, self())
            end
          end)
        end

      for _ <- 1..5, do: {:ok, _} = Wasmex.call_function(looping, "run", [2000], 60_000)
      Task.await_many(churn, 60_000)
      assert MapSet.size(cpus_allowed(os_pid)) == 1
    end
  end
end
