defmodule Wasmex.Wasi.WasiP2Options do
  @moduledoc """
  What a component sees of WASI preview 2 (`Wasmex.Components.Store.new_wasi/3`,
  `Wasmex.Components.start_link/1` with `wasi:`): the options of Wasmex 0.15.1 plus the
  streams, directories and file budget of `Wasmex.Wasi.WasiOptions`, named as there.

    * `args` - the program's arguments (a list of strings; the first is the program's
      name), `env` - its environment (a map of strings to strings);
    * `stdin` - a `Wasmex.Pipe` or `:messages`; `stdout`, `stderr` - a `Wasmex.Pipe` or
      `{:messages, pid}`: exactly as in `Wasmex.Wasi.WasiOptions` (bounded the same way);
    * `inherit_stdout`, `inherit_stderr` (default `true`, as in 0.15.1) - without a
      stream of its own, the output goes to the BEAM node's standard error (the port's
      stdout is its wire to the BEAM, so nothing is ever written there); with `false` it
      is discarded;
    * `inherit_stdin` (default `true`) - accepted for 0.15.1's sake; the port's stdin is
      its wire, so without `stdin` the input is empty either way;
    * `preopen` - a list of `Wasmex.Wasi.PreopenOptions` (`read_only: true` forbids
      writes); nothing outside them is reachable;
    * `max_open_files` (default 256) - how many files and streams the component may hold
      open besides its preopens and standard streams; past it the call traps;
    * `allow_http` - refused when `true`: this runtime has no WASI HTTP.

  Every option is checked when the store is made, as for `Wasmex.Wasi.WasiOptions`.

      iex> {:ok, pipe} = Wasmex.Pipe.new()
      iex> options = %Wasmex.Wasi.WasiP2Options{args: ["prog", "hello"], stdout: pipe, inherit_stderr: false}
      iex> {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/wasi_cli.wasm", wasi: options)
      iex> Wasmex.Components.call_function(pid, {"wasi:cli/run", "run"}, [])
      {:ok, :ok}
      iex> Wasmex.Pipe.seek(pipe, 0)
      iex> Wasmex.Pipe.read(pipe)
      "args: hello\\nenv GREETING unset\\nno data/in.txt\\n"

      iex> Wasmex.Components.Store.new_wasi(%Wasmex.Wasi.WasiP2Options{allow_http: true})
      {:error, "allow_http is not supported: this runtime has no WASI HTTP"}
  """

  alias Wasmex.Wasi.{PreopenOptions, WasiOptions}

  defstruct [
    :stdin,
    :stdout,
    :stderr,
    args: [],
    env: %{},
    preopen: [],
    max_open_files: 256,
    inherit_stdin: true,
    inherit_stdout: true,
    inherit_stderr: true,
    allow_http: false
  ]

  @type t :: %__MODULE__{
          args: [String.t()],
          env: %{String.t() => String.t()},
          inherit_stdin: boolean(),
          inherit_stdout: boolean(),
          inherit_stderr: boolean(),
          allow_http: boolean(),
          stdin: Wasmex.Pipe.t() | :messages | nil,
          stdout: WasiOptions.output(),
          stderr: WasiOptions.output(),
          preopen: [PreopenOptions.t()],
          max_open_files: pos_integer()
        }

  @doc false
  # The options as the port takes them: core WASI's checked map plus the inherit flags.
  @spec to_wire(t()) :: {:ok, map()} | {:error, String.t()}
  def to_wire(%__MODULE__{allow_http: true}),
    do: {:error, "allow_http is not supported: this runtime has no WASI HTTP"}

  def to_wire(%__MODULE__{} = o) do
    with :ok <- flags(o),
         {:ok, wire} <-
           WasiOptions.to_wire(%WasiOptions{
             args: o.args,
             env: o.env,
             preopen: o.preopen,
             stdin: o.stdin,
             stdout: o.stdout,
             stderr: o.stderr,
             max_open_files: o.max_open_files
           }) do
      {:ok,
       Map.merge(wire, %{inherit_stdout: o.inherit_stdout, inherit_stderr: o.inherit_stderr})}
    end
  end

  defp flags(o) do
    Enum.find_value(
      [:inherit_stdin, :inherit_stdout, :inherit_stderr, :allow_http],
      :ok,
      fn key ->
        value = Map.fetch!(o, key)

        unless is_boolean(value),
          do: {:error, "wasi #{key} must be true or false, got: #{inspect(value)}"}
      end
    )
  end
end
