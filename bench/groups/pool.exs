# The pool group: 10,000 callers on a `Wasmex.Pool`. Loaded by bench/run.exs.

defmodule Bench.PoolGroup do
  @moduledoc false
  import Bench.{Setup, Stats}
  alias Bench.{Out, Wasm}

  @doc false
  def pool_10000_callers(cfg) do
    n_callers = 10_000
    pool = 16
    engine = shared_engine()
    pids = instances_on_engine(engine, Wasm.sum_module(), pool) |> List.to_tuple()
    port_pid = Wasmex.Host.os_pid(engine.host)
    Enum.each(Tuple.to_list(pids), &sum!/1)
    :erlang.garbage_collect()
    beam_before = rss_mb(System.pid())
    port_before = rss_mb(port_pid)

    rounds =
      for _ <- 1..cfg.pool_rounds do
        parent = self()

        callers =
          for i <- 0..(n_callers - 1) do
            pid = elem(pids, rem(i, pool))

            spawn(fn ->
              receive do
                :go -> :ok
              end

              r =
                for _ <- 1..cfg.pool_calls do
                  t0 = now()

                  case Wasmex.call_function(pid, "sum", [i, 1]) do
                    {:ok, [_]} -> {:ok, us(now() - t0)}
                    {:error, "timed out" <> _} -> {:timeout, 0}
                    _ -> {:error, 0}
                  end
                end

              send(parent, {:pool_done, r})
            end)
          end

        t0 = now()
        Enum.each(callers, &send(&1, :go))

        results =
          Enum.flat_map(callers, fn _ ->
            receive do
              {:pool_done, r} -> r
            after
              120_000 -> [{:lost, 0}]
            end
          end)

        wall = ms(now() - t0)
        freq = Enum.frequencies_by(results, &elem(&1, 0))
        lat = for {:ok, t} <- results, do: t
        {wall, freq, lat}
      end

    beam_after = rss_mb(System.pid())
    port_after = rss_mb(port_pid)
    total = fn key -> rounds |> Enum.map(&Map.get(elem(&1, 1), key, 0)) |> Enum.sum() end
    lat = rounds |> Enum.flat_map(&elem(&1, 2))

    Out.figure("pool_10000_callers_instances", pool, "instances")
    Out.figure("pool_10000_callers_calls_per_caller", cfg.pool_calls, "calls")
    Out.figure("pool_10000_callers_completed", total.(:ok), "calls")
    Out.figure("pool_10000_callers_timeouts", total.(:timeout), "calls")
    Out.figure("pool_10000_callers_errors", total.(:error) + total.(:lost), "calls")
    Out.figure("pool_10000_callers_wall", median(Enum.map(rounds, &elem(&1, 0))), "ms")

    Out.figure(
      "pool_10000_callers_throughput",
      median(Enum.map(rounds, fn {w, f, _} -> Map.get(f, :ok, 0) / (w / 1000) end)),
      "calls/s"
    )

    Out.figure("pool_10000_callers_latency_p50", percentile(lat, 50), "us")
    Out.figure("pool_10000_callers_latency_p99", percentile(lat, 99), "us")
    Out.figure("pool_10000_callers_beam_rss_before", beam_before, "MB")
    Out.figure("pool_10000_callers_beam_rss_after", beam_after, "MB")
    Out.figure("pool_10000_callers_port_rss_before", port_before, "MB")
    Out.figure("pool_10000_callers_port_rss_after", port_after, "MB")
    stop_all(Tuple.to_list(pids))
    stop_engine(engine)
  end
end
