defmodule Wasmex.Wasi.WasiOptionsTest do
  @moduledoc "WASI options are checked when a store is made: anything not exactly right is refused."
  use ExUnit.Case, async: true

  alias Wasmex.Pipe
  alias Wasmex.Store
  alias Wasmex.Wasi.{PreopenOptions, WasiOptions}

  doctest WasiOptions

  defp tmp_dir do
    dir =
      Path.join(System.tmp_dir!(), "wasmex_wasi_options_#{System.unique_integer([:positive])}")

    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  defp store(options), do: Store.new_wasi(options)
  defp preopen(fields), do: store(%WasiOptions{preopen: [struct!(PreopenOptions, fields)]})

  describe "cast/1 and new/1" do
    test "take true, a map of the fields or the struct" do
      assert WasiOptions.cast(true) == {:ok, %WasiOptions{}}
      assert WasiOptions.cast(%{args: ["a"]}) == {:ok, %WasiOptions{args: ["a"]}}

      assert WasiOptions.cast(%WasiOptions{env: %{"A" => "1"}}) ==
               {:ok, %WasiOptions{env: %{"A" => "1"}}}
    end

    test "refuse a mistyped key, naming it, and anything that is no map" do
      assert {:error, "unknown wasi option :preopens" <> _} = WasiOptions.cast(%{preopens: []})

      assert {:error, "wasi must be true, a map or a WasiOptions struct" <> _} =
               WasiOptions.cast([])

      assert_raise ArgumentError, ~r/unknown wasi option :arg/, fn ->
        WasiOptions.new(%{arg: []})
      end
    end

    test "start_link/1 answers a mistyped key with an error" do
      assert {:error, "unknown wasi option :stdot" <> _} =
               Wasmex.start_link(%{bytes: "(module)", wasi: %{stdot: nil}})
    end
  end

  describe "preopens (PreopenOptions)" do
    test "an empty path is refused, not taken as the working directory" do
      assert preopen(path: "") ==
               {:error, "wasi preopen path must be a non-empty string, got: \"\""}

      assert {:error, "wasi preopen path must be a non-empty string" <> _} = preopen(path: nil)

      assert {:error, "wasi preopen path must be a non-empty string" <> _} =
               preopen(path: ~c"/tmp")
    end

    test "a path that is a file or missing is refused" do
      file = Path.join(tmp_dir(), "file")
      File.write!(file, "x")

      assert preopen(path: file) ==
               {:error, "wasi preopen path #{inspect(file)} is not a directory"}

      assert {:error, "wasi preopen path \"/no/such\" is not a directory"} =
               preopen(path: "/no/such")
    end

    test "read_only must be exactly true or false: \"true\", 1 and :yes are refused" do
      dir = tmp_dir()

      for value <- ["true", 1, :yes, nil] do
        assert {:error, message} = preopen(path: dir, read_only: value)

        assert message ==
                 "wasi preopen read_only of #{inspect(dir)} must be true or false, got: #{inspect(value)}"
      end

      assert {:ok, _} = preopen(path: dir, read_only: true)
      assert {:ok, _} = preopen(path: dir, read_only: false)
    end

    test "an alias must be nil or a non-empty string" do
      dir = tmp_dir()
      assert {:error, "wasi preopen alias of " <> _} = preopen(path: dir, alias: "")
      assert {:error, "wasi preopen alias of " <> _} = preopen(path: dir, alias: :src)
      assert {:ok, _} = preopen(path: dir, alias: "src")
    end

    test "a preopen that is no PreopenOptions is refused" do
      assert {:error, "wasi preopen must be a PreopenOptions struct" <> _} =
               store(%WasiOptions{preopen: [%{path: tmp_dir()}]})

      assert {:error, "wasi preopen must be a list of PreopenOptions" <> _} =
               store(%WasiOptions{preopen: "dir"})
    end
  end

  describe "preopens (the earlier map form)" do
    test "flags must be a non-empty list of :read, :write, :create" do
      dir = tmp_dir()

      for flags <- [[], [:rw], "write", nil] do
        assert {:error, message} = store(%WasiOptions{preopen: %{dir => %{flags: flags}}})
        assert message =~ "flags must be a non-empty list of :read, :write, :create"
      end

      assert {:ok, _} = store(%WasiOptions{preopen: %{dir => %{flags: [:read]}}})
    end

    test "an empty path, a file, an unknown option or a bad alias is refused" do
      dir = tmp_dir()

      assert {:error, "wasi preopen path must be a non-empty string" <> _} =
               store(%WasiOptions{preopen: %{"" => %{flags: [:read]}}})

      assert {:error, "unknown option :read_only of wasi preopen" <> _} =
               store(%WasiOptions{preopen: %{dir => %{flags: [:read], read_only: true}}})

      assert {:error, "wasi preopen alias of " <> _} =
               store(%WasiOptions{preopen: %{dir => %{flags: [:read], alias: 1}}})

      assert {:error, "wasi preopen " <> _} = store(%WasiOptions{preopen: %{dir => [:read]}})
    end

    test "a read-only directory stays read-only: only :write or :create make it writable" do
      dir = tmp_dir()
      File.write!(Path.join(dir, "f.txt"), "old")

      wat = """
      (module
        (import "wasi_snapshot_preview1" "path_open"
          (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "f.txt")
        ;; opens f.txt for writing in the first preopen (fd 3): 0 or an errno
        (func (export "open_write") (result i32)
          (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 0)
            (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 100))))
      """

      {:ok, pid} = Wasmex.start_link(%{bytes: wat, wasi: %{preopen: %{dir => %{flags: [:read]}}}})
      assert {:ok, [errno]} = Wasmex.call_function(pid, "open_write", [])
      assert errno != 0
    end
  end

  describe "args, env and streams" do
    test "args must be a list of strings without NUL bytes" do
      assert {:error, "wasi args element must be a string, got: 1"} =
               store(%WasiOptions{args: [1]})

      assert {:error, "wasi args must be a list of strings" <> _} = store(%WasiOptions{args: "a"})

      assert {:error, "wasi args element must not contain a NUL byte" <> _} =
               store(%WasiOptions{args: ["a\0b"]})
    end

    test "env must map non-empty names without = to strings" do
      assert {:error, "wasi env name must not be empty"} = store(%WasiOptions{env: %{"" => "x"}})

      assert {:error, "wasi env name must not contain \"=\"" <> _} =
               store(%WasiOptions{env: %{"A=B" => "x"}})

      assert {:error, "wasi env value of A must be a string, got: 1"} =
               store(%WasiOptions{env: %{"A" => 1}})

      assert {:error, "wasi env name must be a string, got: :a"} =
               store(%WasiOptions{env: %{a: "x"}})

      assert {:error, "wasi env must be a map" <> _} = store(%WasiOptions{env: [{"A", "1"}]})
    end

    test "streams must be pipes, :messages (stdin) or {:messages, pid} (output)" do
      {:ok, pipe} = Pipe.new()

      assert {:ok, _} =
               store(%WasiOptions{stdin: pipe, stdout: pipe, stderr: {:messages, self()}})

      assert {:error, "wasi stdin must be nil, :messages or a Wasmex.Pipe" <> _} =
               store(%WasiOptions{stdin: :stdio})

      assert {:error, "wasi stdout must be nil, a Wasmex.Pipe or {:messages, pid}" <> _} =
               store(%WasiOptions{stdout: :messages})

      assert {:error, "wasi stderr must be" <> _} =
               store(%WasiOptions{stderr: {:messages, :name}})
    end

    test "output_window must be a positive integer of bytes" do
      assert {:ok, _} = store(%WasiOptions{stdout: {:messages, self()}, output_window: 1})

      for bad <- [0, -1, 1.0, :infinity] do
        assert store(%WasiOptions{output_window: bad}) ==
                 {:error,
                  "wasi output_window must be a positive integer (bytes), got: #{inspect(bad)}"}
      end
    end

    test "a pipe that has exited is refused as a stream" do
      {:ok, pipe} = Pipe.new()
      GenServer.stop(pipe.pid)
      assert {:error, "wasi stderr pipe: " <> _} = store(%WasiOptions{stderr: pipe})
    end
  end
end
