defmodule Wasmex.System.AtomTableTest do
  # A node whose atom table is full stops, and atoms are never freed: the WIT names of
  # compiled components are made atoms only while the table stays at most half full.
  # Checked in a BEAM of its own, with a small atom table.
  use ExUnit.Case, async: true

  @script """
  {:ok, _} = Application.ensure_all_started(:wasmex)
  count = :erlang.system_info(:atom_count)
  limit = :erlang.system_info(:atom_limit)
  # An enum with just enough new case names to pass the half-full mark.
  n = div(limit, 2) - count + 100
  prefix = "c\#{System.unique_integer([:positive])}x"
  cases = Enum.map_join(1..n, " ", &~s("\#{prefix}\#{&1}"))
  wat = "(component (type $e (enum \#{cases})) (export \\"e\\" (type $e)))"
  {:ok, store} = Wasmex.Components.Store.new()
  {:error, reason} = Wasmex.Components.Component.new(store, wat)
  IO.puts("REFUSED " <> reason)
  IO.puts("NEW_ATOMS \#{:erlang.system_info(:atom_count) - count}")
  IO.puts("STILL_WORKS " <> inspect(Wasmex.Components.Component.new(store, "(component)") |> elem(0)))
  """

  setup_all do
    ebin = Path.join(Mix.Project.build_path(), "lib/wasmex/ebin")

    {out, 0} =
      System.cmd("elixir", ["--erl", "+t 40000", "-pa", ebin, "-e", @script],
        stderr_to_stdout: true
      )

    lines =
      for line <- String.split(out, "\n"),
          [k, v] <- [String.split(line, " ", parts: 2)],
          into: %{},
          do: {k, v}

    %{out: lines}
  end

  test "a component whose names would fill the table past half is refused, saying why", %{
    out: out
  } do
    assert out["REFUSED"] =~ "the node's atom table"
  end

  test "the refused component's names do not become atoms", %{out: out} do
    # The BEAM makes a few atoms of its own meanwhile (modules it loads, the error text).
    assert String.to_integer(out["NEW_ATOMS"]) < 1_000
  end

  test "components with names already in the table still compile", %{out: out} do
    assert out["STILL_WORKS"] == ":ok"
  end
end
