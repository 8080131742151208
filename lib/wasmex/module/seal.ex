defmodule Wasmex.Module.Seal do
  @moduledoc """
  Seals serialized modules, so that `Wasmex.Module.unsafe_deserialize/2` loads only
  artifacts made by `Wasmex.Module.serialize/1` or `Wasmex.Engine.precompile_module/2`
  with the same artifact key.

  A serialized module is native code: whoever can hand the port a crafted artifact runs
  code of their choosing in it, outside any sandbox. A sealed artifact ends with an
  HMAC-SHA256 tag, under a secret key, of the digest that already names the module
  (`Wasmex.Module`'s SHA-256 of its source), and a marker. An artifact changed after
  sealing, one sealed under another key, or bytes without a seal are refused before they
  reach the port.

      iex> key = :binary.copy(<<7>>, 32)
      iex> sealed = Wasmex.Module.Seal.seal("artifact bytes", key)
      iex> {:ok, "artifact bytes", _digest} = Wasmex.Module.Seal.open(sealed, key)
      iex> Wasmex.Module.Seal.open(sealed, :binary.copy(<<8>>, 32))
      {:error, "Could not deserialize module: the artifact's seal does not match this node's artifact key (the artifact was changed, or sealed where another key is set: see Wasmex.Module.Seal)"}

  ## The key

  `config :wasmex, artifact_key: key` sets it: a binary of at least 32 bytes, the same on
  every machine that serializes and loads the same artifacts (artifacts built once and
  loaded on other machines need it). Without it, each user has a key of their own: 32
  random bytes in `artifact_key` in the user's cache directory (`wasmex_port` under
  `:filename.basedir(:user_cache, ...)`), made on first use, readable only by its owner.
  A key file that others can read or write, that belongs to another user, or that is a
  link is refused, not used.
  """

  @marker "wasmexS1"
  @tag_size 32
  @min_key 32

  @doc "`artifact` with its seal under `key` appended."
  @spec seal(binary(), binary()) :: binary()
  def seal(artifact, key) when is_binary(artifact) and is_binary(key),
    do: artifact <> tag(digest(artifact), key) <> @marker

  @doc """
  A port's answer carrying an artifact, with the artifact sealed under this node's key;
  an error as it is.
  """
  @spec sealed({:ok, binary()} | {:error, String.t()}) :: {:ok, binary()} | {:error, String.t()}
  def sealed({:ok, artifact}) do
    with {:ok, key} <- key(), do: {:ok, seal(artifact, key)}
  end

  def sealed({:error, _} = error), do: error

  @doc """
  The artifact inside `sealed`, and its module digest, when the seal matches `key`.
  """
  @spec open(binary(), binary()) :: {:ok, binary(), binary()} | {:error, String.t()}
  def open(sealed, key) when is_binary(sealed) and is_binary(key) do
    size = byte_size(sealed) - @tag_size - byte_size(@marker)

    with true <- size >= 0,
         <<artifact::binary-size(size), tag::binary-size(@tag_size), @marker>> <- sealed do
      digest = digest(artifact)

      if :crypto.hash_equals(tag(digest, key), tag),
        do: {:ok, artifact, digest},
        else: {:error, mismatch()}
    else
      _ -> {:error, unsealed()}
    end
  end

  @doc """
  This node's artifact key: `config :wasmex, artifact_key: key`, else the user's key file
  (see the module documentation). Read once, then kept.
  """
  @spec key() :: {:ok, binary()} | {:error, String.t()}
  def key do
    case :persistent_term.get(__MODULE__, nil) do
      nil ->
        with {:ok, key} <- load(Application.get_env(:wasmex, :artifact_key), default_path()) do
          :persistent_term.put(__MODULE__, key)
          {:ok, key}
        end

      key ->
        {:ok, key}
    end
  end

  @doc """
  The key set in the configuration (`configured`), else the one in the file at `path`,
  made there first if there is none.
  """
  @spec load(binary() | nil, Path.t()) :: {:ok, binary()} | {:error, String.t()}
  def load(configured, path)

  def load(nil, path) do
    with :ok <- make_key_file(path), do: read_key_file(path)
  end

  def load(key, _path) when is_binary(key) and byte_size(key) >= @min_key, do: {:ok, key}

  def load(other, _path) do
    {:error,
     "config :wasmex, artifact_key must be a binary of at least #{@min_key} bytes, got: " <>
       describe(other)}
  end

  defp describe(key) when is_binary(key), do: "#{byte_size(key)} bytes"
  defp describe(other), do: inspect(other)

  defp default_path,
    do: Path.join(to_string(:filename.basedir(:user_cache, ~c"wasmex_port")), "artifact_key")

  # A new key is written whole in a private folder of its own (closed to others before the
  # key is in it), then linked to `path`: a reader never sees a partial key, no one else
  # can read it on the way, and two nodes making it at once keep the first one linked.
  defp make_key_file(path) do
    if File.exists?(path) do
      :ok
    else
      dir = Path.dirname(path)
      # A random name: unique_integer/1 repeats from one VM to the next, and two VMs may
      # make the key at once.
      private_dir =
        Path.join(dir, ".artifact_key." <> Base.url_encode64(:crypto.strong_rand_bytes(12)))

      part = Path.join(private_dir, "key")

      result =
        with :ok <- File.mkdir_p(dir),
             :ok <- File.mkdir(private_dir),
             :ok <- File.chmod(private_dir, 0o700),
             :ok <- File.write(part, :crypto.strong_rand_bytes(@min_key), [:exclusive]),
             :ok <- File.chmod(part, 0o600),
             linked when linked in [:ok, {:error, :eexist}] <- File.ln(part, path),
             do: :ok

      File.rm_rf(private_dir)
      if result == :ok, do: :ok, else: key_file_error(path, result)
    end
  end

  defp read_key_file(path) do
    with {:ok, stat} <- File.lstat(path),
         :ok <- check_key_file(path, stat, own_uid()),
         {:ok, key} when byte_size(key) >= @min_key <- File.read(path) do
      {:ok, key}
    else
      {:ok, short} when is_binary(short) -> {:error, "the artifact key #{path} is too short"}
      {:error, "the artifact key" <> _} = error -> error
      error -> key_file_error(path, error)
    end
  end

  @doc false
  # Whether the file at `path`, as `stat` describes it, may hold the key of a node running
  # as user `uid` (`nil`: unknown, where there is no /proc): a regular file, not a link,
  # that only its owner can read or write, and that owner the node's user.
  @spec check_key_file(Path.t(), File.Stat.t(), non_neg_integer() | nil) ::
          :ok | {:error, String.t()}
  def check_key_file(path, %File.Stat{type: :regular, mode: mode, uid: owner}, uid) do
    cond do
      Bitwise.band(mode, 0o077) != 0 -> private(path, mode)
      uid != nil and owner != uid -> {:error, "the artifact key #{path} belongs to another user"}
      true -> :ok
    end
  end

  def check_key_file(path, %File.Stat{}, _uid),
    do: {:error, "the artifact key #{path} is not a regular file (a link is not followed)"}

  defp own_uid do
    case File.stat("/proc/self") do
      {:ok, %File.Stat{uid: uid}} -> uid
      {:error, _} -> nil
    end
  end

  defp private(path, mode) do
    {:error,
     "the artifact key #{path} can be read or written by others (mode " <>
       "#{Integer.to_string(Bitwise.band(mode, 0o777), 8)}): make it readable by its " <>
       "owner only (chmod 600)"}
  end

  defp key_file_error(path, {:error, reason}),
    do: {:error, "cannot make or read the artifact key #{path}: #{:file.format_error(reason)}"}

  defp digest(artifact), do: :crypto.hash(:sha256, ["precompiled", artifact])

  defp tag(digest, key), do: :crypto.mac(:hmac, :sha256, key, digest)

  defp unsealed,
    do:
      "Could not deserialize module: the bytes are not a module serialized by " <>
        "Wasmex.Module.serialize/1 or Wasmex.Engine.precompile_module/2"

  defp mismatch,
    do:
      "Could not deserialize module: the artifact's seal does not match this node's " <>
        "artifact key (the artifact was changed, or sealed where another key is set: see " <>
        "Wasmex.Module.Seal)"
end
