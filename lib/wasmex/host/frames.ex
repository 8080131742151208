defmodule Wasmex.Host.Frames do
  @moduledoc """
  Cuts the byte stream from a port into frames (a 4-byte big-endian length, then that
  many bytes), refusing a frame whose announced length is over `Wasmex.Wire.max_incoming_frame/0`
  as soon as its header arrives: nothing of it is buffered. An Erlang port opened with
  `{:packet, 4}` has no such bound (it allocates whatever a header announces), so the host
  reads its port as a `:stream` and frames it here.

  Chunks of a frame are kept as they came and joined once, when the frame is complete.

      iex> alias Wasmex.Host.Frames
      iex> frames = Frames.new(100)
      iex> {:ok, [], frames} = Frames.push(frames, <<0, 0, 0, 3, ?a>>)
      iex> {:ok, ["abc", "d"], _frames} = Frames.push(frames, <<?b, ?c, 0, 0, 0, 1, ?d>>)
      iex> Frames.push(Frames.new(100), <<0, 0, 1, 0>>)
      {:error, "the Wasm host sent a frame of 256 bytes, over the limit of 100"}
  """

  defstruct [:max, chunks: [], size: 0, need: 4]

  @typedoc "The bytes of an unfinished frame, and how many it needs before it can be cut."
  @opaque t :: %__MODULE__{
            max: pos_integer(),
            chunks: iodata(),
            size: non_neg_integer(),
            need: pos_integer()
          }

  @doc "An empty stream whose frames may be at most `max` bytes (length header excluded)."
  @spec new(pos_integer()) :: t()
  def new(max), do: %__MODULE__{max: max}

  @doc """
  Adds bytes read from the port: the frames they complete, in order, or an error when a
  header announces a frame over the limit (the stream cannot be trusted any more).
  """
  @spec push(t(), binary()) :: {:ok, [binary()], t()} | {:error, String.t()}
  def push(%__MODULE__{size: size, need: need} = frames, chunk)
      when size + byte_size(chunk) < need do
    {:ok, [], %{frames | chunks: [frames.chunks | chunk], size: size + byte_size(chunk)}}
  end

  # The usual case: nothing buffered and the read is one whole frame.
  def push(%__MODULE__{size: 0, max: max} = frames, <<len::32, payload::binary-size(len)>>)
      when len <= max,
      do: {:ok, [payload], frames}

  # Nothing buffered (a read ends on a frame's end): no copy.
  def push(%__MODULE__{size: 0} = frames, chunk), do: cut(chunk, frames.max, [])

  def push(%__MODULE__{} = frames, chunk) do
    cut(IO.iodata_to_binary([frames.chunks | chunk]), frames.max, [])
  end

  defp cut(<<len::32, _::binary>>, max, _done) when len > max,
    do: {:error, "the Wasm host sent a frame of #{len} bytes, over the limit of #{max}"}

  defp cut(<<len::32, payload::binary-size(len), rest::binary>>, max, done),
    do: cut(rest, max, [payload | done])

  defp cut(<<len::32, _::binary>> = rest, max, done), do: wait(rest, len + 4, max, done)
  defp cut(rest, max, done), do: wait(rest, 4, max, done)

  defp wait(rest, need, max, done) do
    {:ok, Enum.reverse(done),
     %__MODULE__{max: max, chunks: rest, size: byte_size(rest), need: need}}
  end
end
