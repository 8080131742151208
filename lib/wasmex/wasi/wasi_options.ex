defmodule Wasmex.Wasi.WasiOptions do
  @moduledoc """
  What a WASI program sees: its `args`, its `env`, the directories it may use
  (`preopen`, a list of `Wasmex.Wasi.PreopenOptions`), and its standard streams.

  Standard streams, each optional (without one, input is empty and output is discarded,
  never the host's own stdio):

    * `stdin`: a `Wasmex.Pipe` (the program reads what is in the pipe from its cursor;
      an empty pipe is the end of input), or `:messages` (the program's input is fed with
      `Wasmex.Wasi.write_stdin/2` and ended with `Wasmex.Wasi.close_stdin/1`; a read waits
      until data arrives).
    * `stdout`, `stderr`: a `Wasmex.Pipe` (output is written to the pipe as the program
      writes), or `{:messages, pid}`: `pid` receives `{:wasmex_stdout, store, binary}` or
      `{:wasmex_stderr, store, binary}` for every write, in order, while the program runs
      (`store` is the `Wasmex.StoreOrCaller` of the program).

  Output is never held back: a slow receiver's mailbox (or a pipe) grows with whatever
  the program writes. Limit a chatty program with a timeout or fuel.

  `max_open_files` (default 256) is how many files and directories the program may hold
  open at once besides its preopened directories. All the stores of a host share one OS
  process and its descriptors: the budget keeps one program from taking them all. An open
  past it ends the call with an error (wasmtime-wasi reports the store's full resource
  table as a trap, `resource table has no free keys`); the store stays usable, and the
  other stores of the host are not affected.
  """

  alias Wasmex.Pipe
  alias Wasmex.Wasi.PreopenOptions

  defstruct [:stdin, :stdout, :stderr, args: [], env: %{}, preopen: [], max_open_files: 256]

  @type output :: Pipe.t() | {:messages, pid()} | nil

  @type t :: %__MODULE__{
          args: [String.t()],
          env: %{String.t() => String.t()},
          preopen: [PreopenOptions.t()],
          stdin: Pipe.t() | :messages | nil,
          stdout: output(),
          stderr: output(),
          max_open_files: pos_integer()
        }

  @doc """
  The options from any of the forms `Wasmex.start_link/1` accepts for `:wasi`: `true`
  (defaults), a map of the fields, or the struct itself.

      iex> Wasmex.Wasi.WasiOptions.new(%{args: ["a"]}).args
      ["a"]
      iex> Wasmex.Wasi.WasiOptions.new(true) == %Wasmex.Wasi.WasiOptions{}
      true
  """
  @spec new(true | map() | t()) :: t()
  def new(true), do: %__MODULE__{}
  def new(%__MODULE__{} = options), do: options
  def new(%{} = fields), do: struct(__MODULE__, fields)

  @doc false
  @spec to_wire(t()) :: map()
  def to_wire(%__MODULE__{} = o) do
    %{
      args: Enum.map(o.args, &to_string/1),
      env: Map.new(o.env, fn {k, v} -> {to_string(k), to_string(v)} end),
      preopen: preopens(o.preopen),
      stdin: stdin(o.stdin),
      stdout: output(o.stdout, :wasmex_stdout),
      stderr: output(o.stderr, :wasmex_stderr),
      max_open_files: o.max_open_files
    }
  end

  defp preopens(list) when is_list(list), do: Enum.map(list, &PreopenOptions.to_wire/1)

  # The earlier Wasmex form: %{"dir" => %{flags: [:read, :write, :create], alias: "name"}}.
  defp preopens(map) when is_map(map) do
    Enum.map(map, fn {path, opts} ->
      flags = Map.get(opts, :flags, [])
      read_only = :write not in flags and :create not in flags

      PreopenOptions.to_wire(%PreopenOptions{
        path: to_string(path),
        alias: Map.get(opts, :alias),
        read_only: read_only
      })
    end)
  end

  defp stdin(nil), do: nil
  defp stdin(:messages), do: :push
  defp stdin(%Pipe{pid: pid}), do: {:pull, :erlang.term_to_binary({:pipe, pid})}

  defp output(nil, _tag), do: nil
  defp output(%Pipe{pid: pid}, _tag), do: {:events, :erlang.term_to_binary({:pipe, pid})}

  defp output({:messages, pid}, tag) when is_pid(pid),
    do: {:events, :erlang.term_to_binary({:messages, pid, tag})}
end
