defmodule Wasmex.Wasi.PreopenOptions do
  @moduledoc """
  A host directory a WASI program may use, visible to it under `alias` (or under its
  `path` when no alias is given).

  The program sees nothing else of the host's file system: `..` that would leave the
  directory, absolute paths and symlinks pointing outside are denied.

    * `read_only` (an addition to Wasmex's options, default `false`): when `true`, the
      program may list and read, but not create, write, rename or delete.
  """

  @enforce_keys [:path]
  defstruct [:path, alias: nil, read_only: false]

  @type t :: %__MODULE__{path: String.t(), alias: String.t() | nil, read_only: boolean()}

  @doc false
  @spec to_wire(t()) :: {String.t(), String.t(), boolean()}
  def to_wire(%__MODULE__{path: path, alias: alias, read_only: read_only}) do
    {Path.expand(path), alias || path, read_only == true}
  end
end
