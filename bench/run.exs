# Benchmarks of wasmex over a port.
#
#     mix run bench/run.exs                      # every figure (a few minutes)
#     mix run bench/run.exs --quick              # few iterations: a smoke test (about a minute)
#     mix run bench/run.exs --only call_latency,memory
#     mix run bench/run.exs --env spin_us=0      # sets an :wasmex application variable
#     mix run bench/run.exs --help               # lists the groups --only accepts
#
# Every figure is printed as one line `name value unit`: the median of several rounds run
# after a warm-up. Machine facts come first as `# key value` lines. The whole output is
# also appended to bench/results/<timestamp>.txt. docs/performance.md describes the method
# and the results.

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

defmodule Bench.Wasm do
  @moduledoc false
  # Test modules: WAT inline, and a generator of a large .wasm binary.
  import Bitwise

  def sum_module do
    path = Path.join(File.cwd!(), "test/fixtures/wasmex_test.wasm")

    if File.exists?(path) do
      File.read!(path)
    else
      ~s{(module (memory (export "memory") 17)
           (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
    end
  end

  def small_wat, do: ~s{(module (func (export "f") (result i32) i32.const 7))}

  def callback_wat do
    ~s{(module
         (import "env" "cb" (func $cb (param i32) (result i32)))
         (func (export "once") (param i32) (result i32) (call $cb (local.get 0)))
         (func (export "many") (param $n i32) (result i32) (local $i i32) (local $acc i32)
           (block $done
             (loop $l
               (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
               (local.set $acc (i32.add (local.get $acc) (call $cb (local.get $i))))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $l)))
           (local.get $acc)))}
  end

  @doc """
  A loop whose body has loop-invariant and repeated subexpressions, which Cranelift hoists
  and shares at `:speed` but not at `:none`: the opt level shows in its time.
  """
  def optimizable_wat do
    ~s{(module
      (func (export "work") (param $n i32) (param $a i32) (param $b i32) (result i32)
        (local $acc i32) (local $i i32)
        (loop $l
          (local.set $acc (i32.add (local.get $acc)
            (i32.xor
              (i32.mul (i32.add (i32.mul (local.get $a) (local.get $b)) (i32.const 7))
                       (i32.add (i32.mul (local.get $a) (local.get $b)) (i32.const 7)))
              (i32.add (i32.mul (i32.add (local.get $a) (i32.const 3)) (i32.add (local.get $b) (i32.const 5)))
                       (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        local.get $acc))}
  end

  def loop_wat do
    ~s{(module
         (func (export "count") (param $n i32) (result i32) (local $i i32)
           (loop $l
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
           (local.get $i)))}
  end

  @doc """
  A .wasm binary of `funcs` functions `(i32, i32) -> i32` with `stmts` statements of
  integer arithmetic each (some in `if` blocks, some calling an earlier function), plus
  `salt` in a constant so that distinct salts give distinct bytes. 3000 x 68 gives about
  2.5 MB.
  """
  def big_module(funcs \\ 3000, stmts \\ 68, salt \\ 0) do
    :rand.seed(:exsss, {17, 4711, 42})
    types = vec([<<0x60>> <> vec([<<0x7F>>, <<0x7F>>]) <> vec([<<0x7F>>])])
    functions = vec(List.duplicate(uleb(0), funcs))

    exports =
      vec([name("f0") <> <<0x00>> <> uleb(0), name("last") <> <<0x00>> <> uleb(funcs - 1)])

    bodies =
      for f <- 0..(funcs - 1) do
        code =
          [<<0x41>>, sleb(salt), <<0x21, 2>>] ++
            for(_ <- 1..stmts, do: statement(f)) ++
            [<<0x20, 2, 0x20, 3, 0x6A, 0x0B>>]

        body = IO.iodata_to_binary([vec([uleb(2) <> <<0x7F>>]) | code])
        uleb(byte_size(body)) <> body
      end

    IO.iodata_to_binary([
      <<0, ?a, ?s, ?m, 1, 0, 0, 0>>,
      section(1, types),
      section(3, functions),
      section(7, exports),
      section(10, vec(bodies))
    ])
  end

  defp statement(f) do
    a = :rand.uniform(4) - 1
    b = :rand.uniform(4) - 1
    d = 1 + :rand.uniform(2)
    c = sleb(:rand.uniform(100_000) - 50_000)

    case :rand.uniform(6) do
      1 -> [<<0x20, a, 0x20, b, 0x41>>, c, <<0x6A, 0x6C, 0x21, d>>]
      2 -> [<<0x20, a, 0x41>>, c, <<0x73, 0x20, b, 0x77, 0x21, d>>]
      3 -> [<<0x20, a, 0x41>>, c, <<0x76, 0x20, b, 0x6B, 0x21, d>>]
      4 -> [<<0x20, a, 0x41>>, c, <<0x49, 0x04, 0x40, 0x20, b, 0x41, 1, 0x6A, 0x21, d, 0x0B>>]
      5 -> [<<0x20, a, 0x20, b, 0x72, 0x41>>, c, <<0x71, 0x21, d>>]
      6 when f > 0 -> [<<0x20, a, 0x20, b, 0x10>>, uleb(:rand.uniform(f) - 1), <<0x21, d>>]
      6 -> [<<0x20, a, 0x20, b, 0x6C, 0x21, d>>]
    end
  end

  defp section(id, content), do: <<id>> <> uleb(byte_size(content)) <> content
  defp vec(items), do: IO.iodata_to_binary([uleb(length(items)) | items])
  defp name(s), do: uleb(byte_size(s)) <> s

  defp uleb(n) when n < 128, do: <<n>>
  defp uleb(n), do: <<(n &&& 0x7F) ||| 0x80>> <> uleb(n >>> 7)

  defp sleb(n) do
    byte = n &&& 0x7F
    rest = n >>> 7

    if (rest == 0 and (byte &&& 0x40) == 0) or (rest == -1 and (byte &&& 0x40) != 0),
      do: <<byte>>,
      else: <<byte ||| 0x80>> <> sleb(rest)
  end
end

defmodule Bench.Echo do
  @moduledoc false
  # A do-nothing GenServer: the floor of one BEAM process round trip.
  use GenServer
  def init(state), do: {:ok, state}
  def handle_call(:ping, _from, state), do: {:reply, :pong, state}
end

# WASI output figures (small writes, a guest flooding stdout): bench/output.exs.
Process.put(:bench_output_loaded_by_run, true)
Code.require_file("output.exs", __DIR__)
# Stopping figures (a WASI sleep stopped at its deadline, 1,000 blocked instances):
# bench/stopping.exs.
Process.put(:bench_stopping_loaded_by_run, true)
Code.require_file("stopping.exs", __DIR__)
# WASI file system figures (a directory listing, a file read): bench/files.exs.
Process.put(:bench_files_loaded_by_run, true)
Code.require_file("files.exs", __DIR__)
# Context switches per operation: bench/threads.exs.
Code.require_file("threads.exs", __DIR__)
# Component figures (record call against core sum, its cost split, instantiation, an
# import round trip): bench/components.exs.
Code.require_file("components.exs", __DIR__)

defmodule Bench do
  @moduledoc false
  import Bench.Stats
  alias Bench.{Out, Wasm}

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

  @groups ~w(hops call_latency cpu_per_call_steady throughput_instances throughput_1_instance_64_callers
             callback memory start_link compile cpu_loop idle_host_rss pool_10000_callers
             bare_port_roundtrip wasi_output flood wasi_files stopping components)

  def main(argv) do
    {opts, _, _} =
      OptionParser.parse(argv,
        strict: [quick: :boolean, only: :string, help: :boolean, env: :keep]
      )

    if opts[:help] do
      IO.puts("usage: mix run bench/run.exs [--quick] [--only group,group] [--env key=value]")
      IO.puts("groups: " <> Enum.join(@groups, " "))
      IO.puts("--env sets an :wasmex application variable for the run (e.g. spin_us=0)")
      System.halt(0)
    end

    only = opts[:only] && String.split(opts[:only], ",", trim: true)
    cfg = config(opts[:quick] || false)

    stamp = DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601(:basic)
    Out.start(Path.join(File.cwd!(), "bench/results/#{stamp}.txt"))

    # A private compiled-code cache (same mechanism as the default
    # System.tmp_dir/wasmex_port_cache): the compile figures clear it, which must not
    # disturb other users of the default one.
    cache = Path.join(System.tmp_dir!(), "wasmex_port_bench_cache")
    File.rm_rf!(cache)
    Application.put_env(:wasmex, :cache_dir, cache)
    Process.put(:cache_dir, cache)

    for kv <- Keyword.get_values(opts, :env) do
      [key, value] = String.split(kv, "=", parts: 2)
      Application.put_env(:wasmex, String.to_atom(key), env_value(value))
    end

    machine(cfg)

    for group <- @groups, selected?(group, only) do
      t0 = now()
      apply(__MODULE__, String.to_atom(group), [cfg])
      Out.line("# #{group} took #{Float.round(s(now() - t0), 1)} s, loadavg #{loadavg()}")
    end

    Out.fact("loadavg_end", loadavg())
    Out.fact("busy_processes_end", busy_processes())
    Out.fact("results", Path.relative_to_cwd(:persistent_term.get({Out, :path})))
  end

  defp env_value(v) when v in ["true", "false", "nil"], do: String.to_atom(v)

  defp env_value(v) do
    case Integer.parse(v) do
      {i, ""} -> i
      _ -> v
    end
  end

  defp selected?(_group, nil), do: true

  defp selected?(group, only),
    do: Enum.any?(only, &(String.starts_with?(group, &1) or String.starts_with?(&1, group)))

  defp config(true = _quick),
    do: %{
      quick: true,
      rounds: 3,
      lat_n: 200,
      warmup: 100,
      duration_ms: 300,
      mem_n: 10,
      start_n: 10,
      start_warmup_ms: 50,
      start_rounds: 3,
      fresh_n: 5,
      compile_rounds: 1,
      loop_rounds: 2,
      rss_rounds: 2,
      pool_rounds: 1,
      pool_calls: 1,
      loop_callbacks: 200,
      bare_n: 2000
    }

  defp config(false),
    do: %{
      quick: false,
      rounds: 7,
      lat_n: 1000,
      warmup: 1000,
      duration_ms: 1500,
      mem_n: 50,
      start_n: 50,
      start_warmup_ms: 500,
      start_rounds: 25,
      fresh_n: 20,
      compile_rounds: 3,
      loop_rounds: 5,
      rss_rounds: 5,
      pool_rounds: 3,
      pool_calls: 5,
      loop_callbacks: 2000,
      bare_n: 20_000
    }

  defp autogroup do
    case File.read("/proc/self/autogroup") do
      {:ok, ""} -> "the kernel's default (init's session)"
      {:ok, group} -> String.trim(group)
      {:error, _} -> "none (no autogroups)"
    end
  end

  defp loadavg,
    do: File.read!("/proc/loadavg") |> String.split() |> Enum.take(3) |> Enum.join(" ")

  defp machine(cfg) do
    cpu =
      case Regex.run(~r/model name\s*:\s*(.*)/, File.read!("/proc/cpuinfo")) do
        [_, m] -> String.trim(m)
        _ -> "unknown"
      end

    [_, mem_kb] = Regex.run(~r/MemTotal:\s+(\d+)/, File.read!("/proc/meminfo"))
    {nproc, 0} = System.cmd("nproc", [])

    commit =
      case System.cmd("git", ["rev-parse", "--short", "HEAD"], stderr_to_stdout: true) do
        {c, 0} -> String.trim(c)
        _ -> "unknown"
      end

    {port, wasmtime} = open_bare_port()
    Port.close(port)
    exe = Application.app_dir(:wasmex, "priv/wasmex_port")

    sha =
      :crypto.hash(:sha256, File.read!(exe)) |> Base.encode16(case: :lower) |> binary_part(0, 12)

    %File.Stat{mtime: mtime, size: exe_size} = File.stat!(exe)

    Out.line("# wasmex over a port: benchmark#{if cfg.quick, do: " (--quick)", else: ""}")
    Out.fact("date", DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601())
    Out.fact("nproc", String.trim(nproc))
    Out.fact("cpu", cpu)
    Out.fact("memory", "#{Float.round(String.to_integer(mem_kb) / 1024 / 1024, 1)} GiB")

    Out.fact(
      "otp",
      "#{:erlang.system_info(:otp_release)} (erts #{:erlang.system_info(:version)})"
    )

    Out.fact("elixir", System.version())
    Out.fact("wasmtime", wasmtime)
    Out.fact("schedulers", :erlang.system_info(:schedulers_online))
    # The BEAM's session weight against the ports' (the kernel weighs each session's
    # autogroup as a whole).
    Out.fact("autogroup", autogroup())
    Out.fact("commit", "#{commit} (work tree may differ: others edit it concurrently)")

    Out.fact(
      "port_binary",
      "sha256 #{sha}, #{exe_size} bytes, built #{NaiveDateTime.from_erl!(mtime)}"
    )

    Out.fact("wasmex_env", inspect(Application.get_all_env(:wasmex) |> Enum.sort()))
    Out.fact("loadavg_start", loadavg())
    Out.fact("busy_processes_start", busy_processes())
  end

  # The processes other than this BEAM using more than 5% of a CPU over one second (other
  # engineers' builds and tests show up here: the figures are only as good as the machine
  # is quiet).
  defp busy_processes do
    case System.cmd("top", ["-b", "-n", "2", "-d", "1", "-w", "200"], stderr_to_stdout: true) do
      {out, 0} ->
        out
        |> String.split("\ntop - ")
        |> List.last()
        |> String.split("\n")
        |> Enum.drop_while(&(not String.contains?(&1, "%CPU")))
        |> Enum.drop(1)
        |> Enum.map(&String.split/1)
        |> Enum.filter(&(length(&1) >= 12))
        |> Enum.reject(fn f -> hd(f) == System.pid() end)
        |> Enum.map(fn f -> {Enum.at(f, 11), parse_float(Enum.at(f, 8))} end)
        |> Enum.filter(fn {_, cpu} -> cpu > 5 end)
        |> Enum.map_join(", ", fn {cmd, cpu} -> "#{cmd} #{round(cpu)}%" end)
        |> case do
          "" -> "none"
          list -> list
        end

      _ ->
        "unknown (no top)"
    end
  end

  defp parse_float(s) do
    case Float.parse(String.replace(s, ",", ".")) do
      {f, _} -> f
      :error -> 0.0
    end
  end

  defp ratio(name, value, nif_key) do
    Out.figure("#{name}_ratio_to_nif", value / @nif[nif_key], "x")
  end

  # -- helpers ---------------------------------------------------------------------------

  defp shared_engine(config \\ %Wasmex.EngineConfig{}) do
    {:ok, engine} = Wasmex.Engine.new(config)
    engine
  end

  defp instances_on_engine(engine, bytes, n) do
    {:ok, store0} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store0, bytes)

    for _ <- 1..n do
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      pid
    end
  end

  defp instances_own_hosts(bytes, n) do
    for _ <- 1..n do
      {:ok, pid} = Wasmex.start_link(%{bytes: bytes})
      pid
    end
  end

  defp stop_all(pids), do: Enum.each(pids, &GenServer.stop(&1, :normal, 10_000))

  defp stop_engine(%Wasmex.Engine{host: host}) do
    if Process.alive?(host), do: GenServer.stop(host, :normal, 10_000)
  catch
    :exit, _ -> :ok
  end

  defp sum!(pid) do
    {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
  end

  # `callers` processes, the i-th calling `targets[rem(i, length(targets))]` in a loop for
  # `duration_ms`; returns total calls per second and the error count.
  # Also returns the CPU seconds the BEAM and `os_pids` (the ports) used meanwhile.
  defp throughput(targets, callers, duration_ms, os_pids) do
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
  defp throughput_rounds(targets, callers, cfg) do
    os_pids = targets |> Enum.map(&host_os_pid/1) |> Enum.uniq()
    throughput(targets, callers, min(cfg.duration_ms, 300), os_pids)

    results = for _ <- 1..cfg.rounds, do: throughput(targets, callers, cfg.duration_ms, os_pids)
    errors = results |> Enum.map(&elem(&1, 1)) |> Enum.sum()

    {median(Enum.map(results, &elem(&1, 0))), errors,
     {median(Enum.map(results, &elem(&1, 2))), median(Enum.map(results, &elem(&1, 3)))}}
  end

  defp host_os_pid(pid) do
    {:ok, store} = Wasmex.store(pid)
    Wasmex.Host.os_pid(store.host)
  end

  # -- groups ----------------------------------------------------------------------------

  @doc false
  # Where the time of one call goes: each step adds one hop to the previous one.
  def hops(cfg) do
    {:ok, echo} = GenServer.start_link(Bench.Echo, nil)
    {port, _} = open_bare_port()
    # The port driven by this process alone: a request served by a store's thread, and a
    # real call of `sum`.
    {store_id, instance_id} = bare_instance(port, Wasm.sum_module())
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
      {"hop_bare_port", fn -> bare_request(port) end},
      {"hop_bare_port_store_thread", fn -> bare_request(port, fuel, 9) end},
      {"hop_bare_port_call", fn -> {:ok, [3]} = bare_request(port, call, 9) end},
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

    pipelined(port, call, 64, div(cfg.bare_n, 4))
    tput = median(for _ <- 1..cfg.rounds, do: pipelined(port, call, 64, cfg.bare_n))
    Out.figure("hop_bare_port_call_pipelined_64", tput, "calls/s")

    Port.close(port)
    GenServer.stop(echo)
    stop_all([pid])
    stop_engine(engine)
  end

  @doc false
  def call_latency(cfg) do
    engine = shared_engine()
    [pid] = instances_on_engine(engine, Wasm.sum_module(), 1)
    {m, samples} = latency(fn -> sum!(pid) end, cfg.rounds, cfg.lat_n, cfg.warmup)
    Out.figure("call_latency_sum_median", m, "us")
    Out.figure("call_latency_sum_p99", percentile(samples, 99), "us")
    ratio("call_latency", m, :call_latency)
    stop_all([pid])
    stop_engine(engine)

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
    engine = shared_engine()
    [pid] = instances_on_engine(engine, Wasm.sum_module(), 1)
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
    stop_all([pid])
    stop_engine(engine)
  end

  @doc false
  def throughput_instances(cfg) do
    bytes = Wasm.sum_module()

    for n <- [2, 8, 32] do
      engine = shared_engine()
      pids = instances_on_engine(engine, bytes, n)
      {tput, errors, cpu} = throughput_rounds(pids, n, cfg)
      Out.figure("throughput_#{n}_instances_shared_engine", tput, "calls/s")
      cpu_figures("throughput_#{n}_instances_shared_engine", cpu)
      ratio("throughput_#{n}_instances_shared_engine", tput, :"throughput_#{n}")
      if errors > 0, do: Out.figure("throughput_#{n}_instances_shared_engine_errors", errors, "")
      stop_all(pids)
      stop_engine(engine)

      pids = instances_own_hosts(bytes, n)
      {tput, errors, cpu} = throughput_rounds(pids, n, cfg)
      Out.figure("throughput_#{n}_instances_own_hosts", tput, "calls/s")
      cpu_figures("throughput_#{n}_instances_own_hosts", cpu)
      ratio("throughput_#{n}_instances_own_hosts", tput, :"throughput_#{n}")
      if errors > 0, do: Out.figure("throughput_#{n}_instances_own_hosts_errors", errors, "")
      stop_all(pids)
    end
  end

  # CPU per call of the BEAM and the ports together, and of the BEAM alone (the kernel
  # shares the CPUs between the two: see docs/decisions.md, 2026-11-22).
  defp cpu_figures(name, {cpu, beam}) do
    Out.figure("#{name}_cpu_per_call", cpu, "us")
    Out.figure("#{name}_cpu_per_call_beam", beam, "us")
  end

  @doc false
  def throughput_1_instance_64_callers(cfg) do
    engine = shared_engine()
    [pid] = instances_on_engine(engine, Wasm.sum_module(), 1)
    {tput, errors, cpu} = throughput_rounds([pid], 64, cfg)
    Out.figure("throughput_1_instance_64_callers", tput, "calls/s")
    cpu_figures("throughput_1_instance_64_callers", cpu)
    if errors > 0, do: Out.figure("throughput_1_instance_64_callers_errors", errors, "")
    stop_all([pid])
    stop_engine(engine)
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
    engine = shared_engine()
    [pid] = instances_on_engine(engine, Wasm.sum_module(), 1)
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
    stop_all([pid])
    stop_engine(engine)
  end

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

  @doc false
  # 20,000 writes of 10 bytes by a guest, to a Wasmex.Pipe and as messages.
  def wasi_output(cfg), do: Bench.Output.run(["wasi_output"], cfg.quick, &Out.line/1)

  @doc false
  # A guest flooding stdout for 10 s (2 s with --quick), to a pipe and as messages: the
  # BEAM's memory growth and the port's RSS growth at their peaks (target < 100 MB).
  def flood(cfg), do: Bench.Output.run(["flood"], cfg.quick, &Out.line/1)

  @doc false
  # A program listing a directory of 4,000 files, and reading one file.
  def wasi_files(cfg), do: Bench.Files.run(cfg.quick, &Out.line/1)

  @doc false
  # A call stopped in a WASI sleep (how far past its deadline, the next call's latency),
  # a sleeping start function, and the port after 1,000 blocked instances are stopped.
  def stopping(cfg), do: Bench.Stopping.run(cfg.quick, &Out.line/1)

  @doc false
  def components(cfg), do: Bench.Components.run(cfg)

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

  @doc false
  def bare_port_roundtrip(cfg) do
    {port, _} = open_bare_port()
    {m, _} = latency(fn -> bare_request(port) end, cfg.rounds, cfg.lat_n, cfg.warmup)
    Out.figure("bare_port_roundtrip_median", m, "us")

    fuel = :erlang.term_to_binary({0, :fuel_get, {999}})
    pipelined(port, fuel, 64, div(cfg.bare_n, 4))
    tput = median(for _ <- 1..cfg.rounds, do: pipelined(port, fuel, 64, cfg.bare_n))

    Out.figure("bare_port_roundtrip_pipelined_64", tput, "roundtrips/s")
    Port.close(port)
  end

  defp open_bare_port do
    path = Application.app_dir(:wasmex, "priv/wasmex_port")
    port = Port.open({:spawn_executable, path}, [:binary, {:packet, 4}])

    wasmtime =
      receive do
        {^port, {:data, data}} ->
          {:hello, _version, wasmtime} = :erlang.binary_to_term(data)
          wasmtime
      after
        10_000 -> raise "no hello from #{path}"
      end

    Port.command(port, :erlang.term_to_binary({1, :init, {%{}}}))

    receive do
      {^port, {:data, data}} -> {:reply, 1, {:ok, _shared_buffer}} = :erlang.binary_to_term(data)
    after
      10_000 -> raise "no answer to init"
    end

    {port, wasmtime}
  end

  @fuel_request :erlang.term_to_binary({2, :fuel_get, {999}})

  # One request on a port this process owns; returns the reply's result.
  defp bare_request(port, request \\ @fuel_request, id \\ 2) do
    Port.command(port, request)

    receive do
      {^port, {:data, data}} ->
        {:reply, ^id, result} = :erlang.binary_to_term(data)
        result
    end
  end

  # A store and an instance of `bytes` in a bare port, set up with raw requests.
  defp bare_instance(port, bytes) do
    key = Wasmex.Module.key({:wasm, bytes})
    req = fn id, op, args -> bare_request(port, :erlang.term_to_binary({id, op, args}), id) end
    {:ok, _} = req.(3, :module_compile, {key, {:wasm, bytes}})
    {:ok, store_id} = req.(4, :store_new, {nil, nil})
    handler = :erlang.term_to_binary(self())
    {:ok, instance_id} = req.(5, :instantiate, {store_id, key, nil, handler, [], [], 5000})
    {store_id, instance_id}
  end

  # `total` requests (all the same frame `request`, whose id is ignored) with `window` in
  # flight; returns round trips per second. Every reply must be of the same kind.
  defp pipelined(port, request, window, total) do
    t0 = now()
    for _ <- 1..window, do: Port.command(port, request)
    pipeline_loop(port, request, window + 1, total, 0)
    total / s(now() - t0)
  end

  defp pipeline_loop(_port, _request, _next, total, total), do: :ok

  defp pipeline_loop(port, request, next, total, done) do
    receive do
      {^port, {:data, data}} ->
        {:reply, _, _} = :erlang.binary_to_term(data)
        if next <= total, do: Port.command(port, request)
        pipeline_loop(port, request, next + 1, total, done + 1)
    end
  end
end

Bench.main(System.argv())
