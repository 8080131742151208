defmodule Wasmex.Wasi.PreopenOptions do
  @moduledoc """
  A host directory a WASI program may use, visible to it under `alias` (or under its
  `path` when no alias is given).

  The program sees nothing else of the host's file system: `..` that would leave the
  directory, absolute paths and symlinks pointing outside are denied.

    * `path`: an existing directory (a relative path is taken from the BEAM's working
      directory); `""` and anything that is not a directory are refused;
    * `alias`: `nil` or a non-empty string;
    * `read_only` (an addition to Wasmex's options, default `false`): when `true`, the
      program may list and read, but not create, write, rename or delete. Only `true`
      and `false` are accepted.

  A program reading a file of a host directory it sees as `data`, and refused a write
  there:

      iex> dir = Path.join(System.tmp_dir!(), "preopen_\#{System.unique_integer([:positive])}")
      iex> File.mkdir_p!(dir)
      iex> File.write!(Path.join(dir, "hello.txt"), "hello from the host\\n")
      iex> preopen = [%Wasmex.Wasi.PreopenOptions{path: dir, alias: "data", read_only: true}]
      iex> run = fn args ->
      ...>   {:ok, stdout} = Wasmex.Pipe.new()
      ...>   options = %Wasmex.Wasi.WasiOptions{args: ["wasi_test" | args], stdout: stdout, preopen: preopen}
      ...>   {:ok, store} = Wasmex.Store.new_wasi(options)
      ...>   {:ok, pid} = Wasmex.start_link(%{store: store, bytes: File.read!(TestHelper.wasi_test_file_path())})
      ...>   {:ok, []} = Wasmex.call_function(pid, :_start, [])
      ...>   :ok = Wasmex.Pipe.seek(stdout, 0)
      ...>   Wasmex.Pipe.read(stdout)
      ...> end
      iex> run.(["read", "data/hello.txt"])
      "hello from the host\\n"
      iex> run.(["write", "data/new.txt", "text"])
      "error: Operation not permitted\\n"
      iex> File.exists?(Path.join(dir, "new.txt"))
      false
      iex> {:ok, _removed} = File.rm_rf(dir)
  """

  alias Wasmex.Wasi.Check

  @enforce_keys [:path]
  defstruct [:path, alias: nil, read_only: false]

  @type t :: %__MODULE__{path: String.t(), alias: String.t() | nil, read_only: boolean()}

  @doc false
  @spec to_wire(t()) :: {:ok, {String.t(), String.t(), boolean()}} | {:error, String.t()}
  def to_wire(%__MODULE__{path: path, alias: alias, read_only: read_only}) do
    with {:ok, expanded} <- Check.directory(path),
         {:ok, alias} <- alias_name(alias, path),
         :ok <- read_only(read_only, path) do
      {:ok, {expanded, alias, read_only}}
    end
  end

  defp alias_name(nil, path), do: {:ok, path}

  defp alias_name(alias, _path) when is_binary(alias) and alias != "",
    do: Check.string("wasi preopen alias", alias)

  defp alias_name(alias, path),
    do:
      {:error,
       "wasi preopen alias of #{inspect(path)} must be nil or a non-empty string, got: " <>
         inspect(alias)}

  defp read_only(value, _path) when is_boolean(value), do: :ok

  defp read_only(value, path),
    do:
      {:error,
       "wasi preopen read_only of #{inspect(path)} must be true or false, got: #{inspect(value)}"}
end
