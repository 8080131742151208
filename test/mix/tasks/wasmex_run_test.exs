defmodule Mix.Tasks.Wasmex.RunTest do
  @moduledoc "`mix wasmex.run`, run as a user runs it: a `mix` process with a file for stdin."
  use ExUnit.Case, async: true

  @root Path.expand("../../..", __DIR__)

  # Runs `mix wasmex.run test/fixtures/wasi_test.wasm <args>` with `input` on its stdin
  # (for at most a minute); returns its stdout (with `stderr: true`, and its stderr), byte
  # for byte, and its exit status.
  defp wasmex_run(args, input \\ "", opts \\ []) do
    input_file = Path.join(System.tmp_dir!(), "wasmex_run_#{System.unique_integer([:positive])}")
    File.write!(input_file, input)
    on_exit(fn -> File.rm(input_file) end)

    command =
      "timeout 60 mix wasmex.run test/fixtures/wasi_test.wasm #{args} < #{input_file} " <>
        if(opts[:stderr], do: "2>&1", else: "2>/dev/null")

    System.cmd("sh", ["-c", command], cd: @root, env: [{"MIX_ENV", "test"}])
  end

  describe "run/1" do
    test "passes the program's input and output through as bytes, UTF-8 or not" do
      input = "✓ \xFF\xFE\n"
      assert wasmex_run("-- echo", input) == {input, 0}
    end

    test "exits with the program's exit code" do
      assert wasmex_run("-- exit 3") == {"", 3}
    end

    test "--invoke relays the program's output, more of it than the output window" do
      {output, 0} = wasmex_run("--invoke _start -- big 2000000")
      assert byte_size(output) == 2_000_000
    end

    test "a preopen that is not a directory is an error that says so" do
      {output, 1} = wasmex_run("--dir /nonexistent/dir -- info", "", stderr: true)
      assert output =~ ~s{wasi preopen path "/nonexistent/dir" is not a directory}
    end
  end
end
