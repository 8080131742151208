defmodule Wasmex.Wasi do
  @moduledoc """
  Driving a WASI program's standard streams with messages: input for programs started
  with `stdin: :messages` in their `Wasmex.Wasi.WasiOptions`, and acknowledgements of
  output sent as messages (`stdout: {:messages, pid}`, `stderr: {:messages, pid}`).

  Input:

      iex> {:ok, stdout} = Wasmex.Pipe.new()
      iex> {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{
      ...>   args: ["wasi_test", "echo"], stdin: :messages, stdout: stdout})
      iex> {:ok, module} = Wasmex.Module.compile(store, File.read!(TestHelper.wasi_test_file_path()))
      iex> {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      iex> task = Task.async(fn -> Wasmex.call_function(pid, :_start, []) end)
      iex> Wasmex.Wasi.write_stdin(store, "one line\\n")
      :ok
      iex> Task.await(task)
      {:ok, []}
      iex> Wasmex.Pipe.seek(stdout, 0)
      :ok
      iex> Wasmex.Pipe.read(stdout)
      "one line\\n"

  Output: `pid` receives `{:wasmex_stdout, store, data}` (or `:wasmex_stderr`) for the
  program's writes, in order, and acknowledges each with `ack_output/3` once it has
  consumed it. At most `output_window` bytes (a `Wasmex.Wasi.WasiOptions` field, default
  1 MiB) per stream are out and not yet acknowledged; a program writing more waits until
  acknowledgements free room, or until its call's timeout stops it. So the receiver's
  mailbox holds at most a window of output, however much the program writes.

      iex> {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{
      ...>   args: ["wasi_test", "big", "3000"], stdout: {:messages, self()}, output_window: 1000})
      iex> {:ok, module} = Wasmex.Module.compile(store, File.read!(TestHelper.wasi_test_file_path()))
      iex> {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      iex> task = Task.async(fn -> Wasmex.call_function(pid, :_start, []) end)
      iex> consume = fn consume, got ->
      ...>   receive do
      ...>     {:wasmex_stdout, store, data} ->
      ...>       :ok = Wasmex.Wasi.ack_output(store, :stdout, byte_size(data))
      ...>       if got + byte_size(data) < 3000, do: consume.(consume, got + byte_size(data)), else: got + byte_size(data)
      ...>   end
      ...> end
      iex> consume.(consume, 0)
      3000
      iex> Task.await(task)
      {:ok, []}
  """

  alias Wasmex.{Host, StoreOrCaller}

  @doc """
  Sends bytes to the program's stdin; a waiting read returns them. A store holds at most
  16 MiB written and not yet read by its program: a write past that takes nothing and
  returns `{:error, "stdin is full: ..."}` (write again once the program has read). A
  write to a store whose stdin is not `:messages`, after `close_stdin/1`, or to a store
  that is gone (`{:error, "unknown store ..."}`) is an error too.
  """
  @spec write_stdin(StoreOrCaller.t(), binary()) :: :ok | {:error, String.t()}
  def write_stdin(%StoreOrCaller{host: host, store_id: id}, data) when is_binary(data) do
    case Host.request(host, Wasmex.Wire.stdin_data(id, data)) do
      {:ok, :ok} -> :ok
      {:error, _} = error -> error
    end
  end

  @doc "Ends the program's stdin: reads after the buffered data see the end of input."
  @spec close_stdin(StoreOrCaller.t()) :: :ok
  def close_stdin(%StoreOrCaller{host: host, store_id: id}),
    do: Host.notify(host, Wasmex.Wire.stdin_eof(id))

  @doc """
  Acknowledges `bytes` of output the calling process received as
  `{:wasmex_stdout, store, data}` (`stream` `:stdout`) or `{:wasmex_stderr, store, data}`
  (`:stderr`) and consumed: the program may send that many more. Call it from the
  process named in `{:messages, pid}`, with the `store` of the message.

  An acknowledgement from another process, for a stream that is not sent to the calling
  process, or for a store that has ended frees nothing and is otherwise ignored; one for
  more than was sent frees only what was sent. A `stream` other than `:stdout` or
  `:stderr`, or `bytes` not a non-negative integer, is refused:

      iex> {:ok, store} = Wasmex.Store.new_wasi(%Wasmex.Wasi.WasiOptions{})
      iex> Wasmex.Wasi.ack_output(store, :stdin, 10)
      {:error, "ack_output expects :stdout or :stderr, got: :stdin"}
      iex> Wasmex.Wasi.ack_output(store, :stdout, -1)
      {:error, "ack_output expects a non-negative number of bytes, got: -1"}
  """
  @spec ack_output(StoreOrCaller.t(), :stdout | :stderr, non_neg_integer()) ::
          :ok | {:error, String.t()}
  def ack_output(%StoreOrCaller{} = store, stream, bytes)
      when stream in [:stdout, :stderr] and is_integer(bytes) and bytes >= 0,
      do: Wasmex.Wasi.Output.ack(store, stream, bytes)

  def ack_output(%StoreOrCaller{}, stream, _bytes) when stream not in [:stdout, :stderr],
    do: {:error, "ack_output expects :stdout or :stderr, got: #{inspect(stream)}"}

  def ack_output(%StoreOrCaller{}, _stream, bytes),
    do: {:error, "ack_output expects a non-negative number of bytes, got: #{inspect(bytes)}"}
end
