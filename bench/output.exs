# WASI output figures: many small writes, and a guest flooding stdout. Loaded by
# bench/run.exs (groups `wasi_output` and `flood`); also runs alone:
#
#     mix run bench/output.exs [--quick] [--only wasi_output|flood]
#
# Output as messages is acknowledged by its receiver when `Wasmex.Wasi.ack_output/3`
# exists (so the same script measures a build from before it).

defmodule Bench.Output do
  @moduledoc false

  # `write(times, size)` writes `size` bytes to stdout `times` times (errors ignored);
  # `flood()` writes 4 KiB to stdout forever.
  @guest """
  (module
    (import "wasi_snapshot_preview1" "fd_write"
      (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func $setup (param $size i32)
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (local.get $size))
      (memory.fill (i32.const 64) (i32.const 120) (local.get $size)))
    (func (export "write") (param $times i32) (param $size i32) (local $i i32)
      (call $setup (local.get $size))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $times)))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next))))
    (func (export "flood")
      (call $setup (i32.const 4096))
      (loop $next
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
        (br $next))))
  """

  defp acks?, do: function_exported?(Wasmex.Wasi, :ack_output, 3)

  # An instance of the guest writing to `stdout` (:pipe or :messages, received by a
  # process that consumes and acknowledges); returns {pid, store, receiver}.
  defp guest(mode) do
    Code.ensure_loaded(Wasmex.Wasi)
    {stdout, receiver} = stdout(mode)
    {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{stdout: stdout})
    {:ok, module} = Wasmex.Module.compile(store, @guest)
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    {pid, store, receiver}
  end

  defp stdout(:pipe) do
    {:ok, pipe} = Wasmex.Pipe.new()
    {pipe, nil}
  end

  # A receiver that never reads its mailbox (nor acknowledges).
  defp stdout(:unread) do
    receiver = spawn(fn -> receive(do: (:stop -> :ok)) end)
    {{:messages, receiver}, receiver}
  end

  defp stdout(:messages) do
    ack = acks?()
    receiver = spawn_link(fn -> consume(ack, 0) end)
    {{:messages, receiver}, receiver}
  end

  defp consume(ack?, total) do
    receive do
      {:wasmex_stdout, store, data} ->
        if ack?, do: apply(Wasmex.Wasi, :ack_output, [store, :stdout, byte_size(data)])
        consume(ack?, total + byte_size(data))

      {:total, from} ->
        send(from, {:total, total})
        consume(ack?, 0)
    end
  end

  defp stop(receiver) do
    send(receiver, :stop)
    nil
  end

  defp received(nil), do: nil

  defp received(receiver) do
    send(receiver, {:total, self()})
    receive(do: ({:total, n} -> n))
  end

  defp median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  @doc "Median µs of `n` writes of `size` bytes, to a pipe and as messages."
  def small_writes(rounds, n \\ 20_000, size \\ 10) do
    for mode <- [:pipe, :messages] do
      {pid, _store, receiver} = guest(mode)
      {:ok, []} = Wasmex.call_function(pid, :write, [100, size], 10_000)

      times =
        for _ <- 1..rounds do
          {us, {:ok, []}} =
            :timer.tc(fn -> Wasmex.call_function(pid, :write, [n, size], 60_000) end)

          us
        end

      if receiver, do: received(receiver)
      GenServer.stop(pid)
      {mode, median(times)}
    end
  end

  @doc """
  A guest flooding stdout for `ms` in each mode (a pipe, messages to a process that
  consumes and acknowledges them, messages to one that never reads its mailbox): the growth of the BEAM's memory
  (`:erlang.memory(:total)`) and the port's RSS, at their peaks, in MB; and the bytes
  delivered.
  """
  def flood(ms) do
    for mode <- [:pipe, :messages, :unread] do
      :erlang.garbage_collect()
      Process.sleep(200)
      {pid, store, receiver} = guest(mode)
      os_pid = :sys.get_state(store.host).os_pid
      beam0 = :erlang.memory(:total)
      rss0 = rss(os_pid)
      call = Task.async(fn -> Wasmex.call_function(pid, :flood, [], ms) end)
      {result, beam_peak, rss_peak} = sample(call, os_pid, beam0, rss0)
      {:error, "timed out" <> _} = result
      delivered = if mode == :unread, do: stop(receiver), else: received(receiver)
      GenServer.stop(pid)
      mb = fn bytes -> Float.round(bytes / 1_048_576, 1) end
      {mode, mb.(beam_peak - beam0), mb.(rss_peak - rss0), delivered && mb.(delivered)}
    end
  end

  # Samples both memories every 50 ms until the call ends: {its result, peaks}.
  defp sample(call, os_pid, beam_peak, rss_peak) do
    case Task.yield(call, 50) do
      nil ->
        beam_peak = max(beam_peak, :erlang.memory(:total))
        sample(call, os_pid, beam_peak, max(rss_peak, rss(os_pid)))

      {:ok, result} ->
        {result, beam_peak, rss_peak}
    end
  end

  defp rss(os_pid) do
    case File.read("/proc/#{os_pid}/status") do
      {:ok, status} ->
        [_, kb] = Regex.run(~r/VmRSS:\s+(\d+)/, status)
        String.to_integer(kb) * 1024

      {:error, _} ->
        0
    end
  end

  @doc "Prints the figures of `groups` as `name value unit` lines through `line`."
  def run(groups, quick, line) do
    if "wasi_output" in groups do
      for {mode, us} <- small_writes(if(quick, do: 3, else: 9)) do
        line.("wasi_20000_small_writes_#{mode} #{Float.round(us / 1000, 2)} ms")
      end
    end

    if "flood" in groups do
      ms = if quick, do: 2_000, else: 10_000

      for {mode, beam, rss, delivered} <- flood(ms) do
        line.("flood_#{div(ms, 1000)}s_#{mode}_beam_growth #{beam} MB")
        line.("flood_#{div(ms, 1000)}s_#{mode}_port_rss_growth #{rss} MB")
        if delivered, do: line.("flood_#{div(ms, 1000)}s_#{mode}_delivered #{delivered} MB")
      end
    end
  end
end

if Process.get(:bench_output_loaded_by_run) != true do
  {opts, _, _} = OptionParser.parse(System.argv(), strict: [quick: :boolean, only: :string])
  groups = if opts[:only], do: String.split(opts[:only], ","), else: ["wasi_output", "flood"]
  Bench.Output.run(groups, opts[:quick] || false, &IO.puts/1)
end
