defmodule Wasmex.WasiTest do
  @moduledoc "WASI preview 1 programs: options, pipes, message streams, exit codes, the sandbox."
  use ExUnit.Case, async: true

  alias Wasmex.Pipe
  alias Wasmex.Wasi.{PreopenOptions, WasiOptions}

  @wasi_test File.read!(TestHelper.wasi_test_file_path())

  # Runs the test program with `args` (after argv[0]) and returns {result, stdout}.
  defp run(args, opts \\ []) do
    stdout = Keyword.get_lazy(opts, :stdout, fn -> elem(Pipe.new(), 1) end)

    options =
      struct(WasiOptions, Keyword.merge([args: ["wasi_test" | args]], opts) ++ [stdout: stdout])

    {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, wasi: options})
    result = Wasmex.call_function(pid, :_start, [], 20_000)
    Pipe.seek(stdout, 0)
    {result, Pipe.read(stdout)}
  end

  defp tmp_dir(context) do
    dir =
      Path.join(
        System.tmp_dir!(),
        "wasmex_wasi_#{context.test |> :erlang.phash2()}_#{System.unique_integer([:positive])}"
      )

    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  describe "start_link/1 with :wasi" do
    test "wasi: true gives a module its WASI imports" do
      assert {:ok, {:ok, []}} == {:ok, Wasmex.call_function(start_wasi(true), :_start, [])}
    end

    test "without WASI, a WASI program fails to start naming the missing import" do
      assert {:error, message} = Wasmex.start_link(%{bytes: @wasi_test})
      assert message =~ "wasi_snapshot_preview1::"
    end
  end

  # Everything a program wrote as stdout messages so far (writes may arrive in pieces).
  # A message names the store by a handle of its own: the same `resource`.
  defp stdout_messages(%{resource: resource} = store, acc \\ "") do
    receive do
      {:wasmex_stdout, %{resource: ^resource}, data} -> stdout_messages(store, acc <> data)
    after
      0 -> acc
    end
  end

  defp start_wasi(wasi) do
    {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, wasi: wasi})
    pid
  end

  describe "WasiOptions args and env" do
    test "args reach the program" do
      assert run(["args", "hello", "from elixir"]) ==
               {{:ok, []}, "wasi_test\nargs\nhello\nfrom elixir\n"}
    end

    test "env reaches the program and nothing else" do
      env = %{"B_NAME" => "two", "A_NAME_MAPS" => "to a value"}
      assert run(["env"], env: env) == {{:ok, []}, "A_NAME_MAPS=to a value\nB_NAME=two\n"}
    end

    test "without a stdout pipe, output is discarded" do
      pid = start_wasi(%WasiOptions{args: ["wasi_test"]})
      assert Wasmex.call_function(pid, :_start, []) == {:ok, []}
    end
  end

  describe "WasiOptions stdin, stdout and stderr pipes" do
    test "echoes a line from a stdin pipe (the Wasmex docs example)" do
      {:ok, stdin} = Pipe.new()
      {:ok, stdout} = Pipe.new()
      options = %WasiOptions{args: ["wasmex", "echo"], stdin: stdin, stdout: stdout}
      {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, wasi: options})
      Pipe.write(stdin, "Hey! It compiles! Ship it!")
      Pipe.seek(stdin, 0)
      {:ok, _} = Wasmex.call_function(pid, :_start, [])
      Pipe.seek(stdout, 0)
      assert Pipe.read(stdout) == "Hey! It compiles! Ship it!\n"
    end

    test "without a stdin pipe, input is empty" do
      assert run(["echo"]) == {{:ok, []}, "\n"}
    end

    test "stderr goes to its own pipe" do
      {:ok, stderr} = Pipe.new()
      assert {{:ok, []}, ""} = run(["stderr", "oops"], stderr: stderr)
      Pipe.seek(stderr, 0)
      assert Pipe.read(stderr) == "oops\n"
    end

    test "one pipe serves several programs" do
      {:ok, stdout} = Pipe.new()

      for word <- ["first", "second"] do
        options = %WasiOptions{args: ["wasi_test", "args", word], stdout: stdout}
        {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, wasi: options})
        {:ok, []} = Wasmex.call_function(pid, :_start, [])
      end

      Pipe.seek(stdout, 0)
      assert Pipe.read(stdout) == "wasi_test\nargs\nfirst\nwasi_test\nargs\nsecond\n"
    end

    test "10 MiB of output arrive complete and in order (in a pipe that holds them)" do
      size = 10 * 1024 * 1024
      {:ok, stdout} = Pipe.new(capacity: size)
      {{:ok, []}, out} = run(["big", "#{size}"], stdout: stdout)
      assert byte_size(out) == size
      expected = for i <- 0..(size - 1), into: <<>>, do: <<rem(i, 251)>>
      assert out == expected
    end
  end

  describe "stdout and stdin as messages" do
    test "output arrives as messages while the program runs" do
      {:ok, store} =
        Wasmex.Store.new_wasi(%WasiOptions{args: ["w", "args", "x"], stdout: {:messages, self()}})

      {:ok, module} = Wasmex.Module.compile(store, @wasi_test)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      {:ok, []} = Wasmex.call_function(pid, :_start, [])
      assert stdout_messages(store) == "w\nargs\nx\n"
    end

    test "a program reads stdin fed by messages, and ends at close_stdin" do
      {:ok, store} =
        Wasmex.Store.new_wasi(%WasiOptions{
          args: ["w", "echo"],
          stdin: :messages,
          stdout: {:messages, self()}
        })

      {:ok, module} = Wasmex.Module.compile(store, @wasi_test)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      task = Task.async(fn -> Wasmex.call_function(pid, :_start, []) end)
      # The program is now waiting for input: nothing is written yet.
      refute_receive {:wasmex_stdout, _, _}, 50
      Wasmex.Wasi.write_stdin(store, "part one, ")
      Wasmex.Wasi.close_stdin(store)
      assert Task.await(task) == {:ok, []}
      assert stdout_messages(store) == "part one, \n"
    end
  end

  describe "Wasmex.Wasi.write_stdin/2" do
    setup do
      {:ok, store} = Wasmex.Store.new_wasi(%WasiOptions{args: ["w", "echo"], stdin: :messages})
      %{store: store, mib16: :binary.copy("x", 16 * 1024 * 1024)}
    end

    test "holds at most 16 MiB the program has not read: a write past it takes nothing",
         %{store: store, mib16: mib16} do
      assert Wasmex.Wasi.write_stdin(store, mib16) == :ok

      assert Wasmex.Wasi.write_stdin(store, "y") ==
               {:error,
                "stdin is full: 16777216 bytes written to it are not read yet, and 1 more would pass the limit of 16777216"}
    end

    test "what the program reads makes room again", %{store: store, mib16: mib16} do
      :ok = Wasmex.Wasi.write_stdin(store, mib16)
      {:error, "stdin is full" <> _} = Wasmex.Wasi.write_stdin(store, "y")
      # `read()` reads 100 bytes of stdin.
      poller = File.read!(Path.expand("../fixtures/wasi_stdin_poller.wat", __DIR__))
      {:ok, pid} = Wasmex.start_link(%{bytes: poller, store: store})
      {:ok, [0, 100]} = Wasmex.call_function(pid, "read", [], 5_000)
      assert Wasmex.Wasi.write_stdin(store, "y") == :ok
    end

    test "is not what bounds a stdin pipe: a program reads a pipe of more than 16 MiB whole" do
      # The pipe's capacity (4 MiB) bounds a program's writes, not the host's.
      {:ok, stdin} = Wasmex.Pipe.new()
      size = 17 * 1024 * 1024
      {:ok, ^size} = Wasmex.Pipe.write(stdin, :binary.copy("x", size))
      Wasmex.Pipe.seek(stdin, 0)
      {:ok, stdout} = Wasmex.Pipe.new(capacity: 20 * 1024 * 1024)
      wasi = %WasiOptions{args: ["w", "echo"], stdin: stdin, stdout: stdout}
      {:ok, store} = Wasmex.Store.new_wasi(wasi)
      {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, store: store})
      {:ok, []} = Wasmex.call_function(pid, :_start, [], 30_000)
      # Sent a MiB at a time, echoed whole with its "\n".
      assert Wasmex.Pipe.size(stdout) == size + 1
    end

    test "a write after close_stdin/1 is an error", %{store: store} do
      :ok = Wasmex.Wasi.close_stdin(store)

      assert Wasmex.Wasi.write_stdin(store, "y") ==
               {:error, "the store's stdin is closed (Wasmex.Wasi.close_stdin/1)"}
    end

    test "a write to a store whose stdin is not :messages is an error" do
      {:ok, plain} = Wasmex.Store.new()
      {:ok, piped} = Wasmex.Store.new_wasi(%WasiOptions{stdin: elem(Wasmex.Pipe.new(), 1)})

      for store <- [plain, piped] do
        assert {:error, "the store's stdin is not :messages" <> _} =
                 Wasmex.Wasi.write_stdin(store, "y")
      end
    end

    test "a write to a store that is gone is an error" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Wasmex.Store.new_wasi(%WasiOptions{stdin: :messages}, nil, engine)
      :ok = Wasmex.Store.release(store)
      assert {:error, "unknown store" <> _} = Wasmex.Wasi.write_stdin(store, "y")
    end
  end

  describe "a program blocked reading stdin" do
    setup do
      {:ok, store} = Wasmex.Store.new_wasi(%WasiOptions{args: ["w", "echo"], stdin: :messages})
      {:ok, module} = Wasmex.Module.compile(store, @wasi_test)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      %{pid: pid, store: store}
    end

    test "is stopped at the call's timeout, and the instance goes on", %{pid: pid} do
      assert {:error, "timed out: " <> _} = Wasmex.call_function(pid, :_start, [], 200)

      assert Wasmex.call_function(pid, :_start, [], 200) |> elem(0) == :error
    end

    test "is stopped when its caller dies", %{pid: pid, store: store} do
      caller = spawn(fn -> Wasmex.call_function(pid, :_start, [], 60_000) end)
      TestHelper.wait_until_pending(store.host)
      Process.exit(caller, :kill)
      # A store request runs once the cancelled call has ended (it queues behind it); then
      # input for the next run is read by that run.
      {:error, _} = Wasmex.StoreOrCaller.get_fuel(store)
      task = Task.async(fn -> Wasmex.call_function(pid, :_start, [], 5_000) end)
      Wasmex.Wasi.write_stdin(store, "next\n")
      assert Task.await(task) == {:ok, []}
    end
  end

  describe "proc_exit" do
    test "a non-zero exit code is the call's error, and the host keeps serving" do
      pid = start_wasi(%WasiOptions{args: ["wasi_test", "exit", "3"]})
      assert Wasmex.call_function(pid, :_start, []) == {:error, {:exit, 3}}
      assert Wasmex.call_function(pid, :_start, []) == {:error, {:exit, 3}}
    end

    test "exit codes of 126 and above are exit codes too" do
      for code <- [126, 255, 300] do
        pid = start_wasi(%WasiOptions{args: ["wasi_test", "exit", "#{code}"]})
        assert Wasmex.call_function(pid, :_start, []) == {:error, {:exit, code}}
      end
    end

    test "exit code 0 is success" do
      pid = start_wasi(%WasiOptions{args: ["wasi_test", "exit", "0"]})
      assert Wasmex.call_function(pid, :_start, []) == {:ok, []}
    end
  end

  describe "preopened directories" do
    test "a program lists, reads, writes and creates files in its preopen", context do
      dir = tmp_dir(context)
      File.write!(Path.join(dir, "hello.txt"), "hello file")
      preopen = [%PreopenOptions{path: dir, alias: "src"}]
      assert run(["read", "src/hello.txt"], preopen: preopen) == {{:ok, []}, "hello file"}
      assert run(["write", "src/new.txt", "created"], preopen: preopen) == {{:ok, []}, "ok\n"}
      assert File.read!(Path.join(dir, "new.txt")) == "created"
      assert run(["ls", "src"], preopen: preopen) == {{:ok, []}, "hello.txt\nnew.txt\n"}
    end

    test "without a preopen, the program sees no files" do
      assert {{:ok, []}, "error: " <> _} = run(["ls", "."])
    end

    test "a read-only preopen can be read but not written", context do
      dir = tmp_dir(context)
      File.write!(Path.join(dir, "hello.txt"), "hello file")
      preopen = [%PreopenOptions{path: dir, alias: "ro", read_only: true}]
      assert run(["read", "ro/hello.txt"], preopen: preopen) == {{:ok, []}, "hello file"}
      assert {{:ok, []}, "error: " <> _} = run(["write", "ro/new.txt", "x"], preopen: preopen)
      refute File.exists?(Path.join(dir, "new.txt"))
    end

    test "every escape attempt is denied and nothing outside is touched", context do
      root = tmp_dir(context)
      jail = Path.join(root, "jail")
      File.mkdir_p!(jail)
      File.write!(Path.join(root, "outside.txt"), "secret")
      File.ln_s!("../outside.txt", Path.join(jail, "escape_link_rel"))
      File.ln_s!("/etc/passwd", Path.join(jail, "escape_link_abs"))
      before = File.ls!(root) |> Enum.sort()

      {{:ok, []}, out} = run(["escape", "."], preopen: [%PreopenOptions{path: jail, alias: "."}])

      assert out ==
               """
               parent_read: denied
               absolute_read: denied
               symlink_relative: denied
               symlink_absolute: denied
               parent_create: denied
               parent_list: denied
               """

      assert File.ls!(root) |> Enum.sort() == before
      assert File.read!(Path.join(root, "outside.txt")) == "secret"
    end

    test "a missing preopen directory is a clear error" do
      options = %WasiOptions{preopen: [%PreopenOptions{path: "/nonexistent/dir"}]}

      assert Wasmex.Store.new_wasi(options) ==
               {:error, "wasi preopen path \"/nonexistent/dir\" is not a directory"}
    end
  end

  describe "max_open_files" do
    # `open_all` opens f.txt in the first preopen until an open fails and returns
    # opened * 1000 + errno; `close_last` closes the file opened last.
    @opener """
    (module
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "f.txt")
      (func (export "open_all") (result i32) (local $n i32) (local $errno i32)
        (block $done
          (loop $next
            (local.set $errno (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 5)
              (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8)))
            (br_if $done (local.get $errno))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            (br $next)))
        (i32.add (i32.mul (local.get $n) (i32.const 1000)) (local.get $errno)))
      (func (export "close_last") (result i32) (call $close (i32.load (i32.const 8)))))
    """

    @emfile 33

    defp opener(context, wasi_fields, store_options \\ []) do
      dir = tmp_dir(context)
      File.write!(Path.join(dir, "f.txt"), "x")
      options = struct(WasiOptions, [preopen: [%PreopenOptions{path: dir}]] ++ wasi_fields)
      {:ok, store} = apply(Wasmex.Store, :new_wasi, [options | store_options])
      {:ok, module} = Wasmex.Module.compile(store, @opener)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      pid
    end

    test "an open past the budget fails with EMFILE; preopens are not counted", context do
      pid = opener(context, max_open_files: 10)
      assert Wasmex.call_function(pid, "open_all", []) == {:ok, [10 * 1000 + @emfile]}
    end

    test "closing a file makes room for another", context do
      pid = opener(context, max_open_files: 10)
      {:ok, _} = Wasmex.call_function(pid, "open_all", [])
      {:ok, [0]} = Wasmex.call_function(pid, "close_last", [])
      assert Wasmex.call_function(pid, "open_all", []) == {:ok, [1 * 1000 + @emfile]}
    end

    test "by default a store opens 256; the other stores of its host keep theirs", context do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      greedy = opener(context, [], [nil, engine])
      {:ok, [by_greedy]} = Wasmex.call_function(greedy, "open_all", [])
      other = opener(context, [], [nil, engine])

      assert {by_greedy, Wasmex.call_function(other, "open_all", [])} ==
               {256 * 1000 + @emfile, {:ok, [256 * 1000 + @emfile]}}
    end

    test "a budget of 0 is refused" do
      assert Wasmex.Store.new_wasi(%WasiOptions{max_open_files: 0}) ==
               {:error, "wasi max_open_files must be a positive integer, got: 0"}
    end
  end

  describe "overriding WASI functions with imports" do
    test "random_get from Elixir replaces the native one (the Wasmex docs example)" do
      imports = %{
        wasi_snapshot_preview1: %{
          random_get:
            {:fn, [:i32, :i32], [:i32],
             fn %{memory: memory, caller: caller}, address, size ->
               Enum.each(0..(size - 1), fn index ->
                 Wasmex.Memory.set_byte(caller, memory, address + index, 0)
               end)

               Wasmex.Memory.set_byte(caller, memory, address, 4)
               0
             end}
        }
      }

      {:ok, stdout} = Pipe.new()
      options = %WasiOptions{args: ["wasi_test", "info"], stdout: stdout}
      {:ok, pid} = Wasmex.start_link(%{bytes: @wasi_test, wasi: options, imports: imports})
      {:ok, []} = Wasmex.call_function(pid, :_start, [])
      Pipe.seek(stdout, 0)
      assert Pipe.read(stdout) =~ "Random Number: 4"
    end
  end
end
