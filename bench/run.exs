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

# What the groups share (bench/support/): printing and statistics, the Wasm modules, the
# bare port, the machine's facts, engines and instances to measure.
for file <- ~w(out wasm bare_port machine setup),
    do: Code.require_file("support/#{file}.exs", __DIR__)

# Context switches per operation: bench/threads.exs.
Code.require_file("threads.exs", __DIR__)

# The groups of figures about calls, starts and the pool (bench/groups/).
for file <- ~w(calls starts pool), do: Code.require_file("groups/#{file}.exs", __DIR__)

# WASI output figures (small writes, a guest flooding stdout): bench/output.exs.
Process.put(:bench_output_loaded_by_run, true)
Code.require_file("output.exs", __DIR__)
# Stopping figures (a WASI sleep stopped at its deadline, 1,000 blocked instances):
# bench/stopping.exs.
Process.put(:bench_stopping_loaded_by_run, true)
Code.require_file("stopping.exs", __DIR__)
# What a store's 256 MiB memory read costs another store of its engine:
# bench/neighbours.exs.
Process.put(:bench_neighbours_loaded_by_run, true)
Code.require_file("neighbours.exs", __DIR__)
# WASI file system figures (a directory listing, a file read): bench/files.exs.
Process.put(:bench_files_loaded_by_run, true)
Code.require_file("files.exs", __DIR__)
# Component figures (record call against core sum, its cost split, instantiation, an
# import round trip): bench/components.exs.
Code.require_file("components.exs", __DIR__)

defmodule Bench do
  @moduledoc false
  import Bench.Stats
  alias Bench.{Calls, Machine, Out, PoolGroup, Starts}

  # Every group, in the order they run, with the module whose function of that name runs it.
  @groups [
    hops: Calls,
    call_latency: Calls,
    cpu_per_call_steady: Calls,
    throughput_instances: Calls,
    throughput_1_instance_64_callers: Calls,
    callback: Calls,
    memory: Calls,
    start_link: Starts,
    compile: Starts,
    cpu_loop: Starts,
    idle_host_rss: Starts,
    pool_10000_callers: PoolGroup,
    bare_port_roundtrip: Calls,
    wasi_output: Bench,
    flood: Bench,
    wasi_files: Bench,
    stopping: Bench,
    neighbours: Bench,
    components: Bench
  ]

  def main(argv) do
    {opts, _, _} =
      OptionParser.parse(argv,
        strict: [quick: :boolean, only: :string, help: :boolean, env: :keep]
      )

    if opts[:help] do
      IO.puts("usage: mix run bench/run.exs [--quick] [--only group,group] [--env key=value]")
      IO.puts("groups: " <> Enum.map_join(@groups, " ", &elem(&1, 0)))
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

    Machine.facts(cfg)

    for {group, module} <- @groups, selected?(Atom.to_string(group), only) do
      t0 = now()
      apply(module, group, [cfg])
      Out.line("# #{group} took #{Float.round(s(now() - t0), 1)} s, loadavg #{Machine.loadavg()}")
    end

    Out.fact("loadavg_end", Machine.loadavg())
    Out.fact("busy_processes_end", Machine.busy_processes())
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
  # A 256 MiB memory read beside another store of its engine, called back-to-back.
  def neighbours(cfg), do: Bench.Neighbours.run(cfg.quick, &Out.line/1)

  @doc false
  def components(cfg), do: Bench.Components.run(cfg)
end

Bench.main(System.argv())
