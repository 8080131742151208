defmodule Wasmex.System.Rebar3Test do
  @moduledoc """
  A rebar3 project depending on this library, run as an Erlang user runs it: a copy of
  `examples/rebar3_demo` (the steps of docs/guides/erlang.md), with nothing in the
  environment but `PATH` and `HOME` (no `ERL_LIBS`, no `MIX_ENV`), offline.
  """
  use ExUnit.Case, async: true

  @moduletag timeout: 900_000

  @root Path.expand("../..", __DIR__)
  @demo Path.join(@root, "examples/rebar3_demo")

  # One copy of the example for the module; its tests run one after another in it.
  setup_all do
    dir = Path.join(System.tmp_dir!(), "wasmex_rebar3_demo_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    for name <- ~w(rebar.config src test) do
      File.cp_r!(Path.join(@demo, name), Path.join(dir, name))
    end

    # The example's checkout link is relative to the repository; the copy needs it whole.
    File.mkdir_p!(Path.join(dir, "_checkouts"))
    File.ln_s!(@root, Path.join(dir, "_checkouts/wasmex"))
    %{project: dir}
  end

  describe "rebar3 eunit" do
    test "builds wasmex as a dependency and passes the example's EUnit tests", %{project: dir} do
      {output, status} = rebar3(dir, ["eunit"])
      assert status == 0, output
      assert output =~ ~r/3 tests, 0 failures/
    end
  end

  describe "rebar3 ct" do
    test "passes the example's Common Test suite", %{project: dir} do
      {output, status} = rebar3(dir, ["ct"])
      assert status == 0, output
      assert output =~ "All 2 tests passed."
    end
  end

  describe "rebar3 shell" do
    test "starts wasmex, elixir and logger, and runs Wasm", %{project: dir} do
      port = open(dir, System.find_executable("rebar3"), ["shell"])
      await_output(port, "Booted rebar3_demo")
      assert add_and_halt(port) == {:exit_status, 0}
    end
  end

  describe "rebar3 release" do
    test "assembles a release with elixir, logger and the port program that runs Wasm",
         %{project: dir} do
      {output, status} = rebar3(dir, ["release"])
      assert status == 0, output
      assert output =~ "Release successfully assembled"

      release = Path.join(dir, "_build/default/rel/rebar3_demo")
      apps = File.ls!(Path.join(release, "lib"))

      for app <- ~w(elixir logger wasmex rebar3_demo) do
        assert Enum.any?(apps, &String.starts_with?(&1, app <> "-")), inspect(apps)
      end

      [wasmex] = Enum.filter(apps, &String.starts_with?(&1, "wasmex-"))
      assert File.exists?(Path.join([release, "lib", wasmex, "priv/wasmex_port"]))

      # The release boots (in embedded mode) and runs Wasm, without cargo or Elixir on the
      # PATH.
      port = open(dir, Path.join(release, "bin/rebar3_demo"), ["console"], "/usr/bin:/bin")
      await_output(port, "1> ")
      assert add_and_halt(port) == {:exit_status, 0}
    end
  end

  describe "without Elixir on the PATH" do
    test "rebar3 stops and says to install Elixir", %{project: dir} do
      # rebar3, Erlang and the tools their scripts use; no elixir, no mix.
      bin = Path.join(dir, "bin_without_elixir")
      File.mkdir_p!(bin)

      for tool <- ~w(rebar3 escript erl sh dirname basename sed uname readlink) do
        File.ln_s!(System.find_executable(tool), Path.join(bin, tool))
      end

      {output, status} =
        System.cmd("env", ["-i" | env(bin)] ++ ["rebar3", "compile"],
          cd: dir,
          stderr_to_stdout: true
        )

      assert status == 1, output
      assert output =~ "wasmex is written in Elixir: install Elixir"
    end
  end

  describe "a git dependency" do
    # What a project of one's own does: rebar3 clones wasmex (this commit) into _build and
    # builds it there, port included. Cargo's output goes to this checkout's target/ so
    # that wasmtime is not compiled again.
    test "is fetched and built, and the example's EUnit tests pass with it" do
      dir =
        Path.join(System.tmp_dir!(), "wasmex_rebar3_git_#{System.unique_integer([:positive])}")

      on_exit(fn -> File.rm_rf!(dir) end)
      File.mkdir_p!(dir)
      File.cp_r!(Path.join(@demo, "src"), Path.join(dir, "src"))
      File.cp_r!(Path.join(@demo, "test"), Path.join(dir, "test"))
      {sha, 0} = System.cmd("git", ["rev-parse", "HEAD"], cd: @root)
      dep = ~s|{wasmex, {git, "file://#{@root}", {ref, "#{String.trim(sha)}"}}}|
      File.write!(Path.join(dir, "rebar.config"), "{deps, [#{dep}]}.\n")

      {output, status} =
        rebar3(dir, ["eunit"], ["CARGO_TARGET_DIR=#{Path.join(@root, "target")}"])

      assert status == 0, output
      assert output =~ ~r/3 tests, 0 failures/
      assert File.exists?(Path.join(dir, "_build/default/lib/wasmex/priv/wasmex_port"))
    end
  end

  defp rebar3(dir, args, extra_env \\ []) do
    System.cmd("env", ["-i" | env(System.get_env("PATH"))] ++ extra_env ++ ["rebar3" | args],
      cd: dir,
      stderr_to_stdout: true
    )
  end

  defp env(path), do: ["PATH=#{path}", "HOME=#{System.user_home!()}"]

  defp open(dir, executable, args, path \\ System.get_env("PATH")) do
    Port.open({:spawn_executable, System.find_executable("env")}, [
      :binary,
      :exit_status,
      :stderr_to_stdout,
      cd: dir,
      args: ["-i" | env(path)] ++ [executable | args]
    ])
  end

  # Collects the port's output until it contains `text`; fails with what came otherwise.
  defp await_output(port, text, seen \\ "") do
    receive do
      {^port, {:data, data}} ->
        seen = seen <> data
        if String.contains?(seen, text), do: seen, else: await_output(port, text, seen)

      {^port, {:exit_status, status}} ->
        flunk("exited with #{status} before #{inspect(text)}:\n#{seen}")
    after
      300_000 -> flunk("no #{inspect(text)} in 300 s:\n#{seen}")
    end
  end

  # Asks an Erlang shell on `port` for rebar3_demo:add(50, -8), waits for sum=42, halts it;
  # returns how it exited.
  defp add_and_halt(port) do
    Port.command(port, ~s|io:format("sum=~p~n", [rebar3_demo:add(50, -8)]).\n|)
    await_output(port, "sum=42")
    Port.command(port, "halt().\n")

    receive do
      {^port, {:exit_status, _} = exit} -> exit
    after
      30_000 -> :no_exit_within_30_s
    end
  end
end
