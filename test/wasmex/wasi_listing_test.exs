defmodule Wasmex.WasiListingTest do
  @moduledoc "Directory listings of WASI preview 1 programs (`fd_readdir`), large ones included."
  use ExUnit.Case, async: true

  alias Wasmex.Pipe
  alias Wasmex.Wasi.{PreopenOptions, WasiOptions}

  @wasi_test File.read!(TestHelper.wasi_test_file_path())

  # A directory holding `count` empty files named by `name`, preopened as "dir".
  defp directory_of(count, name) do
    dir = Path.join(System.tmp_dir!(), "wasmex_listing_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    names = for i <- 1..count//1, do: name.(i)
    Enum.each(names, &File.write!(Path.join(dir, &1), ""))
    {[%PreopenOptions{path: dir, alias: "dir"}], Enum.sort(names)}
  end

  # The program's `ls dir`: its result and the names it printed.
  defp ls(preopen) do
    {:ok, stdout} = Pipe.new(capacity: 8 * 1024 * 1024)
    wasi = %WasiOptions{args: ["wasi_test", "ls", "dir"], preopen: preopen, stdout: stdout}
    {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, wasi: wasi})
    result = Wasmex.call_function(pid, :_start, [], 30_000)
    Pipe.seek(stdout, 0)
    {result, String.split(Pipe.read(stdout), "\n", trim: true)}
  end

  describe "fd_readdir" do
    test "a directory of 3,000 files is listed whole, each entry once" do
      {preopen, names} = directory_of(3_000, &"file-#{&1}")
      assert ls(preopen) == {{:ok, []}, names}
    end

    test "a listing larger than the port keeps at once (1 MiB) is listed whole" do
      long = String.duplicate("n", 80)
      {preopen, names} = directory_of(12_000, &"#{long}-#{&1}")
      assert ls(preopen) == {{:ok, []}, names}
    end

    test "an empty directory lists nothing" do
      {preopen, []} = directory_of(0, &to_string/1)
      assert ls(preopen) == {{:ok, []}, []}
    end
  end
end
