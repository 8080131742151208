# What the benchmark's groups share: the NIF's reference figures, engines and instances to
# measure, and the throughput loop. Loaded by bench/run.exs.

defmodule Bench.Setup do
  @moduledoc false
  import Bench.Stats
  alias Bench.Out

  # NIF (Wasmex 0.9.1) reference figures, measured on this machine type.
  @nif %{
    call_latency: 38.6,
    throughput_2: 22_045,
    throughput_8: 18_133,
    throughput_32: 15_944,
    callback_roundtrip: 68.9,
    callback_in_loop: 18.6,
    memory_read_1mib: 2.0,
    memory_write_1mib: 47.0,
    start_link_shared_engine: 18.5,
    compile_2_5mb: 1.07,
    cpu_loop_none: 218.0,
    cpu_loop_speed: 191.0
  }

  def ratio(name, value, nif_key) do
    Out.figure("#{name}_ratio_to_nif", value / @nif[nif_key], "x")
  end

  def shared_engine(config \\ %Wasmex.EngineConfig{}) do
    {:ok, engine} = Wasmex.Engine.new(config)
    engine
  end

  def instances_on_engine(engine, bytes, n) do
    {:ok, store0} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store0, bytes)

    for _ <- 1..n do
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      pid
    end
  end

  def instances_own_hosts(bytes, n) do
    for _ <- 1..n do
      {:ok, pid} = Wasmex.start_link(%{bytes: bytes})
      pid
    end
  end

  # Runs `fun` with the pid of one instance of the `sum` module on an engine of its own;
  # both are stopped afterwards.
  def with_sum_instance(fun) do
    engine = shared_engine()
    [pid] = instances_on_engine(engine, Bench.Wasm.sum_module(), 1)

    try do
      fun.(pid)
    after
      stop_all([pid])
      stop_engine(engine)
    end
  end

  def stop_all(pids), do: Enum.each(pids, &GenServer.stop(&1, :normal, 10_000))

  def stop_engine(%Wasmex.Engine{host: host}) do
    if Process.alive?(host), do: GenServer.stop(host, :normal, 10_000)
  catch
    :exit, _ -> :ok
  end

  def sum!(pid) do
    {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
  end

  # `callers` processes, the i-th calling `targets[rem(i, length(targets))]` in a loop for
  # `duration_ms`; returns total calls per second and the error count.
  # Also returns the CPU seconds the BEAM and `os_pids` (the ports) used meanwhile.
  def throughput(targets, callers, duration_ms, os_pids) do
    parent = self()
    targets = List.to_tuple(targets)

    pids =
      for i <- 0..(callers - 1) do
        target = elem(targets, rem(i, tuple_size(targets)))

        spawn_link(fn ->
          receive do
            {:go, deadline} -> send(parent, {:done, call_until(target, deadline, 0, 0)})
          end
        end)
      end

    beam0 = cpu_s([System.pid()])
    ports0 = cpu_s(os_pids)
    t0 = now()
    deadline = t0 + System.convert_time_unit(duration_ms, :millisecond, :native)
    Enum.each(pids, &send(&1, {:go, deadline}))

    {calls, errors} =
      Enum.reduce(pids, {0, 0}, fn _, {c, e} ->
        receive do
          {:done, {c1, e1}} -> {c + c1, e + e1}
        end
      end)

    wall = s(now() - t0)
    beam = (cpu_s([System.pid()]) - beam0) * 1_000_000 / calls
    ports = (cpu_s(os_pids) - ports0) * 1_000_000 / calls
    {calls / wall, errors, beam + ports, beam}
  end

  defp call_until(target, deadline, calls, errors) do
    if now() >= deadline do
      {calls, errors}
    else
      case Wasmex.call_function(target, "sum", [1, 2]) do
        {:ok, [3]} -> call_until(target, deadline, calls + 1, errors)
        _ -> call_until(target, deadline, calls + 1, errors + 1)
      end
    end
  end

  # Returns the median calls/s, the errors, and the median CPU µs per call (BEAM and ports)
  # and of those the BEAM's.
  def throughput_rounds(targets, callers, cfg) do
    os_pids = targets |> Enum.map(&host_os_pid/1) |> Enum.uniq()
    throughput(targets, callers, min(cfg.duration_ms, 300), os_pids)

    results = for _ <- 1..cfg.rounds, do: throughput(targets, callers, cfg.duration_ms, os_pids)
    errors = results |> Enum.map(&elem(&1, 1)) |> Enum.sum()

    {median(Enum.map(results, &elem(&1, 0))), errors,
     {median(Enum.map(results, &elem(&1, 2))), median(Enum.map(results, &elem(&1, 3)))}}
  end

  def host_os_pid(pid) do
    {:ok, store} = Wasmex.store(pid)
    Wasmex.Host.os_pid(store.host)
  end
end
