defmodule Wasmex.Host.Outgoing do
  @moduledoc """
  The requests a host has yet to write to its port: a process-free queue that turns the
  requests of a busy host into batches.

  A host writes a request at once when its mailbox is empty. While other messages wait
  (many callers at once), it adds the request here instead, and writes what it collected
  as one batch once it has handled those messages: one write, and one wake-up of the
  port, for many requests. A batch is one frame whose payload is the marker byte `0`
  followed by the requests' frames, each with its 4-byte length (a request's own payload
  starts with the External Term Format's version byte, 131). See `port/frame.rs`.

      iex> alias Wasmex.Host.Outgoing
      iex> out = Outgoing.new() |> Outgoing.add("ab", 2) |> Outgoing.add("c", 1)
      iex> Outgoing.count(out)
      2
      iex> {payload, empty} = Outgoing.take(out)
      iex> IO.iodata_to_binary(payload)
      <<0, 0, 0, 0, 2, ?a, ?b, 0, 0, 0, 1, ?c>>
      iex> Outgoing.count(empty)
      0

  A single request is taken as it is, with no batch around it:

      iex> alias Wasmex.Host.Outgoing
      iex> {payload, _} = Outgoing.new() |> Outgoing.add("ab", 2) |> Outgoing.take()
      iex> payload
      "ab"
  """

  defstruct frames: [], count: 0, bytes: 0

  @typedoc "Requests in the order they are to be written (kept newest first)."
  @opaque t :: %__MODULE__{frames: [iodata()], count: non_neg_integer(), bytes: non_neg_integer()}

  @batch 0

  # A batch is written once it holds this many bytes, so that none grows without bound
  # (requests this large are written on their own: see `batchable?/1`).
  @full_bytes 65_536

  @doc "An empty queue."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "Whether a request of `size` bytes may wait in a batch (large ones are written alone)."
  @spec batchable?(non_neg_integer()) :: boolean()
  def batchable?(size), do: size < @full_bytes

  @doc """
  Adds a request's payload (an encoded term) of `size` bytes (the host has counted them
  already) to the end of the queue.
  """
  @spec add(t(), iodata(), non_neg_integer()) :: t()
  def add(%__MODULE__{} = out, frame, size) do
    %{
      out
      | frames: [[<<size::32>> | frame] | out.frames],
        count: out.count + 1,
        bytes: out.bytes + 4 + size
    }
  end

  @doc "The number of requests waiting."
  @spec count(t()) :: non_neg_integer()
  def count(%__MODULE__{count: count}), do: count

  @doc "Whether the queue holds enough to be written now, before more is added."
  @spec full?(t()) :: boolean()
  def full?(%__MODULE__{bytes: bytes}), do: bytes >= @full_bytes

  @doc """
  The payload to write for what waits (a single request as it is, several as a batch),
  or `nil` when nothing does; and the emptied queue.
  """
  @spec take(t()) :: {iodata() | nil, t()}
  def take(%__MODULE__{count: 0} = out), do: {nil, out}
  def take(%__MODULE__{count: 1, frames: [[_size | frame]]}), do: {frame, new()}

  def take(%__MODULE__{frames: frames}),
    do: {[@batch | Enum.reverse(frames)], new()}
end
