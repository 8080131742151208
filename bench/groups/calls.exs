# Groups of figures about calls: the hops of one call, latency, CPU per call, throughput,
# callbacks, memory transfers and the bare port's round trip. Loaded by bench/run.exs.

defmodule Bench.Calls do
  @moduledoc false
  import Bench.{Setup, Stats}
  alias Bench.{BarePort, Out, Wasm}

  # Where the time of one call goes: each step adds one hop to the previous one.
  def hops(cfg) do
    {:ok, echo} = GenServer.start_link(Bench.Echo, nil)
    {port, _} = BarePort.open()
    # The port driven by this process alone: a request served by a store's thread, and a
    # real call of `sum`.
    {store_id, instance_id} = BarePort.instance(port, Wasm.sum_module())
    fuel = :erlang.term_to_binary({9, :fuel_get, {store_id}})
    call = :erlang.term_to_binary({9, :call, {store_id, instance_id, "sum", [1, 2], 5000}})

    engine = shared_engine()
    [pid] = instances_on_engine(engine, Wasm.sum_module(), 1)
    {:ok, store} = Wasmex.store(pid)
    host = store.host
    instance = :sys.get_state(pid).instance

    direct = fn ->
      ref = make_ref()
      Wasmex.Instance.call_exported_function(store, instance, "sum", [1, 2], ref)

      receive do
        {:returned_function_call, {:ok, [3]}, ^ref} -> :ok
      end
    end

    # Each step adds a hop to an earlier one. They run interleaved, round by round, so
    # that load from other processes on the machine falls on all of them alike.
    steps = [
      {"hop_beam_genserver_call", fn -> :pong = GenServer.call(echo, :ping) end},
      {"hop_bare_port", fn -> BarePort.request(port) end},
      {"hop_bare_port_store_thread", fn -> BarePort.request(port, fuel, 9) end},
      {"hop_bare_port_call", fn -> {:ok, [3]} = BarePort.request(port, call, 9) end},
      {"hop_host_server_reader_thread",
       fn -> {:error, _} = Wasmex.Host.request(host, :fuel_get, {999_999}) end},
      {"hop_host_server_store_thread",
       fn -> Wasmex.Host.request(host, :fuel_get, {store.store_id}) end},
      {"hop_instance_call_without_server", direct},
      {"hop_call_function", fn -> sum!(pid) end}
    ]

    for {_, fun} <- steps, _ <- 1..cfg.warmup, do: fun.()

    medians =
      for _ <- 1..cfg.rounds do
        for {name, fun} <- steps do
          {name, median(for _ <- 1..cfg.lat_n, do: us(time(fun)))}
        end
      end
      |> List.flatten()
      |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))

    for {name, _} <- steps, do: Out.figure("#{name}_median", median(medians[name]), "us")

    BarePort.pipelined(port, call, 64, div(cfg.bare_n, 4))
    tput = median(for _ <- 1..cfg.rounds, do: BarePort.pipelined(port, call, 64, cfg.bare_n))
    Out.figure("hop_bare_port_call_pipelined_64", tput, "calls/s")

    Port.close(port)
    GenServer.stop(echo)
    stop_all([pid])
    stop_engine(engine)
  end

  @doc false
  def call_latency(cfg) do
    with_sum_instance(fn pid ->
      {m, samples} = latency(fn -> sum!(pid) end, cfg.rounds, cfg.lat_n, cfg.warmup)
      Out.figure("call_latency_sum_median", m, "us")
      Out.figure("call_latency_sum_p99", percentile(samples, 99), "us")
      ratio("call_latency", m, :call_latency)
    end)

    # The same through an instance with a host of its own.
    {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.sum_module()})
    {m, _} = latency(fn -> sum!(pid) end, cfg.rounds, cfg.lat_n, cfg.warmup)
    Out.figure("call_latency_sum_own_host_median", m, "us")
    stop_all([pid])
  end

  @doc """
  CPU (BEAM and port, user + system, from /proc) per call while one caller makes 500
  calls a second, each at its due time: what a moderately busy service pays per call,
  idle gaps included (threads that spin or wake for nothing show up here).
  """
  def cpu_per_call_steady(cfg) do
    with_sum_instance(fn pid ->
      for _ <- 1..cfg.warmup, do: sum!(pid)
      rate = 500
      seconds = if cfg.rounds > 3, do: 6, else: 2
      calls = rate * seconds
      os_pids = [System.pid(), host_os_pid(pid)]
      cpu0 = cpu_s(os_pids)
      switches0 = Enum.map(os_pids, &Bench.Threads.switches/1)
      t0 = now()
      step = System.convert_time_unit(1, :second, :native) |> div(rate)

      for i <- 1..calls do
        due = t0 + i * step
        wait = System.convert_time_unit(due - now(), :native, :millisecond)
        if wait > 0, do: receive(after: (wait -> :ok))
        sum!(pid)
      end

      cpu = cpu_s(os_pids) - cpu0

      [beam_switches, port_switches] =
        Enum.zip_with(os_pids, switches0, &(Bench.Threads.switches(&1) - &2))

      Out.figure("cpu_per_call_at_500_per_s", cpu * 1_000_000 / calls, "us")
      # Thread wake-ups per call, each side: a count, steadier than CPU time on a busy VM.
      Out.figure("cpu_per_call_at_500_per_s.beam_switches", beam_switches / calls, "per call")
      Out.figure("cpu_per_call_at_500_per_s.port_switches", port_switches / calls, "per call")
    end)
  end

  @doc false
  def throughput_instances(cfg) do
    bytes = Wasm.sum_module()

    for n <- [2, 8, 32] do
      engine = shared_engine()
      pids = instances_on_engine(engine, bytes, n)
      throughput_figures("throughput_#{n}_instances_shared_engine", pids, n, cfg)
      stop_all(pids)
      stop_engine(engine)

      pids = instances_own_hosts(bytes, n)
      throughput_figures("throughput_#{n}_instances_own_hosts", pids, n, cfg)
      stop_all(pids)
    end
  end

  # Throughput of `n` callers over `pids`, its CPU per call and its ratio to the NIF's.
  defp throughput_figures(name, pids, n, cfg) do
    {tput, errors, cpu} = throughput_rounds(pids, n, cfg)
    Out.figure(name, tput, "calls/s")
    cpu_figures(name, cpu)
    ratio(name, tput, :"throughput_#{n}")
    if errors > 0, do: Out.figure("#{name}_errors", errors, "")
  end

  # CPU per call of the BEAM and the ports together, and of the BEAM alone (the kernel
  # shares the CPUs between the two: see docs/decisions.md, 2026-11-22).
  defp cpu_figures(name, {cpu, beam}) do
    Out.figure("#{name}_cpu_per_call", cpu, "us")
    Out.figure("#{name}_cpu_per_call_beam", beam, "us")
  end

  @doc false
  def throughput_1_instance_64_callers(cfg) do
    with_sum_instance(fn pid ->
      {tput, errors, cpu} = throughput_rounds([pid], 64, cfg)
      Out.figure("throughput_1_instance_64_callers", tput, "calls/s")
      cpu_figures("throughput_1_instance_64_callers", cpu)
      if errors > 0, do: Out.figure("throughput_1_instance_64_callers_errors", errors, "")
    end)
  end

  @doc false
  def callback(cfg) do
    imports = %{env: %{cb: {:fn, [:i32], [:i32], fn _context, x -> x + 1 end}}}
    engine = shared_engine()
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, pid} = Wasmex.start_link(%{bytes: Wasm.callback_wat(), store: store, imports: imports})

    {m, _} =
      latency(
        fn -> {:ok, [8]} = Wasmex.call_function(pid, "once", [7]) end,
        cfg.rounds,
        div(cfg.lat_n, 2),
        div(cfg.warmup, 2)
      )

    Out.figure("callback_roundtrip", m, "us")
    ratio("callback_roundtrip", m, :callback_roundtrip)

    n = cfg.loop_callbacks
    expected = div(n * (n + 1), 2)
    {:ok, [^expected]} = Wasmex.call_function(pid, "many", [n], 60_000)

    per =
      for _ <- 1..cfg.rounds do
        us(time(fn -> {:ok, [^expected]} = Wasmex.call_function(pid, "many", [n], 60_000) end)) /
          n
      end

    Out.figure("callback_in_loop", median(per), "us/callback")
    ratio("callback_in_loop", median(per), :callback_in_loop)
    stop_all([pid])
    stop_engine(engine)
  end

  @doc false
  def memory(cfg) do
    with_sum_instance(fn pid ->
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      size = 1_048_576
      data = :crypto.strong_rand_bytes(size)

      write = fn -> :ok = Wasmex.Memory.write_binary(store, memory, 0, data) end
      read = fn -> ^size = byte_size(Wasmex.Memory.read_binary(store, memory, 0, size)) end

      {w, _} = latency(write, cfg.rounds, cfg.mem_n, 5)
      {r, _} = latency(read, cfg.rounds, cfg.mem_n, 5)
      ^data = Wasmex.Memory.read_binary(store, memory, 0, size)

      read_gbs = size / (r * 1_000)
      write_gbs = size / (w * 1_000)
      Out.figure("memory_read_1mib", read_gbs, "GB/s")
      Out.figure("memory_read_1mib_time", r, "us")
      ratio("memory_read_1mib", read_gbs, :memory_read_1mib)
      Out.figure("memory_write_1mib", write_gbs, "GB/s")
      Out.figure("memory_write_1mib_time", w, "us")
      ratio("memory_write_1mib", write_gbs, :memory_write_1mib)
    end)
  end

  @doc false
  def bare_port_roundtrip(cfg) do
    {port, _} = BarePort.open()
    {m, _} = latency(fn -> BarePort.request(port) end, cfg.rounds, cfg.lat_n, cfg.warmup)
    Out.figure("bare_port_roundtrip_median", m, "us")

    fuel = :erlang.term_to_binary({0, :fuel_get, {999}})
    BarePort.pipelined(port, fuel, 64, div(cfg.bare_n, 4))
    tput = median(for _ <- 1..cfg.rounds, do: BarePort.pipelined(port, fuel, 64, cfg.bare_n))

    Out.figure("bare_port_roundtrip_pipelined_64", tput, "roundtrips/s")
    Port.close(port)
  end
end
