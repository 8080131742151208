defmodule Wasmex.Wasi.StoppingTest do
  @moduledoc """
  A deadline or a cancellation stops a WASI program wherever it waits, not only while its
  Wasm code runs: in a `poll_oneoff` sleep, in a start function. The store then serves
  the next request at once, and nothing of the stopped work stays in the port.
  """
  # Not async: 1,000 blocked instances load the machine for the other tests. The bounds
  # below tell a sleep stopped from a sleep waited out (a minute); how soon it stops is a
  # figure of bench/stopping.exs, not a test.
  use ExUnit.Case, async: false

  alias Wasmex.{Engine, EngineConfig, Host}
  alias Wasmex.Test.Await

  # `sleep(ms)` waits in WASI's poll_oneoff; `answer()` returns 42.
  @sleeper_path Path.expand("../../fixtures/wasi_sleeper.wat", __DIR__)
  @external_resource @sleeper_path
  @sleeper File.read!(@sleeper_path)

  # Its start function sleeps for a minute.
  @sleeping_start String.replace(
                    @sleeper,
                    "(func (export \"answer\")",
                    "(func $start (drop (call $sleep (i64.const 60000)))) (start $start)\n  (func (export \"answer\")"
                  )

  defp ms_since(t0), do: System.monotonic_time(:millisecond) - t0
  defp now, do: System.monotonic_time(:millisecond)

  describe "call_function/4 on a program sleeping in WASI" do
    test "returns at its deadline, and the store answers the next call at once" do
      {:ok, pid} = Wasmex.start_link(%{bytes: @sleeper, wasi: true})
      t0 = now()
      assert {:error, reason} = Wasmex.call_function(pid, "sleep", [60_000], 200)
      assert reason =~ "timed out"
      assert ms_since(t0) < 2_000

      t1 = now()
      assert Wasmex.call_function(pid, "answer", [], 1_000) == {:ok, [42]}
      assert ms_since(t1) < 1_000
    end

    test "stops when its caller dies, and the store answers the next call at once" do
      {:ok, pid} = Wasmex.start_link(%{bytes: @sleeper, wasi: true})
      caller = spawn(fn -> Wasmex.call_function(pid, "sleep", [60_000], :infinity) end)
      ref = Process.monitor(caller)
      Await.waiting_for_answer(caller)
      # The sleep has begun once a call queued behind it waits.
      behind = Task.async(fn -> Wasmex.call_function(pid, "answer", [], 5_000) end)
      assert Task.yield(behind, 100) == nil
      t0 = now()
      Process.exit(caller, :kill)
      assert_receive {:DOWN, ^ref, :process, _, :killed}
      assert Task.await(behind) == {:ok, [42]}
      assert ms_since(t0) < 1_000
    end

    test "returns a sleep that ends before the deadline normally" do
      {:ok, pid} = Wasmex.start_link(%{bytes: @sleeper, wasi: true})
      assert Wasmex.call_function(pid, "sleep", [5], 1_000) == {:ok, [0]}
    end
  end

  describe "start_link/1 with a start function sleeping in WASI" do
    test "returns {:error, _} within the instantiation timeout (5 s)" do
      {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{})
      {:ok, module} = Wasmex.Module.compile(store, @sleeping_start)
      t0 = now()
      assert {:error, reason} = Wasmex.start_link(%{store: store, module: module})
      assert reason =~ "timed out"
      assert ms_since(t0) < 5_500
      # The store is free at once: the sleep was dropped, not waited out.
      {:ok, module} = Wasmex.Module.compile(store, @sleeper)
      assert {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "answer", [], 1_000) == {:ok, [42]}
    end
  end

  describe "the port after 1,000 instances blocked in WASI sleeps are stopped" do
    @tag timeout: 120_000
    test "has as many threads and fds as before, and about the same memory" do
      {:ok, engine} = Engine.new(%EngineConfig{}, instance_slots: 1_100)
      {:ok, store0} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
      {:ok, module} = Wasmex.Module.compile(store0, @sleeper)

      pids =
        for _ <- 1..1_000 do
          {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
          {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
          pid
        end

      os_pid = Host.os_pid(store0.host)
      # Every instance has run once, so what a call needs is in place.
      for pid <- pids, do: {:ok, [42]} = Wasmex.call_function(pid, "answer", [])
      before = usage(os_pid)

      callers =
        for pid <- pids do
          spawn(fn -> Wasmex.call_function(pid, "sleep", [600_000], :infinity) end)
        end

      Enum.each(callers, &Await.waiting_for_answer/1)
      # All 1,000 are blocked once one more call on the last waits behind its sleep.
      behind = Task.async(fn -> Wasmex.call_function(List.last(pids), "answer", [], 60_000) end)
      assert Task.yield(behind, 200) == nil

      Enum.each(callers, &Process.exit(&1, :kill))
      assert Task.await(behind, 60_000) == {:ok, [42]}
      Enum.each(pids, &GenServer.stop/1)

      after_stop = settled(os_pid, before, now() + 30_000)
      assert after_stop.threads <= before.threads
      assert after_stop.fds == before.fds
      assert after_stop.rss_kb - before.rss_kb < 20_000
    end
  end

  # The port's threads. A thread may end between the listing and the read: it then
  # counts no more.
  defp threads(os_pid) do
    for tid <- File.ls!("/proc/#{os_pid}/task"),
        {:ok, _name} <- [File.read("/proc/#{os_pid}/task/#{tid}/comm")],
        do: tid
  end

  defp usage(os_pid) do
    status = File.read!("/proc/#{os_pid}/status")
    [_, rss] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)

    %{
      threads: length(threads(os_pid)),
      rss_kb: String.to_integer(rss),
      fds: "/proc/#{os_pid}/fd" |> File.ls!() |> length()
    }
  end

  # Usage once the port's threads are back to `before`'s count, or at `until`. Idle
  # threads end by themselves: there is nothing to wait on but their count.
  defp settled(os_pid, before, until) do
    now = usage(os_pid)

    if now.threads <= before.threads or now() > until do
      now
    else
      receive do
      after
        100 -> settled(os_pid, before, until)
      end
    end
  end
end
