defmodule Wasmex.ErlangTest do
  @moduledoc "Runs the EUnit suite in test/erlang: the library used from plain Erlang."
  use ExUnit.Case, async: true

  test "the Erlang EUnit suite passes" do
    source = Path.expand("erlang/wasmex_erlang_tests.erl", __DIR__)

    {:ok, module, beam} =
      :compile.file(String.to_charlist(source), [:binary, :debug_info, :return_errors])

    {:module, ^module} = :code.load_binary(module, String.to_charlist(source), beam)
    System.put_env("WASMEX_FIXTURES", Path.expand("fixtures", __DIR__))
    assert :eunit.test(module, [:no_tty]) == :ok
  end
end
