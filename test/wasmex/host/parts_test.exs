defmodule Wasmex.Host.PartsTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Parts

  doctest Parts

  describe "add/4 and complete/3" do
    test "an answer with parts is its parts and its last bytes, in order" do
      parts = Parts.new() |> Parts.add(1, "a") |> Parts.add(2, "x") |> Parts.add(1, "b")
      assert {{:ok, {:parts, ["a", "b", "c"]}}, _} = Parts.complete(parts, 1, {:ok, "c"})
    end

    test "completing takes the id's parts out, leaving the others" do
      parts = Parts.new() |> Parts.add(1, "a") |> Parts.add(2, "x")
      {_, parts} = Parts.complete(parts, 1, {:ok, "c"})
      assert parts == Parts.add(Parts.new(), 2, "x")
    end

    test "an answer without parts is itself" do
      assert Parts.complete(Parts.new(), 3, {:ok, [1]}) == {{:ok, [1]}, Parts.new()}
    end

    test "a failed answer drops its parts and stays the failure" do
      parts = Parts.add(Parts.new(), 1, "a")
      assert Parts.complete(parts, 1, {:error, "stopped"}) == {{:error, "stopped"}, Parts.new()}
    end

    test "parts ended by anything but bytes make a malformed reply" do
      parts = Parts.add(Parts.new(), 1, "a")

      assert {{:error, "malformed reply from the Wasm host: parts ended by [1]"}, _} =
               Parts.complete(parts, 1, {:ok, [1]})
    end

    test "parts past the limit are dropped and the answer becomes an error" do
      parts = Parts.new() |> Parts.add(1, "abc", 4) |> Parts.add(1, "de", 4)
      assert parts.by_id == %{1 => :over}

      assert {{:error, "malformed reply from the Wasm host: its parts are over" <> _}, _} =
               Parts.complete(parts, 1, {:ok, "f"})
    end
  end
end
