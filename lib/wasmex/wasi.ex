defmodule Wasmex.Wasi do
  @moduledoc """
  Driving a WASI program's standard input with messages, for programs started with
  `stdin: :messages` in their `Wasmex.Wasi.WasiOptions`.

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
  """

  alias Wasmex.{Host, StoreOrCaller}

  @doc "Sends bytes to the program's stdin; a waiting read returns them."
  @spec write_stdin(StoreOrCaller.t(), binary()) :: :ok
  def write_stdin(%StoreOrCaller{host: host, store_id: id}, data) when is_binary(data) do
    Host.notify(host, :stdin_data, {id, data})
  end

  @doc "Ends the program's stdin: reads after the buffered data see the end of input."
  @spec close_stdin(StoreOrCaller.t()) :: :ok
  def close_stdin(%StoreOrCaller{host: host, store_id: id}),
    do: Host.notify(host, :stdin_eof, {id})
end
