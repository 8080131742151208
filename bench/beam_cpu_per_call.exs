# BEAM CPU per `Wasmex.call_function/4` call, for one caller and for 32 callers (each with
# an instance of its own, all on one engine). Counts the CPU time of the BEAM's own
# threads (`:erlang.statistics(:runtime)`), not the port's, over a fixed number of calls.
#
#   elixir --erl "+sbwt none +sbwtdcpu none +sbwtdio none" -S mix run bench/beam_cpu_per_call.exs
#
# Scheduler busy-waiting is turned off (the flags above) so that the figure counts work,
# not the time schedulers spin waiting for the port's answers. Options (environment):
# CALLS (default 100000 per run), RUNS (default 5; the median is printed).

calls = String.to_integer(System.get_env("CALLS", "100000"))
runs = String.to_integer(System.get_env("RUNS", "5"))

wat =
  ~s{(module (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

{:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})

start = fn ->
  {:ok, store} = Wasmex.Store.new(nil, engine)
  {:ok, pid} = Wasmex.start_link(%{bytes: wat, store: store})
  pid
end

loop = fn pid, n ->
  Enum.each(1..n, fn i -> {:ok, [_]} = Wasmex.call_function(pid, "sum", [i, 1]) end)
end

# CPU µs per call, calls per second and reductions per call of `callers` processes making `calls` calls in all.
measure = fn pids ->
  per = div(calls, length(pids))
  Enum.each(pids, &loop.(&1, 200))
  :erlang.garbage_collect()
  {cpu0, _} = :erlang.statistics(:runtime)
  {red0, _} = :erlang.statistics(:exact_reductions)
  t0 = System.monotonic_time(:microsecond)

  pids
  |> Enum.map(fn pid -> Task.async(fn -> loop.(pid, per) end) end)
  |> Enum.each(&Task.await(&1, :infinity))

  t1 = System.monotonic_time(:microsecond)
  {cpu1, _} = :erlang.statistics(:runtime)
  {red1, _} = :erlang.statistics(:exact_reductions)
  total = per * length(pids)
  {(cpu1 - cpu0) * 1000 / total, total * 1_000_000 / (t1 - t0), (red1 - red0) / total}
end

median = fn xs -> xs |> Enum.sort() |> Enum.at(div(length(xs), 2)) end

report = fn label, pids ->
  results = for _ <- 1..runs, do: measure.(pids)
  cpus = Enum.map(results, &elem(&1, 0))
  rates = Enum.map(results, &elem(&1, 1))
  reds = Enum.map(results, &elem(&1, 2))

  IO.puts(
    "#{label}: BEAM CPU per call median #{Float.round(median.(cpus), 2)} µs " <>
      "(runs: #{Enum.map_join(cpus, " ", &Float.round(&1, 2))}), " <>
      "#{round(median.(rates))} calls/s, #{round(median.(reds))} reductions per call"
  )
end

report.("1 caller ", [start.()])
report.("32 callers", for(_ <- 1..32, do: start.()))
