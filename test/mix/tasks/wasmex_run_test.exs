defmodule Mix.Tasks.Wasmex.RunTest do
  @moduledoc "`mix wasmex.run`, run as a user runs it: a `mix` process with a pipe for stdin."
  use ExUnit.Case, async: true

  @root Path.expand("../../..", __DIR__)

  # Runs `mix wasmex.run` on the WASI test program with `args`, `input` on its stdin;
  # returns its stdout, byte for byte, and its exit status.
  defp wasmex_run(args, input) do
    input_file = Path.join(System.tmp_dir!(), "wasmex_run_#{System.unique_integer([:positive])}")
    File.write!(input_file, input)
    on_exit(fn -> File.rm(input_file) end)
    command = "mix wasmex.run test/fixtures/wasi_test.wasm -- #{args} < #{input_file} 2>/dev/null"
    System.cmd("sh", ["-c", command], cd: @root, env: [{"MIX_ENV", "test"}])
  end

  describe "run/1" do
    test "passes the program's input and output through as bytes, UTF-8 or not" do
      input = "✓ \xFF\xFE\n"
      assert wasmex_run("echo", input) == {input, 0}
    end
  end
end
