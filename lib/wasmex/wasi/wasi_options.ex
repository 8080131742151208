defmodule Wasmex.Wasi.WasiOptions do
  @moduledoc """
  What a WASI program sees: its `args`, its `env`, the directories it may use
  (`preopen`), and its standard streams (`Wasmex.Pipe`s; without one, input is empty and
  output is discarded).
  """

  alias Wasmex.Wasi.PreopenOptions

  defstruct [:stdin, :stdout, :stderr, args: [], env: %{}, preopen: []]

  @type t :: %__MODULE__{
          args: [String.t()],
          env: %{String.t() => String.t()},
          preopen: [PreopenOptions.t()],
          stdin: Wasmex.Pipe.t() | nil,
          stdout: Wasmex.Pipe.t() | nil,
          stderr: Wasmex.Pipe.t() | nil
        }

  @doc false
  @spec to_wire(t()) :: map()
  def to_wire(%__MODULE__{} = o) do
    %{
      args: Enum.map(o.args, &to_string/1),
      env: Map.new(o.env, fn {k, v} -> {to_string(k), to_string(v)} end)
    }
  end
end
