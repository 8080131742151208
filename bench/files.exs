# Figures of WASI file system work: a program listing a directory of 4,000 files (one
# `fd_readdir` pass per 4 KiB of listing in wasi-libc), and reading one small file, both
# through `test/fixtures/wasi_test.wasm` in a preopened directory. Loaded by
# bench/run.exs (group `wasi_files`); also runs alone:
#
#     mix run bench/files.exs [--quick]

defmodule Bench.Files do
  @moduledoc false

  alias Wasmex.Pipe
  alias Wasmex.Wasi.{PreopenOptions, WasiOptions}

  @wasi_test File.read!(Path.expand("../test/fixtures/wasi_test.wasm", __DIR__))

  defp median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  # A directory of `count` empty files, removed when the run ends.
  defp directory(count) do
    dir = Path.join(System.tmp_dir!(), "wasmex_bench_files_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    for i <- 1..count, do: File.write!(Path.join(dir, "file-#{i}"), "")
    dir
  end

  # Runs `wasi_test args` with `dir` preopened as "dir": its `_start` in ms (module
  # compiled before, start_link included).
  defp run_ms(module, dir, args) do
    {:ok, stdout} = Pipe.new(capacity: 8 * 1024 * 1024)
    preopen = [%PreopenOptions{path: dir, alias: "dir"}]
    wasi = %WasiOptions{args: ["wasi_test" | args], preopen: preopen, stdout: stdout}
    {:ok, store} = Wasmex.Store.new_wasi(wasi)
    t0 = System.monotonic_time(:microsecond)
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    {:ok, []} = Wasmex.call_function(pid, :_start, [], 120_000)
    t = (System.monotonic_time(:microsecond) - t0) / 1000
    GenServer.stop(pid)
    Wasmex.Store.release(store)
    Pipe.close(stdout)
    t
  end

  @doc "Prints the figures as `name value unit` lines through `line`."
  def run(quick, line) do
    rounds = if quick, do: 3, else: 7
    dir = directory(4_000)
    {:ok, store} = Wasmex.Store.new()
    {:ok, module} = Wasmex.Module.compile(store, @wasi_test)

    try do
      list = median(for _ <- 1..rounds, do: run_ms(module, dir, ["ls", "dir"]))
      line.("wasi_list_4000_files #{Float.round(list, 2)} ms")
      read = median(for _ <- 1..rounds, do: run_ms(module, dir, ["read", "dir/file-1"]))
      line.("wasi_read_one_file #{Float.round(read, 2)} ms")
    after
      File.rm_rf!(dir)
    end
  end
end

if Process.get(:bench_files_loaded_by_run) != true do
  {opts, _, _} = OptionParser.parse(System.argv(), strict: [quick: :boolean])
  Bench.Files.run(opts[:quick] || false, &IO.puts/1)
end
