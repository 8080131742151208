defmodule Wasmex.Module.SealTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Module.Seal

  alias Wasmex.Module.Seal

  @key :binary.copy(<<1>>, 32)

  defp tmp_path(name) do
    dir = Path.join(System.tmp_dir!(), "wasmex_seal_test_#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf!(dir) end)
    Path.join(dir, name)
  end

  describe "open/2" do
    test "gives back the artifact sealed under the same key" do
      assert {:ok, "code", _} = Seal.open(Seal.seal("code", @key), @key)
    end

    test "gives the digest that names the artifact as a module source" do
      {:ok, _, digest} = Seal.open(Seal.seal("code", @key), @key)
      assert digest == Wasmex.Module.key({:precompiled, "code"})
    end

    test "refuses an artifact changed after it was sealed" do
      <<first, rest::binary>> = Seal.seal("code", @key)

      assert {:error, "Could not deserialize module: the artifact's seal does not match" <> _} =
               Seal.open(<<Bitwise.bxor(first, 1), rest::binary>>, @key)
    end

    test "refuses bytes without a seal, however short" do
      for bytes <- ["", "x", "not an artifact", :binary.copy(<<0>>, 40)] do
        assert {:error,
                "Could not deserialize module: the bytes are not a module serialized" <> _} =
                 Seal.open(bytes, @key)
      end
    end
  end

  describe "sealed/1" do
    test "seals the artifact of an answer under this node's key" do
      {:ok, key} = Seal.key()
      {:ok, sealed} = Seal.sealed({:ok, "code"})
      assert {:ok, "code", _} = Seal.open(sealed, key)
    end

    test "passes an error on" do
      assert Seal.sealed({:error, "no"}) == {:error, "no"}
    end
  end

  describe "load/2" do
    test "takes a configured key of 32 bytes or more" do
      assert Seal.load(@key, tmp_path("unused")) == {:ok, @key}
    end

    test "refuses a configured key that is too short" do
      assert {:error,
              "config :wasmex, artifact_key must be a binary of at least 32 bytes, got: 5 bytes"} =
               Seal.load("short", tmp_path("unused"))
    end

    test "makes a key file readable by its owner only, and reads the same key again" do
      path = tmp_path("artifact_key")
      {:ok, key} = Seal.load(nil, path)

      assert {byte_size(key), File.stat!(path).mode |> Bitwise.band(0o777), Seal.load(nil, path)} ==
               {32, 0o600, {:ok, key}}
    end

    test "refuses a key file that others can read" do
      path = tmp_path("artifact_key")
      {:ok, _} = Seal.load(nil, path)
      File.chmod!(path, 0o644)
      assert {:error, "the artifact key " <> message} = Seal.load(nil, path)
      assert message =~ "can be read or written by others (mode 644)"
    end

    test "refuses a key file that belongs to another user" do
      stat = %File.Stat{type: :regular, mode: 0o100600, uid: 65_534}

      assert Seal.check_key_file("k", stat, 1000) ==
               {:error, "the artifact key k belongs to another user"}
    end

    test "takes a private key file of the node's own user" do
      assert Seal.check_key_file("k", %File.Stat{type: :regular, mode: 0o100600, uid: 7}, 7) ==
               :ok
    end

    test "refuses a key file that is a link" do
      path = tmp_path("artifact_key")
      {:ok, _} = Seal.load(nil, path <> ".real")
      File.ln_s!(path <> ".real", path)
      assert {:error, "the artifact key " <> message} = Seal.load(nil, path)
      assert message =~ "is not a regular file"
    end

    test "two nodes making the key at once get the same key" do
      path = tmp_path("artifact_key")
      script = ~s{IO.write(:erlang.term_to_binary(Wasmex.Module.Seal.load(nil, "#{path}")))}
      ebin = Path.join(Mix.Project.build_path(), "lib/wasmex/ebin")
      run = fn -> Task.async(fn -> System.cmd("elixir", ["-pa", ebin, "-e", script]) end) end
      results = [run.(), run.()] |> Task.await_many(30_000)
      keys = Enum.map(results, fn {out, 0} -> :erlang.binary_to_term(out) end)
      assert [{:ok, key}, {:ok, key}] = keys
    end

    test "refuses a key file that is too short" do
      path = tmp_path("artifact_key")
      File.mkdir_p!(Path.dirname(path))
      File.write!(path, "short")
      File.chmod!(path, 0o600)
      assert Seal.load(nil, path) == {:error, "the artifact key #{path} is too short"}
    end

    test "says why a key file cannot be made" do
      # A directory that cannot be made: a file stands where it would go.
      file = tmp_path("a_file")
      File.mkdir_p!(Path.dirname(file))
      File.write!(file, "")

      assert {:error, "cannot make or read the artifact key " <> _} =
               Seal.load(nil, Path.join(file, "artifact_key"))
    end
  end
end
