# What one store's large work costs the other stores of its engine: a 256 MiB memory read
# (through the pipe, in 1 MiB parts: port/memory.rs), a 256 MiB write (staged in 1 MiB
# parts: port/staging.rs), and calls of about 80 ms of Wasm started every 10 ms or every
# 100 ms (each runs on the thread that reads requests until it moves to the heavy
# runtime: port/roam.rs, port/ticker.rs), each beside a store called back-to-back.
# Loaded by bench/run.exs (group `neighbours`); also runs alone:
#
#     mix run bench/neighbours.exs [--quick]

defmodule Bench.Neighbours do
  @moduledoc false

  @big_memory ~s{(module (memory (export "memory") 4096))}
  @answer ~s{(module (func (export "answer") (result i32) i32.const 42))}
  @spin ~s{(module (func (export "spin") (param $n i32) (local $i i32)
    (block $d (loop $l (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))))}

  defp median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  @doc """
  `transfer` (`:read` or `:write`) of `bytes` on one store, each while another store of
  the same engine is called back-to-back: the transfer's time and the other store's
  longest call during it (medians over the rounds, in ms), and the other store's calls
  per round.
  """
  def big_transfer(transfer, rounds, bytes) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, big} = Wasmex.start_link(%{bytes: @big_memory, store: store})
    {:ok, memory} = Wasmex.memory(big)
    {:ok, other} = Wasmex.Store.new(nil, engine)
    {:ok, answering} = Wasmex.start_link(%{bytes: @answer, store: other})

    data = if transfer == :write, do: :binary.copy(<<7>>, bytes), else: bytes

    samples =
      for _ <- 1..rounds do
        done = :atomics.new(1, [])
        calls = Task.async(fn -> call_until(answering, done, 0, []) end)

        {us, :ok} = :timer.tc(fn -> move(transfer, store, memory, data) end)
        :atomics.put(done, 1, 1)
        waits = Task.await(calls, 60_000)
        {us / 1000, Enum.max(waits) / 1000, length(waits)}
      end

    Enum.each([big, answering], &GenServer.stop/1)
    GenServer.stop(engine.host)
    for i <- 0..2, do: median(Enum.map(samples, &elem(&1, i)))
  end

  @doc """
  `calls` calls of about 80 ms of Wasm on one store, `gap_ms` apart, while another store
  of the same engine is called back-to-back: the other store's longest call (ms) and its
  calls in all.
  """
  def long_calls(calls, gap_ms) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Wasmex.Store.new(nil, engine)
    {:ok, spinning} = Wasmex.start_link(%{bytes: @spin, store: store})
    {:ok, other} = Wasmex.Store.new(nil, engine)
    {:ok, answering} = Wasmex.start_link(%{bytes: @answer, store: other})
    # The loop's count for about 80 ms, from one timed run.
    {us, {:ok, []}} = :timer.tc(fn -> Wasmex.call_function(spinning, "spin", [50_000_000]) end)
    n = round(50_000_000 * 80_000 / max(us, 1))

    done = :atomics.new(1, [])
    task = Task.async(fn -> call_until(answering, done, 0, []) end)

    for _ <- 1..calls do
      Process.sleep(gap_ms)
      {:ok, []} = Wasmex.call_function(spinning, "spin", [n], 10_000)
    end

    :atomics.put(done, 1, 1)
    waits = Task.await(task, 60_000)
    Enum.each([spinning, answering], &GenServer.stop/1)
    GenServer.stop(engine.host)
    [Enum.max(waits) / 1000, length(waits)]
  end

  # Reads `bytes` bytes, or writes the binary `data`.
  defp move(:read, store, memory, bytes) do
    true = byte_size(Wasmex.Memory.read_binary(store, memory, 0, bytes)) == bytes
    :ok
  end

  defp move(:write, store, memory, data), do: Wasmex.Memory.write_binary(store, memory, 0, data)

  # Calls `pid` back-to-back until `done` is set: the microseconds each call took.
  defp call_until(pid, done, n, waits) do
    if :atomics.get(done, 1) == 1 and n > 0 do
      waits
    else
      {us, {:ok, [42]}} = :timer.tc(fn -> Wasmex.call_function(pid, "answer", [], 5_000) end)
      call_until(pid, done, n + 1, [us | waits])
    end
  end

  @doc "Prints the figures as `name value unit` lines through `line`."
  def run(quick, line) do
    for transfer <- [:read, :write] do
      [ms, longest_ms, calls] =
        big_transfer(transfer, if(quick, do: 3, else: 7), 256 * 1024 * 1024)

      name = "memory_#{transfer}_256mib"
      line.("#{name} #{Float.round(ms, 1)} ms")
      line.("#{name}_other_store_longest_call #{Float.round(longest_ms, 1)} ms")
      line.("#{name}_other_store_calls #{calls} calls")
    end

    for gap <- [10, 100] do
      [longest_ms, calls] = long_calls(if(quick, do: 5, else: 15), gap)
      name = "long_calls_every_#{gap}ms"
      line.("#{name}_other_store_longest_call #{Float.round(longest_ms, 1)} ms")
      line.("#{name}_other_store_calls #{calls} calls")
    end
  end
end

if Process.get(:bench_neighbours_loaded_by_run) != true do
  {opts, _, _} = OptionParser.parse(System.argv(), strict: [quick: :boolean])
  Bench.Neighbours.run(opts[:quick] || false, &IO.puts/1)
end
