defmodule Wasmex.Host.Bulk do
  @moduledoc false
  # Large memory reads and writes through a buffer the port shares (port/bulk.rs: a memfd
  # of the port process, opened here as /proc/<os pid>/fd/<fd>) instead of through the
  # pipe. For a write the caller puts the bytes into the file and the request names only
  # their length; for a read the port copies the bytes into the buffer and the caller
  # reads them from the file after the reply. A 1 MiB transfer over the pipe waited once
  # for the other side to drain it (the pipe holds 1 MiB, the frame a header more), and
  # copied the bytes into the pipe and out again.
  #
  # One transfer per host uses the buffer at a time (an :atomics lock, released by its
  # holder after the port's reply, or by the host: once a killed holder has no request
  # left in the port, or once the port has answered a transfer whose caller stopped
  # waiting, as the port may still be about to use the buffer); the others, and anything smaller than @min,
  # larger than the buffer, or to a host on another node, go through the pipe. So does a
  # transfer whose file cannot be opened.

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
  Writes `binary` into `host`'s shared buffer and sends the request `build.(length)`
  (which copies it from there: a `Wasmex.Wire` request), returning its answer; or
  `:pipe` when the buffer cannot take it.
  """
  @spec write(pid(), binary(), (non_neg_integer() -> Wasmex.Wire.request())) :: term() | :pipe
  def write(host, binary, build) when is_binary(binary) do
    with_buffer(host, byte_size(binary), fn path, token ->
      if fill(path, binary) == :ok,
        do: Wasmex.Host.bulk_request(host, build.(byte_size(binary)), token),
        else: :pipe
    end)
  end

  @doc """
  Sends `request` (which copies `length` bytes of linear memory into `host`'s shared
  buffer) and, if it answers `{:ok, :ok}`, returns `{:ok, bytes}` with the bytes read
  from the buffer. Any other answer is returned as it is; `:pipe` when the buffer cannot
  take the read, or its file cannot be read.
  """
  @spec read(pid(), non_neg_integer(), Wasmex.Wire.request()) :: {:ok, binary()} | term()
  def read(host, length, request) when is_integer(length) do
    with_buffer(host, length, fn path, token ->
      with {:ok, :ok} <- Wasmex.Host.bulk_request(host, request, token) do
        case drain(path, length) do
          {:ok, bytes} when byte_size(bytes) == length -> {:ok, bytes}
          _ -> :pipe
        end
      end
    end)
  end

  # Runs `fun.(path, token)` holding the host's buffer under `token`, or returns :pipe.
  # A request that got no answer (`{:no_answer, error}`, see Wasmex.Host.bulk_request/3)
  # leaves the buffer held: the host frees it once the port has answered.
  defp with_buffer(host, length, fun) when length >= @min and node(host) == node() do
    with [{^host, path, size, lock}] when length <= size <- :ets.lookup(@table, host),
         # A host that died without unregistering: its OS pid may be reused already.
         true <- Process.alive?(host),
         {:ok, token} <- acquire(host, lock) do
      held_on =
        try do
          fun.(path, token)
        catch
          kind, reason ->
            free(lock, token)
            :erlang.raise(kind, reason, __STACKTRACE__)
        end

      case held_on do
        {:no_answer, error} ->
          error

        result ->
          free(lock, token)
          result
      end
    else
      _ -> :pipe
    end
  end

  defp with_buffer(_host, _length, _fun), do: :pipe

  defp free(lock, token) do
    :atomics.compare_exchange(lock, 1, token, 0)
    :ets.delete(@table, {:holder, token})
  end

  # The lock holds the holder's token (0: free), and the table who holds each token. A
  # holder killed in a transfer never releases it: the host takes the lock back once that
  # holder has no request left in the port (see `reclaim/3`).
  defp acquire(host, lock) do
    token = :erlang.unique_integer([:positive])
    :ets.insert(@table, {{:holder, token}, self()})

    case :atomics.compare_exchange(lock, 1, 0, token) do
      :ok ->
        {:ok, token}

      held ->
        :ets.delete(@table, {:holder, token})

        # The host is asked once per dead holder.
        with [{_, holder}] <- :ets.lookup(@table, {:holder, held}),
             false <- Process.alive?(holder),
             true <- :ets.insert_new(@table, {{:reclaiming, held}}),
             do: Wasmex.Host.reclaim_bulk(host, held, holder)

        :busy
    end
  end

  @doc """
  Frees `host`'s buffer if the holder with `token` still holds it. The host calls this
  once that holder, dead, has no request left in the port.
  """
  @spec reclaim(pid(), pos_integer()) :: :ok
  def reclaim(host, token) do
    with [{^host, _path, _size, lock}] <- :ets.lookup(@table, host) do
      :atomics.compare_exchange(lock, 1, token, 0)
    end

    :ets.delete(@table, {:holder, token})
    :ets.delete(@table, {:reclaiming, token})
    :ok
  end

  @doc """
  Sends `message` (`{:reclaim_bulk, token, holder}`) to the calling host server after
  `:bulk_reclaim_after` milliseconds (default 100), for it to look again.
  """
  @spec reclaim_later(tuple()) :: :ok
  def reclaim_later(message) do
    case Application.get_env(:wasmex, :bulk_reclaim_after, 100) do
      0 -> send(self(), message)
      ms -> Process.send_after(self(), message, ms)
    end

    :ok
  end

  # Opened for reading too: opened for writing only, the file would be truncated.
  defp fill(path, binary), do: with_file(path, [:read, :write], &:file.pwrite(&1, 0, binary))

  defp drain(path, length), do: with_file(path, [:read], &:file.pread(&1, 0, length))

  defp with_file(path, modes, fun) do
    case :file.open(path, [:raw, :binary | modes]) do
      {:ok, fd} ->
        try do
          fun.(fd)
        after
          :file.close(fd)
        end

      {:error, _} = error ->
        error
    end
  end
end
