# BEAM CPU per call of the host server and of the caller's side, each alone, with no
# Wasm and no port round trip in the loop (the host writes to `cat > /dev/null` and its
# answers are fed in as frames), so that the figures hold still on a busy machine.
#
#   mix run bench/host_cpu_per_call.exs       (N calls per run, default 200000; REPS runs)
n = String.to_integer(System.get_env("N", "200000"))
reps = String.to_integer(System.get_env("REPS", "5"))

{:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
state0 = :sys.get_state(engine.host)
sink = Port.open({:spawn, "cat > /dev/null"}, [:binary, :stream])
state0 = %{state0 | port: sink}

drain = fn drain ->
  receive do
    _ -> drain.(drain)
  end
end

callers_for = fn k -> for _ <- 1..k, do: spawn(fn -> drain.(drain) end) end

request = fn id -> {:request, Wasmex.Wire.call(1, 1, "sum", [id, 1], 5_000)} end

reply_data = fn id ->
  payload = :erlang.term_to_binary({:reply, id, {:ok, [id + 1]}})
  <<byte_size(payload)::32, payload::binary>>
end

# One host loop: `k` callers, each with one call in flight; every step sends a call for one
# caller and delivers the answer to the oldest call.
host_loop = fn k ->
  callers = callers_for.(k) |> List.to_tuple()
  first = state0.next_id

  state =
    Enum.reduce(0..(k - 1), state0, fn i, st ->
      from = {elem(callers, i), [:alias | make_ref()]}
      {:noreply, st} = Wasmex.Host.handle_call(request.(first + i), from, st)
      st
    end)

  datas = for i <- 0..(n - 1), do: reply_data.(first + i)
  :erlang.garbage_collect()
  # A message waiting in this process's mailbox makes the host batch its writes, as a
  # busy host does (Wasmex.Host.Outgoing): one write per 64 KiB of requests.
  send(self(), :keep_busy)
  {t0, _} = :erlang.statistics(:runtime)

  {us, _} =
    :timer.tc(fn ->
      Enum.reduce(Enum.with_index(datas), state, fn {data, i}, st ->
        {:noreply, st} = Wasmex.Host.handle_info({sink, {:data, data}}, st)
        from = {elem(callers, rem(i, k)), [:alias | make_ref()]}
        {:noreply, st} = Wasmex.Host.handle_call(request.(first + k + i), from, st)
        st
      end)
    end)

  {t1, _} = :erlang.statistics(:runtime)
  Enum.each(Tuple.to_list(callers), &Process.exit(&1, :kill))
  receive do: (:keep_busy -> :ok)
  flush = fn flush -> receive do: (:write_outgoing -> flush.(flush)), after: (0 -> :ok) end
  flush.(flush)
  {us * 1000 / n, (t1 - t0) * 1000_000 / n}
end

# The caller's side: Wasmex.call_function/4 against a host that answers at once.
caller_loop = fn ->
  fake_host =
    spawn(fn ->
      loop = fn loop ->
        receive do
          {:"$gen_call", from, _} -> GenServer.reply(from, {:ok, [3]})
          _ -> :ok
        end

        loop.(loop)
      end

      loop.(loop)
    end)

  server = spawn(fn -> drain.(drain) end)
  :ets.insert(Wasmex.Routes, {server, fake_host, 1, 1})
  :erlang.garbage_collect()
  {t0, _} = :erlang.statistics(:runtime)
  Enum.each(1..n, fn i -> {:ok, _} = Wasmex.call_function(server, "sum", [i, 1]) end)
  {t1, _} = :erlang.statistics(:runtime)
  :ets.delete(Wasmex.Routes, server)
  Process.exit(fake_host, :kill)
  (t1 - t0) * 1000_000 / n
end

median = fn xs -> xs |> Enum.sort() |> Enum.at(div(length(xs), 2)) end
fmt = fn xs -> Enum.map_join(xs, " ", &round/1) end

h1 = for _ <- 1..reps, do: elem(host_loop.(1), 1)
h32 = for _ <- 1..reps, do: elem(host_loop.(32), 1)
h64 = for _ <- 1..reps, do: elem(host_loop.(64), 1)
c = for _ <- 1..reps, do: caller_loop.()
IO.puts("host server CPU per call, 1 caller:   median #{round(median.(h1))} ns (#{fmt.(h1)})")
IO.puts("host server CPU per call, 32 callers: median #{round(median.(h32))} ns (#{fmt.(h32)})")
IO.puts("host server CPU per call, 64 callers: median #{round(median.(h64))} ns (#{fmt.(h64)})")
IO.puts("caller + answering process CPU per call: median #{round(median.(c))} ns (#{fmt.(c)})")
