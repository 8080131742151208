defmodule Wasmex.PoolTest do
  use ExUnit.Case, async: true

  alias Wasmex.Pool

  # `bump` counts the calls an instance served; `spin` runs until stopped.
  @counter """
  (module (global $n (mut i32) (i32.const 0))
    (func (export "bump") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
    (func (export "count") (result i32) (global.get $n))
    (func (export "spin") (loop br 0)))
  """

  defp start_pool(opts) do
    name = :"pool_#{System.unique_integer([:positive])}"
    start_supervised!({Pool, Keyword.merge([name: name, bytes: @counter], opts)})
    name
  end

  # Waits (on :pg's own notifications) until the pool has `size` members again, none of
  # them in `gone`.
  defp await_members(pool, size, gone) do
    {ref, _members} = :pg.monitor(Pool.pg_scope(), pool)
    wait_members(pool, size, gone, ref)
  end

  defp wait_members(pool, size, gone, ref) do
    members = Pool.members(pool)

    if length(members) >= size and not Enum.any?(gone, &(&1 in members)) do
      :pg.demonitor(Pool.pg_scope(), ref)
      members
    else
      receive do
        {^ref, _join_or_leave, ^pool, _pids} -> wait_members(pool, size, gone, ref)
      after
        5_000 -> flunk("the pool did not get back to #{size} members")
      end
    end
  end

  describe "start_link/1 and call_function/5" do
    test "gives its engine the :instance_slots it is told, which must fit its instances" do
      name = :"pool_#{System.unique_integer([:positive])}"
      spec = {Pool, name: name, bytes: @counter, size: 2, instance_slots: 1}
      assert {:error, {{:shutdown, _}, _}} = start_supervised(spec)
      assert is_atom(start_pool(size: 2, instance_slots: 2))
    end

    test "spreads calls over the instances" do
      pool = start_pool(size: 2)
      for _ <- 1..10, do: {:ok, [_]} = Pool.call_function(pool, "bump", [])
      counts = for pid <- Pool.members(pool), do: Wasmex.call_function(pid, "count", [])
      assert counts == [{:ok, [5]}, {:ok, [5]}]
    end

    test "compiles the module once for the whole pool, in one OS process" do
      pool = start_pool(size: 3)
      modules = for pid <- Pool.members(pool), do: elem(Wasmex.module(pid), 1).id
      hosts = for pid <- Pool.members(pool), do: elem(Wasmex.store(pid), 1).host
      assert modules |> Enum.uniq() |> length() == 1
      assert hosts |> Enum.uniq() |> length() == 1
    end

    test "gives its instances WASI configured by a plain map, as start_link/1 does" do
      wat = """
      (module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "quit") (call $exit (i32.const 3))))
      """

      pool = start_pool(size: 1, bytes: wat, wasi: %{args: ["x"]})
      assert Pool.call_function(pool, "quit", []) == {:error, {:exit, 3}}
    end

    test "passes compile_timeout to its engine" do
      # Over 4 KiB (compiled in a child process, which the timeout stops) and never
      # compiled before (no cached artifact).
      unique = System.unique_integer([:positive])
      funcs = for i <- 1..300, do: ~s{(func (export "f#{i}") (result i32) i32.const #{unique})}
      bytes = "(module #{Enum.join(funcs)})"
      opts = [name: :"pool_#{System.unique_integer([:positive])}", bytes: bytes]
      assert {:error, reason} = start_supervised({Pool, [compile_timeout: 1] ++ opts})
      assert inspect(reason) =~ "did not finish within 1 ms"
    end

    test "refuses calls beyond max_queue at once" do
      pool = start_pool(size: 1, max_queue: 2)
      busy = for _ <- 1..2, do: Task.async(fn -> Pool.call_function(pool, "spin", [], 500) end)
      wait_until_in_flight(pool, 2)
      assert Pool.call_function(pool, "count", []) == {:error, :queue_full}
      assert Enum.map(busy, &Task.await/1) |> Enum.all?(&match?({:error, "timed out" <> _}, &1))
      assert Pool.call_function(pool, "count", []) == {:ok, [0]}
    end

    test "frees the slot of a caller killed mid-call (no after block runs), so calls go on" do
      pool = start_pool(size: 1, max_queue: 2)

      for _ <- 1..5 do
        caller = Task.async(fn -> Pool.call_function(pool, "spin", [], 60_000) end)
        wait_until_in_flight(pool, 1)
        assert Task.shutdown(caller, :brutal_kill) == nil
        wait_until_in_flight_below(pool, 1)
      end

      assert Pool.call_function(pool, "count", []) == {:ok, [0]}
      assert Pool.in_flight(pool) == 0
    end

    test "a pool that stopped says so, as an unknown one does" do
      pool = start_pool(size: 1)
      :ok = stop_supervised(Pool)

      assert Pool.call_function(pool, "count", []) ==
               {:error, "the pool #{inspect(pool)} has no running instance"}
    end

    test "an unknown pool is an error" do
      assert {:error, "the pool :no_such_pool has no running instance"} =
               Pool.call_function(:no_such_pool, "f", [])
    end

    test "serves 10,000 concurrent callers, none timing out" do
      pool = start_pool(size: 4)

      results =
        1..10_000
        |> Enum.map(fn _ -> Task.async(fn -> Pool.call_function(pool, "bump", [], 30_000) end) end)
        |> Task.await_many(60_000)

      assert Enum.count(results, &match?({:ok, [_]}, &1)) == 10_000
    end
  end

  describe "restarts" do
    test "a killed instance is replaced, keeping the pool's size" do
      pool = start_pool(size: 3)
      [victim | _] = Pool.members(pool)
      Process.exit(victim, :kill)
      members = await_members(pool, 3, [victim])
      refute victim in members
      assert Pool.call_function(pool, "count", []) == {:ok, [0]}
    end

    test "an engine killed again and again is restarted each time, the pool running on" do
      pool = start_pool(size: 2)
      supervisor = Process.whereis(pool)

      for _ <- 1..5 do
        [member | _] = members = Pool.members(pool)
        {:ok, store} = Wasmex.store(member)
        System.cmd("kill", ["-9", "#{Wasmex.Host.os_pid(store.host)}"])
        await_members(pool, 2, members)
      end

      assert {Process.alive?(supervisor), Pool.call_function(pool, "count", [])} ==
               {true, {:ok, [0]}}
    end

    test "refuses a size below 1 and a negative max_queue" do
      assert Pool.start_link(name: :bad_pool, bytes: @counter, size: 0) ==
               {:error, ":size must be a positive integer, got: 0"}

      assert Pool.start_link(name: :bad_pool, bytes: @counter, max_queue: -1) ==
               {:error, ":max_queue must be a non-negative integer, got: -1"}
    end

    test "refuses an unknown option, naming it" do
      assert Pool.start_link(name: :bad_pool, bytes: @counter, os_limit: [cpu_seconds: 1]) ==
               {:error, "unknown option :os_limit for Wasmex.Pool.start_link/1"}
    end

    test "a killed engine process restarts the whole pool; calls in flight get answers or errors" do
      pool = start_pool(size: 2)
      [member | _] = Pool.members(pool)
      ref = Process.monitor(member)
      {:ok, store} = Wasmex.store(member)

      calls =
        for _ <- 1..50, do: Task.async(fn -> Pool.call_function(pool, "bump", [], 5_000) end)

      System.cmd("kill", ["-9", "#{Wasmex.Host.os_pid(store.host)}"])
      results = Task.await_many(calls, 10_000)
      assert Enum.all?(results, &(match?({:ok, _}, &1) or match?({:error, _}, &1)))
      assert_receive {:DOWN, ^ref, :process, ^member, _}
      members = await_members(pool, 2, [member])
      refute member in members
      assert {:ok, [_]} = Pool.call_function(pool, "bump", [])
    end
  end

  describe "Wasmex.Pool.Engine.restart_wait/1" do
    test "restarts at once, then waits twice as long each time, up to 5 s" do
      assert Enum.map(1..9, &Pool.Engine.restart_wait/1) ==
               [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]
    end
  end

  defp wait_until_in_flight(pool, n) do
    if Pool.in_flight(pool) < n, do: wait_until_in_flight(pool, n), else: :ok
  end

  # The pool frees a killed caller's slot when its monitor fires: wait for that, 5 s at most.
  defp wait_until_in_flight_below(
         pool,
         n,
         deadline \\ System.monotonic_time(:millisecond) + 5_000
       ) do
    cond do
      Pool.in_flight(pool) < n -> :ok
      System.monotonic_time(:millisecond) > deadline -> flunk("the slot was never freed")
      true -> wait_until_in_flight_below(pool, n, deadline)
    end
  end
end
