defmodule Wasmex.Host.Bulk do
  @moduledoc false
  # Large memory writes through a buffer the port shares (port/bulk.rs: a memfd of the
  # port process, opened here as /proc/<os pid>/fd/<fd>) instead of through the pipe: the
  # caller writes the bytes into the file, and the request names only their length. A
  # 1 MiB write over the pipe waited once for the port to drain it (the pipe holds 1 MiB,
  # the frame a header more) and copied the bytes into the pipe and out again.
  #
  # One write per host uses the buffer at a time (an :atomics lock); the others, and
  # anything smaller than @min, larger than the buffer, or to a host on another node, go
  # through the pipe. So does a write whose file cannot be opened.

  @table __MODULE__

  # Below this a frame through the pipe costs less than opening the file.
  @min 256 * 1024

  @doc false
  def setup, do: :ets.new(@table, [:named_table, :public, :set, read_concurrency: true])

  @doc false
  def register(host, path, size),
    do: :ets.insert(@table, {host, path, size, :atomics.new(1, [])})

  @doc false
  def unregister(host), do: :ets.delete(@table, host)

  @doc """
  Writes `binary` into `host`'s shared buffer and returns what `request.(length)` returns
  (the request that copies it into linear memory), or `:pipe` when the buffer cannot
  take it.
  """
  @spec write(pid(), binary(), (non_neg_integer() -> result)) :: result | :pipe
        when result: term()
  def write(host, binary, request) when byte_size(binary) >= @min and node(host) == node() do
    with [{^host, path, size, lock}] when byte_size(binary) <= size <- :ets.lookup(@table, host),
         :ok <- :atomics.compare_exchange(lock, 1, 0, 1) do
      try do
        if fill(path, binary) == :ok, do: request.(byte_size(binary)), else: :pipe
      after
        :atomics.put(lock, 1, 0)
      end
    else
      _ -> :pipe
    end
  end

  def write(_host, _binary, _request), do: :pipe

  # Opened for reading too: opened for writing only, the file would be truncated.
  defp fill(path, binary) do
    case :file.open(path, [:raw, :read, :write, :binary]) do
      {:ok, fd} ->
        try do
          :file.pwrite(fd, 0, binary)
        after
          :file.close(fd)
        end

      {:error, _} = error ->
        error
    end
  end
end
