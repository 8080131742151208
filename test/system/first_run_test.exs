defmodule Wasmex.System.FirstRunTest do
  @moduledoc """
  What a newcomer meets: a fresh `git clone` of this repository (committed files only, no
  `priv/`, no `_build/`), then the README's first command, in an environment holding only
  `PATH` and `HOME`.

  Cargo's output goes to this checkout's `target/` (`CARGO_TARGET_DIR`), so the clone
  compiles the port crate again but not wasmtime; the mechanism under test does not depend
  on it.
  """
  use ExUnit.Case, async: true

  @moduletag timeout: 900_000
  @moduletag :tmp_dir

  @root Path.expand("../..", __DIR__)

  describe "mix wasmex.run in a fresh clone" do
    test "builds the port and runs the WASI program the first time", %{tmp_dir: tmp} do
      clone = clone!(tmp)

      {output, status} =
        clean_env(
          clone,
          [{"PATH", System.get_env("PATH")}, {"CARGO_TARGET_DIR", Path.join(@root, "target")}],
          ["mix", "wasmex.run", "test/fixtures/wasi_test.wasm", "--", "info"]
        )

      assert status == 0, output
      assert output =~ "Arguments:\nwasi_test.wasm\ninfo\n"
      assert File.exists?(Path.join(clone, "_build/dev/lib/wasmex/priv/wasmex_port"))
    end
  end

  describe "mix compile without cargo" do
    test "stops and says what to install", %{tmp_dir: tmp} do
      clone = clone!(tmp)
      # A PATH with Elixir, Erlang and the few tools their scripts use, and no cargo.
      bin = Path.join(tmp, "bin")
      File.mkdir_p!(bin)

      for tool <- ~w(mix elixir erl sh dirname basename readlink sed uname) do
        File.ln_s!(System.find_executable(tool), Path.join(bin, tool))
      end

      {output, status} = clean_env(clone, [{"PATH", bin}], ["mix", "compile"])

      assert status == 1, output
      assert output =~ "wasmex needs cargo to build its port program"
      assert output =~ "Install a Rust toolchain"
      refute File.exists?(Path.join(clone, "priv/wasmex_port"))
    end
  end

  defp clone!(tmp) do
    clone = Path.join(tmp, "wasmex")
    {out, 0} = System.cmd("git", ["clone", "--quiet", @root, clone], stderr_to_stdout: true)
    assert out == ""
    refute File.exists?(Path.join(clone, "priv"))
    clone
  end

  # Runs `command` in `dir` with nothing in the environment but HOME and `vars`.
  defp clean_env(dir, vars, command) do
    assignments = for {k, v} <- [{"HOME", System.user_home!()} | vars], do: "#{k}=#{v}"
    System.cmd("env", ["-i" | assignments] ++ command, cd: dir, stderr_to_stdout: true)
  end
end
