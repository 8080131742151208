defmodule Wasmex.Wasi.WasiP2OptionsTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Wasi.WasiP2Options

  alias Wasmex.Components
  alias Wasmex.Wasi.{PreopenOptions, WasiP2Options}

  @cli "test/fixtures/components/wasi_cli.wasm"
  @run {"wasi:cli/run@0.2.12", "run"}

  @moduletag :tmp_dir

  defp run(options) do
    {:ok, pid} = Components.start_link(path: @cli, wasi: options)
    {pid, Components.call_function(pid, @run, [])}
  end

  defp contents(pipe) do
    Wasmex.Pipe.seek(pipe, 0)
    Wasmex.Pipe.read(pipe)
  end

  defp pipes do
    {:ok, out} = Wasmex.Pipe.new()
    {:ok, err} = Wasmex.Pipe.new()
    %{out: out, err: err}
  end

  describe "to_wire/1 (through Wasmex.Components.Store.new_wasi/1)" do
    test "a command reads its args, env and a preopened directory, and writes stdout, stderr and a file",
         %{tmp_dir: dir} do
      File.write!(Path.join(dir, "in.txt"), "from the host\n")
      %{out: out, err: err} = pipes()

      options = %WasiP2Options{
        args: ["prog", "one", "two"],
        env: %{"GREETING" => "hi"},
        stdout: out,
        stderr: err,
        preopen: [%PreopenOptions{path: dir, alias: "data"}]
      }

      assert {_pid, {:ok, :ok}} = run(options)
      assert contents(out) == "args: one two\nenv GREETING=hi\nfrom the host\n"
      assert contents(err) == "done\n"
      assert File.read!(Path.join(dir, "out.txt")) == "written by wasi_cli"
    end

    test "a read-only preopen can be read and not written", %{tmp_dir: dir} do
      File.write!(Path.join(dir, "in.txt"), "read me\n")
      %{out: out} = pipes()

      options = %WasiP2Options{
        stdout: out,
        inherit_stderr: false,
        preopen: [%PreopenOptions{path: dir, alias: "data", read_only: true}]
      }

      assert {_pid, {:ok, :ok}} = run(options)
      assert contents(out) =~ "read me"
      refute File.exists?(Path.join(dir, "out.txt"))
    end

    test "without options nothing is given: no args, env or directories" do
      options = %WasiP2Options{stdout: {:messages, self()}, inherit_stderr: false}
      {:ok, store} = Components.Store.new_wasi(options)
      assert {_pid, {:ok, :ok}} = {nil, run_in(store)}
      output = collect_stdout(store, "")
      assert output == "args:\nenv GREETING unset\nno data/in.txt\n"
    end

    test "a failing command answers its exit status, and the instance has ended" do
      options = %WasiP2Options{
        args: ["prog", "fail"],
        inherit_stdout: false,
        inherit_stderr: false
      }

      {pid, result} = run(options)
      assert result == {:error, {:exit, 1}}

      assert {:error,
              "the component instance stopped after an earlier failure (the program exited with status 1): start a new one"} =
               Components.call_function(pid, @run, [])
    end

    test "stdin from a pipe: the program reads what is in it, then the end of input" do
      {:ok, input} = Wasmex.Pipe.new()
      Wasmex.Pipe.write(input, "piped line\n")
      Wasmex.Pipe.seek(input, 0)
      %{out: out} = pipes()

      options = %WasiP2Options{
        args: ["prog", "stdin"],
        stdin: input,
        stdout: out,
        inherit_stderr: false
      }

      assert {_pid, {:ok, :ok}} = run(options)
      assert contents(out) =~ ~r/no data\/in.txt\npiped line\n$/
    end

    test "stdin as messages: input is fed while the program runs" do
      options = %WasiP2Options{
        args: ["prog", "stdin"],
        stdin: :messages,
        stdout: {:messages, self()},
        inherit_stderr: false
      }

      {:ok, store} = Components.Store.new_wasi(options)
      {:ok, pid} = Components.start_link(path: @cli, store: store)
      task = Task.async(fn -> Components.call_function(pid, @run, [], 5_000) end)
      # The program's first output: it runs, and reads stdin next.
      assert_receive {:wasmex_stdout, _, "args:" <> _}
      Wasmex.Wasi.write_stdin(store, "fed ")
      Wasmex.Wasi.write_stdin(store, "later\n")
      Wasmex.Wasi.close_stdin(store)
      assert {:ok, :ok} = Task.await(task)
      assert collect_stdout(store, "") =~ "fed later\n"
    end

    test "a program waiting for stdin that never comes is stopped at the call's timeout" do
      options = %WasiP2Options{
        args: ["prog", "stdin"],
        stdin: :messages,
        inherit_stdout: false,
        inherit_stderr: false
      }

      {:ok, pid} = Components.start_link(path: @cli, wasi: options)

      assert {:error, "timed out: the call did not finish within 200 ms and was stopped"} =
               Components.call_function(pid, @run, [], 200)
    end

    test "the interface may be named without its version" do
      options = %WasiP2Options{inherit_stdout: false, inherit_stderr: false}
      {:ok, pid} = Components.start_link(path: @cli, wasi: options)
      assert {:ok, :ok} = Components.call_function(pid, {"wasi:cli/run", "run"}, [])
    end

    test "refuses what this runtime cannot give, and options of the wrong shape", %{tmp_dir: dir} do
      assert {:error, "allow_http is not supported: this runtime has no WASI HTTP"} =
               Components.Store.new_wasi(%WasiP2Options{allow_http: true})

      assert {:error, "wasi inherit_stdout must be true or false, got: :yes"} =
               Components.Store.new_wasi(%WasiP2Options{inherit_stdout: :yes})

      assert {:error, "wasi preopen path must be a non-empty string" <> _} =
               Components.Store.new_wasi(%WasiP2Options{preopen: [%PreopenOptions{path: ""}]})

      assert {:error, _} =
               Components.Store.new_wasi(%WasiP2Options{
                 preopen: [%PreopenOptions{path: Path.join(dir, "missing")}]
               })

      assert {:error, _} = Components.Store.new_wasi(%WasiP2Options{args: [1]})

      assert {:error, _} =
               Components.start_link(path: @cli, wasi: %WasiP2Options{env: %{"A=B" => "c"}})
    end
  end

  defp run_in(store) do
    {:ok, pid} = Components.start_link(path: @cli, store: store)
    Components.call_function(pid, @run, [])
  end

  # What the program wrote to stdout, sent as messages.
  defp collect_stdout(store, acc) do
    resource = store.resource

    receive do
      {:wasmex_stdout, %{resource: ^resource}, bytes} -> collect_stdout(store, acc <> bytes)
    after
      100 -> acc
    end
  end
end
