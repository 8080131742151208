defmodule Wasmex.Guides.SandboxingGuideTest do
  @moduledoc """
  docs/guides/sandboxing.md runs as written: its Elixir blocks are evaluated in order, in
  one environment (aliases and variables carry from block to block), from the repository
  root, as a reader pasting them into `iex -S mix` would. Each block asserts its own
  results with pattern matches, so a block that does not do what the guide says fails here
  with the guide's file and line.
  """
  use ExUnit.Case, async: true

  @root Path.expand("../..", __DIR__)
  @guide Path.join(@root, "docs/guides/sandboxing.md")

  # {first line of the code, code} for each ```elixir block.
  defp elixir_blocks(path) do
    path
    |> File.read!()
    |> String.split("\n")
    |> Enum.with_index(1)
    |> Enum.reduce({nil, []}, fn
      {"```elixir", line}, {nil, blocks} -> {{line + 1, []}, blocks}
      {"```", _}, {{start, lines}, blocks} -> {nil, [{start, Enum.reverse(lines)} | blocks]}
      {text, _}, {{start, lines}, blocks} -> {{start, [text | lines]}, blocks}
      _, acc -> acc
    end)
    |> elem(1)
    |> Enum.reverse()
    |> Enum.map(fn {start, lines} -> {start, Enum.join(lines, "\n")} end)
  end

  describe "docs/guides/sandboxing.md" do
    test "every Elixir block runs, in order, and does what the guide says" do
      blocks = elixir_blocks(@guide)
      assert length(blocks) >= 8

      # The guide's paths are relative to the repository root, where `mix test` runs.
      assert File.cwd!() == @root

      Enum.reduce(blocks, {[], __ENV__}, fn {line, code}, {binding, env} ->
        quoted = Code.string_to_quoted!(code, file: @guide, line: line)

        {_value, binding, env} = Code.eval_quoted_with_env(quoted, binding, %{env | file: @guide})

        {binding, env}
      end)
    end
  end
end
