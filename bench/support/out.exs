# How the benchmark prints figures (`Bench.Out`) and the statistics and timing it takes
# them with (`Bench.Stats`). Loaded by bench/run.exs.

defmodule Bench.Out do
  @moduledoc false
  # Prints lines and appends them to the results file as they come, so a run that
  # crashes half way still leaves what it measured.

  def start(path) do
    File.mkdir_p!(Path.dirname(path))
    :persistent_term.put({__MODULE__, :path}, path)
  end

  def line(text) do
    IO.puts(text)
    File.write!(:persistent_term.get({__MODULE__, :path}), [text, "\n"], [:append])
  end

  def fact(key, value), do: line("# #{key} #{value}")

  def figure(name, value, unit), do: line("#{name} #{fmt(value)} #{unit}")

  def fmt(v) when is_integer(v), do: Integer.to_string(v)
  def fmt(v) when is_float(v) and abs(v) >= 1000, do: v |> round() |> Integer.to_string()
  def fmt(v) when is_float(v) and abs(v) >= 100, do: :erlang.float_to_binary(v, decimals: 1)
  def fmt(v) when is_float(v) and abs(v) >= 10, do: :erlang.float_to_binary(v, decimals: 2)
  def fmt(v) when is_float(v) and abs(v) >= 1, do: :erlang.float_to_binary(v, decimals: 3)
  def fmt(v) when is_float(v), do: :erlang.float_to_binary(v, decimals: 4)
  def fmt(v), do: to_string(v)
end

defmodule Bench.Stats do
  @moduledoc false

  def median([]), do: nil

  def median(list) do
    sorted = Enum.sort(list)
    n = length(sorted)
    mid = div(n, 2)

    if rem(n, 2) == 1,
      do: Enum.at(sorted, mid),
      else: (Enum.at(sorted, mid - 1) + Enum.at(sorted, mid)) / 2
  end

  def percentile(list, p) do
    sorted = Enum.sort(list)
    Enum.at(sorted, min(length(sorted) - 1, round(p / 100 * (length(sorted) - 1))))
  end

  def now, do: :erlang.monotonic_time()
  def ns(native), do: System.convert_time_unit(native, :native, :nanosecond)
  def us(native), do: ns(native) / 1_000
  def ms(native), do: ns(native) / 1_000_000
  def s(native), do: ns(native) / 1_000_000_000

  @doc "Runs `fun` and returns its duration in native units (and drops its result)."
  def time(fun) do
    t0 = now()
    fun.()
    now() - t0
  end

  @doc """
  Per-operation latencies in µs: `warmup` untimed calls, then `rounds` rounds of `n` timed
  calls. Returns the median of the rounds' medians and every sample (for percentiles).
  """
  def latency(fun, rounds, n, warmup) do
    for _ <- 1..warmup, do: fun.()

    per_round =
      for _ <- 1..rounds do
        for _ <- 1..n, do: us(time(fun))
      end

    {median(Enum.map(per_round, &median/1)), List.flatten(per_round)}
  end

  @doc """
  CPU time (user + system, all threads) used so far by the given OS processes, in
  seconds. Processes that are gone count 0.
  """
  def cpu_s(os_pids) do
    ticks =
      Enum.sum(
        for pid <- os_pids do
          case File.read("/proc/#{pid}/stat") do
            {:ok, stat} ->
              # Fields after the command name, which is in parentheses and may hold spaces.
              [_, rest] = String.split(stat, ") ", parts: 2)
              fields = String.split(rest)
              String.to_integer(Enum.at(fields, 11)) + String.to_integer(Enum.at(fields, 12))

            _ ->
              0
          end
        end
      )

    ticks / 100
  end

  def rss_mb(os_pid) do
    case File.read("/proc/#{os_pid}/status") do
      {:ok, status} ->
        [_, kb] = Regex.run(~r/VmRSS:\s+(\d+)\s+kB/, status)
        String.to_integer(kb) / 1024

      _ ->
        nil
    end
  end
end
