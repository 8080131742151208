defmodule Wasmex.Host.KnownModulesTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.KnownModules

  doctest KnownModules

  @not_loaded {:error, "the module is not loaded in this host and no source was sent"}

  defp instantiate(source, link_source),
    do: {1, "main", source, "h", [], [{"dep", "dep", link_source}], 1_000}

  # The keys a struct knows, learnt by a successful compile of each.
  defp knowing(keys) do
    Enum.reduce(keys, KnownModules.new(), fn key, known ->
      {_args, data} = KnownModules.prepare(known, :module_compile, {key, {:wasm, "b"}})
      {:ok, known} = KnownModules.answered(known, data, {:ok, :compiled})
      known
    end)
  end

  describe "prepare/3" do
    test "leaves out the sources of known modules, main and links alike" do
      known = knowing(["main"])
      {args, _} = KnownModules.prepare(known, :instantiate, instantiate(:src, :dep_src))
      assert args == instantiate(nil, :dep_src)
    end

    test "a request that names no module is sent as it is, with nothing kept" do
      assert KnownModules.prepare(knowing(["k"]), :call, {1, 2, "f", [], 5}) ==
               {{1, 2, "f", [], 5}, nil}
    end
  end

  describe "answered/3" do
    test "a success teaches the keys whose sources went along" do
      known = KnownModules.new()
      {_, data} = KnownModules.prepare(known, :instantiate, instantiate(:src, :dep_src))
      assert {:ok, known} = KnownModules.answered(known, data, {:ok, 1})
      assert KnownModules.known?(known, "main")
      assert KnownModules.known?(known, "dep")
    end

    test "a failure teaches nothing" do
      known = KnownModules.new()
      {_, data} = KnownModules.prepare(known, :module_compile, {"k", {:wasm, "b"}})
      assert {:ok, known} = KnownModules.answered(known, data, {:error, "bad"})
      refute KnownModules.known?(known, "k")
    end

    test "a port that dropped a module gets the request again, with the full sources" do
      known = knowing(["main", "dep"])
      full = instantiate(:src, :dep_src)
      {sent, data} = KnownModules.prepare(known, :instantiate, full)
      assert sent == instantiate(nil, nil)

      assert {:resend, :instantiate, ^full, known} =
               KnownModules.answered(known, data, @not_loaded)

      refute KnownModules.known?(known, "main")
      assert {^full, _} = KnownModules.prepare(known, :instantiate, full)
    end

    test "the same error for a request that left nothing out is just an answer" do
      known = KnownModules.new()
      {_, data} = KnownModules.prepare(known, :module_serialize, {"k", {:wasm, "b"}})
      assert {:ok, _} = KnownModules.answered(known, data, @not_loaded)
    end
  end
end
