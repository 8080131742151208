# Soak test of wasmex over a port (not part of the test suite).
#
#     mix run bench/soak.exs                  # 3 minutes
#     mix run bench/soak.exs --minutes 30
#
# Workers loop over instances on one shared engine and on hosts of their own, each
# iteration doing pipelined calls, synchronous calls, import callbacks that read memory
# through the caller, and memory transfers (write_binary then read_binary of 64 KiB to
# 1 MiB, checked byte for byte). One more worker keeps starting and stopping instances in
# new stores of the shared engine. Every result is checked; mismatches count as errors.
#
# Every 10 s one line: elapsed seconds, calls, callbacks, MiB transferred, instances
# started by the churn worker, errors, the BEAM's resident set and each port process's
# resident set (VmRSS from /proc). At the end: totals, rates, and the RSS growth from the
# 30 s sample to the last one. docs/soak.md has the figures of a run.

defmodule Soak do
  alias Wasmex.{Engine, EngineConfig, Host, Instance, Memory}

  @wat """
  (module
    (import "env" "peek" (func $peek (param i32 i32) (result i32)))
    (memory (export "memory") 32)
    (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "checksum") (param i32 i32) (result i32) local.get 0 local.get 1 call $peek))
  """

  @pipelined 1_000
  @sync_calls 100
  @callbacks 10
  @callback_bytes 4_096
  @min_transfer 64 * 1024
  @max_transfer 1024 * 1024

  def run(argv) do
    {opts, _} = OptionParser.parse!(argv, strict: [minutes: :float])
    minutes = Keyword.get(opts, :minutes, 3.0)
    duration_ms = round(minutes * 60_000)

    counters = :counters.new(6, [:write_concurrency])
    stop = :atomics.new(1, [])
    # Random bytes to slice transfers from (generated once: the soak measures the port).
    pool = :crypto.strong_rand_bytes(2 * @max_transfer)

    {:ok, engine} = Engine.new(%EngineConfig{})

    shared =
      for n <- 1..3 do
        {:ok, store} = Wasmex.Store.new(nil, engine)
        {:ok, module} = Wasmex.Module.compile(store, @wat)
        {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: imports()})
        {"engine#{n}", pid}
      end

    dedicated =
      for n <- 1..2 do
        {:ok, pid} = Wasmex.start_link(%{bytes: @wat, imports: imports()})
        {"dedicated#{n}", pid}
      end

    hosts =
      [{"engine", engine.host}] ++
        for {name, pid} <- dedicated, do: {name, elem(Wasmex.store(pid), 1).host}

    IO.puts(
      "# soak: #{minutes} min, #{length(shared)} instances on a shared engine, " <>
        "#{length(dedicated)} on dedicated hosts, 1 churn worker; " <>
        "#{System.schedulers_online()} schedulers, OTP #{System.otp_release()}, " <>
        "Elixir #{System.version()}"
    )

    workers =
      for {name, pid} <- shared ++ dedicated do
        Task.async(fn -> worker(name, pid, counters, stop, pool) end)
      end

    churn = Task.async(fn -> churn(engine, counters, stop) end)

    started = System.monotonic_time(:millisecond)
    samples = report(started, duration_ms, counters, hosts, [])
    :atomics.put(stop, 1, 1)
    Task.await_many([churn | workers], 120_000)
    summary(samples, counters)
  end

  defp imports do
    peek = fn %{caller: caller, memory: memory}, ptr, len ->
      case Memory.read_binary(caller, memory, ptr, len) do
        bytes when is_binary(bytes) -> :erlang.phash2(bytes)
        {:error, reason} -> raise reason
      end
    end

    %{env: %{peek: {:fn, [:i32, :i32], [:i32], peek}}}
  end

  # counters: 1 calls, 2 callbacks, 3 bytes transferred, 4 instances started, 5 errors
  defp worker(name, pid, counters, stop, pool) do
    {:ok, store} = Wasmex.store(pid)
    {:ok, memory} = Wasmex.memory(pid)
    instance = :sys.get_state(pid).instance

    loop(
      %{name: name, pid: pid, store: store, memory: memory, instance: instance},
      counters,
      stop,
      pool
    )
  end

  defp loop(w, counters, stop, pool) do
    if :atomics.get(stop, 1) == 1 do
      :ok
    else
      pipelined_calls(w, counters)
      sync_calls(w, counters)
      {offset, bytes} = transfer(w, counters, pool)
      callbacks(w, counters, offset, bytes)
      loop(w, counters, stop, pool)
    end
  end

  defp pipelined_calls(w, counters) do
    base = :rand.uniform(1_000_000)

    for i <- 1..@pipelined do
      Instance.call_exported_function(w.store, w.instance, "sum", [base, i], {:soak, i})
    end

    errors =
      Enum.count(1..@pipelined, fn _ ->
        receive do
          {:returned_function_call, result, {:soak, i}} -> result != {:ok, [base + i]}
        after
          60_000 -> true
        end
      end)

    :counters.add(counters, 1, @pipelined)
    :counters.add(counters, 5, errors)
  end

  defp sync_calls(w, counters) do
    errors =
      Enum.count(1..@sync_calls, fn i ->
        Wasmex.call_function(w.pid, "sum", [i, i]) != {:ok, [2 * i]}
      end)

    :counters.add(counters, 1, @sync_calls)
    :counters.add(counters, 5, errors)
  end

  defp transfer(w, counters, pool) do
    size = @min_transfer + :rand.uniform(@max_transfer - @min_transfer + 1) - 1
    bytes = binary_part(pool, :rand.uniform(byte_size(pool) - size + 1) - 1, size)
    offset = :rand.uniform(1024) * 8
    ok? = Memory.write_binary(w.store, w.memory, offset, bytes) == :ok
    ok? = ok? and Memory.read_binary(w.store, w.memory, offset, size) == bytes
    :counters.add(counters, 3, 2 * size)
    unless ok?, do: :counters.add(counters, 5, 1)
    {offset, bytes}
  end

  defp callbacks(w, counters, offset, bytes) do
    errors =
      Enum.count(1..@callbacks, fn _ ->
        at = :rand.uniform(byte_size(bytes) - @callback_bytes + 1) - 1
        expected = :erlang.phash2(binary_part(bytes, at, @callback_bytes))

        Wasmex.call_function(w.pid, "checksum", [offset + at, @callback_bytes]) !=
          {:ok, [expected]}
      end)

    :counters.add(counters, 2, @callbacks)
    :counters.add(counters, 5, errors)
  end

  # Instances come and go in new stores of the shared engine.
  defp churn(engine, counters, stop) do
    if :atomics.get(stop, 1) == 1 do
      :ok
    else
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, module} = Wasmex.Module.compile(store, @wat)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: imports()})
      ok? = Wasmex.call_function(pid, "sum", [20, 22]) == {:ok, [42]}
      GenServer.stop(pid)
      Wasmex.Store.release(store, self())
      :counters.add(counters, 4, 1)
      :counters.add(counters, 1, 1)
      unless ok?, do: :counters.add(counters, 5, 1)
      churn(engine, counters, stop)
    end
  end

  defp report(started, duration_ms, counters, hosts, samples) do
    next = started + 10_000 * (length(samples) + 1)
    now = System.monotonic_time(:millisecond)
    if next > now, do: Process.sleep(next - now)
    elapsed = System.monotonic_time(:millisecond) - started
    sample = sample(elapsed, counters, hosts)
    IO.puts(line(sample))
    samples = [sample | samples]

    if elapsed + 10_000 > duration_ms + 500,
      do: Enum.reverse(samples),
      else: report(started, duration_ms, counters, hosts, samples)
  end

  defp sample(elapsed, counters, hosts) do
    %{
      s: div(elapsed + 500, 1000),
      calls: :counters.get(counters, 1),
      callbacks: :counters.get(counters, 2),
      mib: :counters.get(counters, 3) / (1024 * 1024),
      instances: :counters.get(counters, 4),
      errors: :counters.get(counters, 5),
      beam: rss_mb(System.pid()),
      ports: for({name, host} <- hosts, do: {name, rss_mb(Host.os_pid(host))})
    }
  end

  defp line(s) do
    ports = Enum.map_join(s.ports, " ", fn {name, mb} -> "#{name}=#{fmt(mb)}" end)

    "t=#{s.s}s calls=#{s.calls} callbacks=#{s.callbacks} transferred_mib=#{round(s.mib)} " <>
      "instances=#{s.instances} errors=#{s.errors} beam_rss_mb=#{fmt(s.beam)} port_rss_mb: #{ports}"
  end

  defp summary(samples, counters) do
    last = List.last(samples)
    # The first sample at 30 s or later (the first one in a shorter run).
    base = Enum.find(samples, hd(samples), &(&1.s >= 30))
    secs = max(last.s, 1)

    IO.puts(
      "# totals: #{last.calls} calls (#{round(last.calls / secs)}/s), " <>
        "#{last.callbacks} callbacks (#{round(last.callbacks / secs)}/s), " <>
        "#{round(last.mib)} MiB transferred (#{fmt(last.mib / secs)} MiB/s), " <>
        "#{last.instances} instances started and stopped, " <>
        "#{:counters.get(counters, 5)} errors in #{last.s} s"
    )

    growth =
      [
        {"beam", base.beam, last.beam}
        | Enum.zip_with(base.ports, last.ports, fn {n, a}, {n, b} -> {n, a, b} end)
      ]
      |> Enum.map_join(", ", fn {name, a, b} ->
        "#{name} #{fmt(b - a)} (#{fmt(a)} -> #{fmt(b)})"
      end)

    IO.puts("# rss growth in MB from t=#{base.s}s to t=#{last.s}s: #{growth}")
  end

  defp rss_mb(os_pid) do
    case File.read("/proc/#{os_pid}/status") do
      {:ok, status} ->
        [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
        String.to_integer(kb) / 1024

      {:error, _} ->
        0.0
    end
  end

  defp fmt(x), do: :erlang.float_to_binary(x / 1, decimals: 1)
end

Soak.run(System.argv())
