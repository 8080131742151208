defmodule Wasmex.Wasi.WasiP2Options do
  @moduledoc """
  WASI preview 2 for the components of a store (`Wasmex.Components.Store.new_wasi/3`).
  """

  defstruct args: [],
            env: %{},
            inherit_stdin: true,
            inherit_stdout: true,
            inherit_stderr: true,
            allow_http: false

  @type t :: %__MODULE__{
          args: [String.t()],
          env: %{String.t() => String.t()},
          inherit_stdin: boolean(),
          inherit_stdout: boolean(),
          inherit_stderr: boolean(),
          allow_http: boolean()
        }

  @doc false
  @spec to_wire(t()) :: {:ok, term()} | {:error, String.t()}
  def to_wire(%__MODULE__{} = options), do: {:ok, Map.from_struct(options)}
end
