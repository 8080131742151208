# Groups of figures about starting: `start_link` on a shared engine and in a fresh host,
# compiling, a pure Wasm loop, and an idle host's memory. Loaded by bench/run.exs.

defmodule Bench.Starts do
  @moduledoc false
  import Bench.{Setup, Stats}
  alias Bench.{Out, Wasm}

  @doc false
  def start_link(cfg) do
    {m, rounds} = start_link_median(cfg, shared_engine())
    Out.figure("start_link_shared_engine", m, "us")
    Out.fact("start_link_shared_engine_rounds", Enum.map_join(rounds, " ", &Out.fmt/1))
    ratio("start_link_shared_engine", m, :start_link_shared_engine)

    # The same without instance slots (each instance's memory mapped on its own).
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, instance_slots: false)
    {m, _} = start_link_median(cfg, engine)
    Out.figure("start_link_shared_engine_without_instance_slots", m, "us")
    ratio("start_link_shared_engine_without_instance_slots", m, :start_link_shared_engine)

    fresh_host_start_link(cfg)
  end

  # Runs `fun` over and over for `ms` milliseconds: a warm-up by time, for `start_link`,
  # whose first few hundred milliseconds on a new engine (threads starting, the port's
  # main thread finding the BEAM's CPU) have slow episodes of their own.
  defp warm_up_for(ms, fun) do
    until = now() + System.convert_time_unit(ms, :millisecond, :native)
    Stream.repeatedly(fun) |> Enum.find(fn _ -> now() > until end)
  end

  # Median of start_link/1 from a compiled module on `engine` (stopped afterwards).
  defp start_link_median(cfg, engine) do
    {:ok, store0} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store0, Wasm.sum_module())

    one_round = fn n ->
      {:ok, store} = Wasmex.Store.new(nil, engine)

      {times, pids} =
        for _ <- 1..n do
          t0 = now()
          {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
          {us(now() - t0), pid}
        end
        |> Enum.unzip()

      stop_all(pids)
      Wasmex.Store.release(store, self())
      median(times)
    end

    warm_up_for(cfg.start_warmup_ms, fn -> one_round.(cfg.start_n) end)

    rounds = for _ <- 1..cfg.start_rounds, do: one_round.(cfg.start_n)
    stop_engine(engine)
    {median(rounds), rounds}
  end

  defp fresh_host_start_link(cfg) do
    fresh = fn ->
      t0 = now()
      {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.small_wat()})
      t = ms(now() - t0)
      stop_all([pid])
      t
    end

    for _ <- 1..3, do: fresh.()

    # A fresh host is a new OS process: a warm spare is kept for the next start and
    # refilled shortly after it is taken. Starts spaced out find it ready (the usual case);
    # back-to-back starts outrun the refill and start their own port.
    spaced = fn ->
      Process.sleep(30)
      fresh.()
    end

    per_round =
      for _ <- 1..cfg.rounds do
        median(for _ <- 1..cfg.fresh_n, do: spaced.())
      end

    Out.figure("start_link_fresh_host", median(per_round), "ms")

    per_round =
      for _ <- 1..cfg.rounds do
        median(for _ <- 1..cfg.fresh_n, do: fresh.())
      end

    Out.figure("start_link_fresh_host_back_to_back", median(per_round), "ms")

    # Its parts: starting the port process (hello and init) alone.
    host_start = fn ->
      t0 = now()
      {:ok, e} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      t = ms(now() - t0)
      stop_engine(e)
      t
    end

    host_start.()
    m = median(for _ <- 1..(cfg.rounds * cfg.fresh_n), do: host_start.())
    Out.figure("start_link_fresh_host_part_port_start", m, "ms")
  end

  @doc false
  def compile(cfg) do
    bytes = Wasm.big_module()
    Out.figure("compile_module_size", byte_size(bytes) / 1_000_000, "MB")
    cache = Process.get(:cache_dir)

    compile_in_new_host = fn ->
      {:ok, store} = Wasmex.Store.new()
      t0 = now()
      {:ok, _module} = Wasmex.Module.compile(store, bytes)
      t = s(now() - t0)
      GenServer.stop(store.host, :normal, 30_000)
      t
    end

    # The first round (cold, then warm) is a warm-up and is dropped.
    {cold, warm} =
      for _ <- 0..cfg.compile_rounds do
        File.rm_rf!(cache)
        cold = compile_in_new_host.()
        warm = compile_in_new_host.()
        {cold, warm}
      end
      |> Enum.drop(1)
      |> Enum.unzip()

    cold = median(cold)
    warm = median(warm)
    Out.figure("compile_2_5mb", cold, "s")
    ratio("compile_2_5mb", cold, :compile_2_5mb)
    Out.figure("compile_2_5mb_again_new_host", warm, "s")
    Out.figure("compile_2_5mb_again_new_host_share_of_first", 100 * warm / cold, "%")
  end

  @doc false
  def cpu_loop(cfg) do
    for level <- [:none, :speed] do
      engine = shared_engine(%Wasmex.EngineConfig{cranelift_opt_level: level})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.loop_wat(), store: store})
      n = 100_000_000
      run = fn -> {:ok, [^n]} = Wasmex.call_function(pid, "count", [n], 120_000) end
      run.()
      m = median(for _ <- 1..cfg.loop_rounds, do: ms(time(run)))
      Out.figure("cpu_loop_100m_#{level}", m, "ms")
      ratio("cpu_loop_100m_#{level}", m, :"cpu_loop_#{level}")
      if level == :none, do: two_loops_at_once(cfg, engine)
      stop_all([pid])
      stop_engine(engine)
    end

    # The same engine setting on code that optimisation changes.
    for level <- [:none, :speed, :speed_and_size] do
      engine = shared_engine(%Wasmex.EngineConfig{cranelift_opt_level: level})
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.optimizable_wat(), store: store})
      run = fn -> {:ok, [_]} = Wasmex.call_function(pid, "work", [100_000_000, 3, 4], 120_000) end
      run.()

      Out.figure(
        "cpu_optimizable_100m_#{level}",
        median(for _ <- 1..cfg.loop_rounds, do: ms(time(run))),
        "ms"
      )

      stop_all([pid])
      stop_engine(engine)
    end
  end

  # The same loop in two stores of one engine at once: a store whose call computes moves
  # to a runtime with a thread per CPU, so on two CPUs both take about as long as one.
  # The machine's speed drifts within seconds, so each round times one loop alone and then
  # two at once, and the share is the median of the rounds' ratios.
  defp two_loops_at_once(cfg, engine) do
    pids =
      for _ <- 1..2 do
        {:ok, store} = Wasmex.Store.new(nil, engine)
        {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.loop_wat(), store: store})
        pid
      end

    n = 100_000_000
    call = fn pid -> Task.async(fn -> Wasmex.call_function(pid, "count", [n], 120_000) end) end
    alone = fn -> [{:ok, [^n]}] = Task.await_many([call.(hd(pids))], 120_000) end

    both = fn ->
      [{:ok, [^n]}, {:ok, [^n]}] = pids |> Enum.map(call) |> Task.await_many(120_000)
    end

    rounds =
      for _ <- 1..cfg.loop_rounds do
        one = ms(time(alone))
        {one, ms(time(both))}
      end

    Out.figure(
      "cpu_loop_100m_none_two_stores_at_once",
      median(Enum.map(rounds, &elem(&1, 1))),
      "ms"
    )

    Out.figure(
      "cpu_loop_100m_none_two_stores_at_once_share_of_one",
      median(Enum.map(rounds, fn {one, two} -> two / one end)),
      "x"
    )

    stop_all(pids)
  end

  @doc false
  def idle_host_rss(cfg) do
    bare =
      for _ <- 1..cfg.rss_rounds do
        engine = shared_engine()
        Process.sleep(300)
        rss = rss_mb(Wasmex.Host.os_pid(engine.host))
        stop_engine(engine)
        rss
      end

    Out.figure("idle_host_rss", median(bare), "MB")

    with_instance =
      for _ <- 1..cfg.rss_rounds do
        {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.sum_module()})
        sum!(pid)
        {:ok, store} = Wasmex.store(pid)
        Process.sleep(300)
        rss = rss_mb(Wasmex.Host.os_pid(store.host))
        stop_all([pid])
        rss
      end

    Out.figure("idle_host_rss_with_instance", median(with_instance), "MB")
  end
end
