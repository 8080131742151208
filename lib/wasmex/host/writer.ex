defmodule Wasmex.Host.Writer do
  @moduledoc false
  # Writes a host's requests and notifications to its port, framed (the port is a
  # `:stream`), batching them while the host has other messages waiting
  # (Wasmex.Host.Outgoing). Runs in the host server, except `command/2`, which any process
  # may call (callback processes answer the port themselves).

  alias Wasmex.{Stats, Wire}
  alias Wasmex.Host.{Outgoing, Startup}

  @doc "A notification's frame and its size, counted as sent."
  @spec notification_frame(Wire.request()) :: {iodata(), non_neg_integer()}
  def notification_frame(request) do
    frame = Wire.encode_request(0, request)
    size = IO.iodata_length(frame)
    Stats.add(:bytes_sent, size)
    {frame, size}
  end

  @doc """
  Writes a request or notification to the port: at once when no other message waits in
  the host's mailbox; else in the batch written once those messages are handled (the host
  gets `:write_outgoing`), or before a large one. Writes keep their order either way.
  Returns what still waits.
  """
  @spec write(port(), Outgoing.t(), iodata(), non_neg_integer()) :: Outgoing.t()
  def write(port, outgoing, frame, size) do
    waiting = Outgoing.count(outgoing)

    cond do
      waiting == 0 and Process.info(self(), :message_queue_len) == {:message_queue_len, 0} ->
        command(port, frame, size)
        outgoing

      not Outgoing.batchable?(size) ->
        outgoing = flush(port, outgoing)
        command(port, frame, size)
        outgoing

      true ->
        if waiting == 0, do: send(self(), :write_outgoing)
        outgoing = Outgoing.add(outgoing, frame, size)
        if Outgoing.full?(outgoing), do: flush(port, outgoing), else: outgoing
    end
  end

  @doc """
  Writes `first` (`{frame, size}` pairs: stores opened since the last write, deferred
  drops and stops) and then a request, in one write when the request may be batched: at
  once if no other message waits in the host's mailbox, else with the batch. Returns
  what still waits.
  """
  @spec write_after(
          port(),
          Outgoing.t(),
          [{iodata(), non_neg_integer()}],
          iodata(),
          non_neg_integer()
        ) ::
          Outgoing.t()
  def write_after(port, outgoing, first, frame, size) do
    waiting = Outgoing.count(outgoing)
    outgoing = Enum.reduce(first, outgoing, fn {f, n}, out -> Outgoing.add(out, f, n) end)

    if Outgoing.batchable?(size) do
      outgoing = Outgoing.add(outgoing, frame, size)

      cond do
        Outgoing.full?(outgoing) ->
          flush(port, outgoing)

        waiting > 0 ->
          outgoing

        Process.info(self(), :message_queue_len) == {:message_queue_len, 0} ->
          flush(port, outgoing)

        true ->
          schedule_flush(outgoing)
      end
    else
      outgoing = flush(port, outgoing)
      command(port, frame, size)
      outgoing
    end
  end

  defp schedule_flush(outgoing) do
    send(self(), :write_outgoing)
    outgoing
  end

  @doc "Writes what waits, as one request or one batch; returns the emptied queue."
  @spec flush(port(), Outgoing.t()) :: Outgoing.t()
  def flush(port, outgoing) do
    if Outgoing.count(outgoing) > 1, do: Stats.add(:request_batches)
    {payload, outgoing} = Outgoing.take(outgoing)
    if payload, do: command(port, payload)
    outgoing
  end

  @doc "Writes one payload, framed. A port that is gone takes nothing: its exit fails what waits for it."
  @spec command(port() | nil, iodata()) :: :ok
  def command(port, data), do: command(port, data, IO.iodata_length(data))

  @doc "Writes one payload of `size` bytes, framed (see `command/2`)."
  @spec command(port() | nil, iodata(), non_neg_integer()) :: :ok
  def command(port, data, size) do
    Port.command(port, Startup.frame(data, size))
    :ok
  rescue
    ArgumentError -> :ok
  end
end
