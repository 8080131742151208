# Figures of stopping: a call stopped while its program sleeps in WASI, a start function
# that sleeps, and the port after 1,000 blocked instances are stopped. Loaded by
# bench/run.exs (group `stopping`); also runs alone:
#
#     mix run bench/stopping.exs [--quick]

defmodule Bench.Stopping do
  @moduledoc false

  # `sleep(ms)` waits in WASI's poll_oneoff; `answer()` returns 42.
  @sleeper File.read!(Path.expand("../test/fixtures/wasi_sleeper.wat", __DIR__))

  @sleeping_start String.replace(
                    @sleeper,
                    "(func (export \"answer\")",
                    "(func $start (drop (call $sleep (i64.const 60000)))) (start $start)\n  (func (export \"answer\")"
                  )

  defp now_us, do: System.monotonic_time(:microsecond)

  defp median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  @doc """
  A call sleeping for a minute with a 200 ms timeout: how long past its deadline it
  returned, and how long the next call on the store then took (medians).
  """
  def sleep_stopped(rounds) do
    {:ok, pid} = Wasmex.start_link(%{bytes: @sleeper, wasi: true})

    samples =
      for _ <- 1..rounds do
        t0 = now_us()
        {:error, "timed out" <> _} = Wasmex.call_function(pid, "sleep", [60_000], 200)
        t1 = now_us()
        {:ok, [42]} = Wasmex.call_function(pid, "answer", [], 1_000)
        {(t1 - t0) / 1000 - 200, now_us() - t1}
      end

    GenServer.stop(pid)
    {median(Enum.map(samples, &elem(&1, 0))), median(Enum.map(samples, &elem(&1, 1)))}
  end

  # `fill_loop()` asks WASI for 64 MiB of random bytes over and over.
  @random_loop """
  (module
    (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
    (memory (export "memory") 1025)
    (func (export "fill_loop")
      (loop (drop (call $random_get (i32.const 0) (i32.const 67108864))) (br 0))))
  """

  @doc """
  A call looping on 64 MiB `random_get`s with a 200 ms timeout, beside a store of the same
  engine called every 5 ms: how long past its deadline the loop returned, and the longest
  the other store's call took meanwhile (medians over the rounds).
  """
  def random_loop_stopped(rounds) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
    {:ok, looping} = Wasmex.start_link(%{bytes: @random_loop, store: store})
    {:ok, other} = Wasmex.Store.new(nil, engine)
    answer = ~s{(module (func (export "answer") (result i32) i32.const 42))}
    {:ok, summing} = Wasmex.start_link(%{bytes: answer, store: other})

    samples =
      for _ <- 1..rounds do
        t0 = now_us()
        loop = Task.async(fn -> Wasmex.call_function(looping, "fill_loop", [], 200) end)

        waits =
          Stream.repeatedly(fn ->
            t = now_us()
            {:ok, [42]} = Wasmex.call_function(summing, "answer", [], 1_000)
            Process.sleep(5)
            now_us() - t - 5_000
          end)
          |> Enum.take(30)

        {:error, "timed out" <> _} = Task.await(loop, 5_000)
        {(now_us() - t0) / 1000 - 200, Enum.max(waits) / 1000}
      end

    Enum.each([looping, summing], &GenServer.stop/1)
    GenServer.stop(engine.host)
    {median(Enum.map(samples, &elem(&1, 0))), median(Enum.map(samples, &elem(&1, 1)))}
  end

  @doc "`start_link/1` of a module whose start function sleeps: ms until `{:error, _}`."
  def sleeping_start do
    {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{})
    {:ok, module} = Wasmex.Module.compile(store, @sleeping_start)
    t0 = now_us()
    {:error, _} = Wasmex.start_link(%{store: store, module: module})
    (now_us() - t0) / 1000
  end

  @doc """
  The port's threads, fds and resident memory before `n` instances block in WASI sleeps
  and after they are stopped.
  """
  def blocked(n) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, instance_slots: n + 100)
    {:ok, store0} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
    {:ok, module} = Wasmex.Module.compile(store0, @sleeper)
    os_pid = Wasmex.Host.os_pid(engine.host)

    pids =
      for _ <- 1..n do
        {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{}, nil, engine)
        {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
        {:ok, [42]} = Wasmex.call_function(pid, "answer", [])
        pid
      end

    before = usage(os_pid)
    callers = for pid <- pids, do: spawn(fn -> Wasmex.call_function(pid, "sleep", [600_000]) end)
    # All are blocked once a call queued behind the last one's sleep waits.
    behind = Task.async(fn -> Wasmex.call_function(List.last(pids), "answer", [], 60_000) end)
    nil = Task.yield(behind, 200)
    blocked = usage(os_pid)
    Enum.each(callers, &Process.exit(&1, :kill))
    {:ok, [42]} = Task.await(behind, 60_000)
    Enum.each(pids, &GenServer.stop/1)
    after_stop = settle(os_pid, before, 30)
    GenServer.stop(engine.host)
    {before, blocked, after_stop}
  end

  # Dropped stores free their slots a moment after the BEAM lets go: the usage once it
  # stops falling (at most `tries` looks, 100 ms apart).
  defp settle(os_pid, before, tries) do
    now = usage(os_pid)

    if tries == 0 or (now.threads <= before.threads and now.fds <= before.fds) do
      now
    else
      Process.sleep(100)
      settle(os_pid, before, tries - 1)
    end
  end

  defp usage(os_pid) do
    [_, rss] = Regex.run(~r/VmRSS:\s+(\d+) kB/, File.read!("/proc/#{os_pid}/status"))

    %{
      threads: length(File.ls!("/proc/#{os_pid}/task")),
      fds: length(File.ls!("/proc/#{os_pid}/fd")),
      rss_mb: String.to_integer(rss) / 1024
    }
  end

  @doc "Prints the figures as `name value unit` lines through `line`."
  def run(quick, line) do
    {past, next_us} = sleep_stopped(if quick, do: 5, else: 15)
    line.("stopped_wasi_sleep_past_deadline #{Float.round(past, 1)} ms")
    line.("stopped_wasi_sleep_next_call #{next_us} us")
    {past, other_ms} = random_loop_stopped(if quick, do: 3, else: 7)
    line.("stopped_random_get_loop_past_deadline #{Float.round(past, 1)} ms")
    line.("random_get_loop_other_store_longest_call #{Float.round(other_ms, 1)} ms")
    line.("sleeping_start_function_start_link_error #{Float.round(sleeping_start(), 1)} ms")
    n = if quick, do: 200, else: 1_000
    {before, blocked, after_stop} = blocked(n)

    for {name, u} <- [before: before, blocked: blocked, after_stop: after_stop] do
      line.("blocked_#{n}_#{name}_threads #{u.threads} threads")
      line.("blocked_#{n}_#{name}_fds #{u.fds} fds")
      line.("blocked_#{n}_#{name}_rss #{Float.round(u.rss_mb, 1)} MB")
    end
  end
end

if Process.get(:bench_stopping_loaded_by_run) != true do
  {opts, _, _} = OptionParser.parse(System.argv(), strict: [quick: :boolean])
  Bench.Stopping.run(opts[:quick] || false, &IO.puts/1)
end
