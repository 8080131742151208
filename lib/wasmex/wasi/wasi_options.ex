defmodule Wasmex.Wasi.WasiOptions do
  @moduledoc """
  What a WASI program sees: its `args`, its `env`, the directories it may use
  (`preopen`, a list of `Wasmex.Wasi.PreopenOptions`), and its standard streams.

  Standard streams, each optional (without one, input is empty and output is discarded,
  never the host's own stdio):

    * `stdin`: a `Wasmex.Pipe` (the program reads what is in the pipe from its cursor;
      an empty pipe is the end of input), or `:messages` (the program's input is fed with
      `Wasmex.Wasi.write_stdin/2` and ended with `Wasmex.Wasi.close_stdin/1`; a read waits
      until data arrives; at most 16 MiB written and not yet read is held).
    * `stdout`, `stderr`: a `Wasmex.Pipe` (output is written to the pipe as the program
      writes), or `{:messages, pid}`: `pid` receives `{:wasmex_stdout, store, binary}` or
      `{:wasmex_stderr, store, binary}` with the program's writes, in order, while the
      program runs (consecutive small writes may come as one message; `store` is the
      `Wasmex.StoreOrCaller` of the program).

  Output is bounded. A program writes into a pipe up to its capacity
  (`Wasmex.Pipe.new/1`); a write past it fails inside the program with `ENOSPC`. A
  `{:messages, pid}` receiver acknowledges what it consumed with
  `Wasmex.Wasi.ack_output/3`: at most
  `output_window` bytes (default 1 MiB) per stream are sent and not yet acknowledged,
  and a program writing more waits (within its call's timeout) until acknowledgements
  come. Output to a receiver (or pipe) that has exited fails inside the program with
  `EPIPE` as a write to a closed socket does: from the write after the host has seen
  the exit, when the output written before it reaches the BEAM.
  Output is buffered in the port for at most about a millisecond, and always reaches
  its pipe or process before the reply of the call that wrote it, before an import
  callback's call, and before the program waits for input.

  `max_open_files` (default 256) is how many files and directories the program may hold
  open at once besides its preopened directories. All the stores of a host share one OS
  process and its descriptors: the budget keeps one program from taking them all. An open
  past it fails inside the program with `EMFILE` ("too many open files"), as at an
  operating system's limit; the other stores of the host are not affected.

  Every option is checked when a store is made with it, and anything not exactly right is
  refused with `{:error, reason}` (nothing falls back to something more permissive): `args`
  a list of strings; `env` a map of strings to strings (names non-empty, without `=`);
  no NUL byte in any of them; each preopen's `path` an existing directory (not `""`),
  its `alias` `nil` or a non-empty string and its `read_only` `true` or `false`; the
  earlier map form of `preopen` (`%{path => %{flags: [...], alias: name}}`) with flags
  from `:read`, `:write` and `:create`, at least one.

      iex> Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{preopen: [%Wasmex.Wasi.PreopenOptions{path: ""}]})
      {:error, "wasi preopen path must be a non-empty string, got: \\"\\""}
  """

  alias Wasmex.Pipe
  alias Wasmex.Wasi.PreopenOptions

  defstruct [
    :stdin,
    :stdout,
    :stderr,
    args: [],
    env: %{},
    preopen: [],
    max_open_files: 256,
    output_window: 1_048_576
  ]

  @type output :: Pipe.t() | {:messages, pid()} | nil

  @type t :: %__MODULE__{
          args: [String.t()],
          env: %{String.t() => String.t()},
          preopen: [PreopenOptions.t()] | %{(String.t() | atom()) => map()},
          stdin: Pipe.t() | :messages | nil,
          stdout: output(),
          stderr: output(),
          max_open_files: pos_integer(),
          output_window: pos_integer()
        }

  @fields [:args, :env, :preopen, :stdin, :stdout, :stderr, :max_open_files, :output_window]

  @doc """
  The options from any of the forms `Wasmex.start_link/1` accepts for `:wasi`: `true`
  (defaults), a map of the fields, or the struct itself. Raises `ArgumentError` for a map
  with a key that is no field (see `cast/1` for an error instead).

      iex> Wasmex.Wasi.WasiOptions.new(%{args: ["a"]}).args
      ["a"]
      iex> Wasmex.Wasi.WasiOptions.new(true) == %Wasmex.Wasi.WasiOptions{}
      true
  """
  @spec new(true | map() | t()) :: t()
  def new(wasi) do
    case cast(wasi) do
      {:ok, options} -> options
      {:error, reason} -> raise ArgumentError, reason
    end
  end

  @doc """
  Like `new/1`, but `{:ok, options}` or `{:error, reason}`.

      iex> Wasmex.Wasi.WasiOptions.cast(%{arg: ["a"]})
      {:error, "unknown wasi option :arg (known: :args, :env, :preopen, :stdin, :stdout, :stderr, :max_open_files, :output_window)"}
  """
  @spec cast(term()) :: {:ok, t()} | {:error, String.t()}
  def cast(true), do: {:ok, %__MODULE__{}}
  def cast(%__MODULE__{} = options), do: {:ok, options}

  def cast(%{} = fields) do
    case Enum.find(Map.keys(fields), &(&1 not in @fields)) do
      nil ->
        {:ok, struct(__MODULE__, fields)}

      key ->
        known = Enum.map_join(@fields, ", ", &inspect/1)
        {:error, "unknown wasi option #{inspect(key)} (known: #{known})"}
    end
  end

  def cast(other),
    do: {:error, "wasi must be true, a map or a WasiOptions struct, got: #{inspect(other)}"}

  @doc false
  @spec to_wire(t()) :: {:ok, map()} | {:error, String.t()}
  def to_wire(%__MODULE__{} = o) do
    with {:ok, args} <- Wasmex.Wasi.Check.args(o.args),
         {:ok, env} <- Wasmex.Wasi.Check.env(o.env),
         {:ok, preopen} <- preopens(o.preopen),
         {:ok, stdin} <- stdin(o.stdin),
         {:ok, window} <- output_window(o.output_window),
         {:ok, stdout} <- output(o.stdout, :stdout, window),
         {:ok, stderr} <- output(o.stderr, :stderr, window),
         {:ok, max_open_files} <- max_open_files(o.max_open_files) do
      {:ok,
       %{
         args: args,
         env: env,
         preopen: preopen,
         stdin: stdin,
         stdout: stdout,
         stderr: stderr,
         max_open_files: max_open_files
       }}
    end
  end

  defp output_window(n) when is_integer(n) and n > 0, do: {:ok, n}

  defp output_window(other),
    do: {:error, "wasi output_window must be a positive integer (bytes), got: #{inspect(other)}"}

  defp max_open_files(n) when is_integer(n) and n > 0, do: {:ok, n}

  defp max_open_files(other),
    do: {:error, "wasi max_open_files must be a positive integer, got: #{inspect(other)}"}

  defp preopens(list) when is_list(list) do
    Wasmex.Wasi.Check.all(list, fn
      %PreopenOptions{} = p -> PreopenOptions.to_wire(p)
      other -> {:error, "wasi preopen must be a PreopenOptions struct, got: #{inspect(other)}"}
    end)
  end

  # The earlier Wasmex form: %{"dir" => %{flags: [:read, :write, :create], alias: "name"}}.
  defp preopens(map) when is_map(map) do
    map |> Enum.sort() |> Wasmex.Wasi.Check.all(&earlier_preopen/1)
  end

  defp preopens(other),
    do: {:error, "wasi preopen must be a list of PreopenOptions, got: #{inspect(other)}"}

  defp earlier_preopen({path, opts}) do
    with {:ok, path} <- earlier_path(path),
         {:ok, opts} <- earlier_opts(path, opts),
         {:ok, flags} <- flags(path, Map.get(opts, :flags)) do
      PreopenOptions.to_wire(%PreopenOptions{
        path: path,
        alias: Map.get(opts, :alias),
        read_only: :write not in flags and :create not in flags
      })
    end
  end

  defp earlier_path(path) when is_atom(path) and path not in [nil, true, false],
    do: {:ok, Atom.to_string(path)}

  defp earlier_path(path), do: {:ok, path}

  defp earlier_opts(path, %{} = opts) do
    case Map.keys(opts) -- [:flags, :alias] do
      [] -> {:ok, opts}
      [key | _] -> {:error, "unknown option #{inspect(key)} of wasi preopen #{inspect(path)}"}
    end
  end

  defp earlier_opts(path, other),
    do:
      {:error, "wasi preopen #{inspect(path)} must have a map of options, got: #{inspect(other)}"}

  defp flags(path, flags) when is_list(flags) and flags != [] do
    if Enum.all?(flags, &(&1 in [:read, :write, :create])),
      do: {:ok, flags},
      else: flags_error(path, flags)
  end

  defp flags(path, flags), do: flags_error(path, flags)

  defp flags_error(path, flags) do
    {:error,
     "wasi preopen #{inspect(path)} flags must be a non-empty list of :read, :write, " <>
       ":create, got: #{inspect(flags)}"}
  end

  defp stdin(nil), do: {:ok, nil}
  defp stdin(:messages), do: {:ok, :push}
  defp stdin(%Pipe{pid: pid}) when is_pid(pid), do: {:ok, {:pull, handler({:pipe, pid})}}

  defp stdin(other),
    do: {:error, "wasi stdin must be nil, :messages or a Wasmex.Pipe, got: #{inspect(other)}"}

  defp output(nil, _stream, _window), do: {:ok, nil}

  defp output(%Pipe{pid: pid} = pipe, stream, window) when is_pid(pid) do
    case Pipe.room(pipe) do
      {:ok, room} -> {:ok, {:pipe, handler({:pipe, pid}), window, room}}
      {:error, reason} -> {:error, "wasi #{stream} pipe: #{reason}"}
    end
  end

  defp output({:messages, pid}, stream, window) when is_pid(pid),
    do: {:ok, {:messages, handler({:messages, pid, :"wasmex_#{stream}"}), window}}

  defp output(other, stream, _window) do
    {:error,
     "wasi #{stream} must be nil, a Wasmex.Pipe or {:messages, pid}, got: #{inspect(other)}"}
  end

  defp handler(term), do: Wasmex.Wasi.Output.handler(term)
end
