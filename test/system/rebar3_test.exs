defmodule Wasmex.System.Rebar3Test do
  @moduledoc "A rebar3 project depends on this library and runs Wasm through it (offline)."
  use ExUnit.Case, async: true

  @moduletag timeout: 600_000

  test "examples/rebar3_demo builds and its EUnit tests pass" do
    demo = Path.expand("../../examples/rebar3_demo", __DIR__)
    elixir_libs = :elixir |> :code.lib_dir() |> to_string() |> Path.dirname()

    {output, status} =
      System.cmd("rebar3", ["eunit"],
        cd: demo,
        env: [{"ERL_LIBS", elixir_libs}, {"MIX_ENV", nil}, {"TERM", "dumb"}],
        stderr_to_stdout: true
      )

    assert status == 0, output
    assert output =~ ~r/3 tests, 0 failures/
  end
end
