# What one store's large work costs the other stores of its engine: a 256 MiB memory read
# (through the pipe, in 1 MiB parts: port/memory.rs) beside a store called back-to-back.
# Loaded by bench/run.exs (group `neighbours`); also runs alone:
#
#     mix run bench/neighbours.exs [--quick]

defmodule Bench.Neighbours do
  @moduledoc false

  @big_memory ~s{(module (memory (export "memory") 4096))}
  @answer ~s{(module (func (export "answer") (result i32) i32.const 42))}

  defp median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  @doc """
  Reads of `bytes` from one store, each while another store of the same engine is called
  back-to-back: the read's time and the other store's longest call during it (medians
  over the rounds, in ms), and the other store's calls per round.
  """
  def big_read(rounds, bytes) do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, reading} = Wasmex.Store.new(nil, engine)
    {:ok, big} = Wasmex.start_link(%{bytes: @big_memory, store: reading})
    {:ok, memory} = Wasmex.memory(big)
    {:ok, other} = Wasmex.Store.new(nil, engine)
    {:ok, answering} = Wasmex.start_link(%{bytes: @answer, store: other})

    samples =
      for _ <- 1..rounds do
        done = :atomics.new(1, [])
        calls = Task.async(fn -> call_until(answering, done, 0, []) end)

        {read_us, read} =
          :timer.tc(fn -> Wasmex.Memory.read_binary(reading, memory, 0, bytes) end)

        :atomics.put(done, 1, 1)
        true = byte_size(read) == bytes
        waits = Task.await(calls, 60_000)
        {read_us / 1000, Enum.max(waits) / 1000, length(waits)}
      end

    Enum.each([big, answering], &GenServer.stop/1)
    GenServer.stop(engine.host)
    for i <- 0..2, do: median(Enum.map(samples, &elem(&1, i)))
  end

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
    [read_ms, longest_ms, calls] = big_read(if(quick, do: 3, else: 7), 256 * 1024 * 1024)
    line.("memory_read_256mib #{Float.round(read_ms, 1)} ms")
    line.("memory_read_256mib_other_store_longest_call #{Float.round(longest_ms, 1)} ms")
    line.("memory_read_256mib_other_store_calls #{calls} calls")
  end
end

if Process.get(:bench_neighbours_loaded_by_run) != true do
  {opts, _, _} = OptionParser.parse(System.argv(), strict: [quick: :boolean])
  Bench.Neighbours.run(opts[:quick] || false, &IO.puts/1)
end
