defmodule Wasmex.Wasi.PreopenOptions do
  @moduledoc """
  A host directory a WASI program may use, visible to it under `alias` (or under its
  `path` when no alias is given).
  """

  @enforce_keys [:path]
  defstruct [:path, alias: nil]

  @type t :: %__MODULE__{path: String.t(), alias: String.t() | nil}
end
