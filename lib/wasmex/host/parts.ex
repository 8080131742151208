defmodule Wasmex.Host.Parts do
  @moduledoc """
  The parts of answers that come in pieces: the port answers a memory read of more than
  1 MiB with `{reply_part, Id, Bytes}` frames ahead of its `reply`, so that the host's
  other stores are answered between them (see `port/memory.rs`). A struct and functions,
  kept by the host server.

  The port is untrusted: parts of an id that is not in flight are dropped, and an answer
  whose parts would pass `limit` bytes becomes an error rather than a growing heap.

      iex> alias Wasmex.Host.Parts
      iex> parts = Parts.new() |> Parts.add(7, "ab") |> Parts.add(7, "cd")
      iex> {answer, parts} = Parts.complete(parts, 7, {:ok, "e"})
      iex> answer
      {:ok, {:parts, ["ab", "cd", "e"]}}
      iex> Parts.complete(parts, 7, {:ok, "e"})
      {{:ok, "e"}, %Parts{}}
  """

  # The most an answer in parts may hold: what one frame from the port may (a memory read
  # is at most 256 MiB; see Wasmex.Memory).
  @limit Wasmex.Wire.max_incoming_frame()

  defstruct by_id: %{}

  @typedoc "Each id's parts so far: `{bytes, parts newest first}`, or `:over` the limit."
  @type t :: %__MODULE__{by_id: %{non_neg_integer() => {non_neg_integer(), [binary()]} | :over}}

  @doc "No parts."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "Adds `bytes` to the parts of answer `id`."
  @spec add(t(), non_neg_integer(), binary(), non_neg_integer()) :: t()
  def add(%__MODULE__{by_id: by_id} = parts, id, bytes, limit \\ @limit) do
    entry =
      case Map.get(by_id, id, {0, []}) do
        :over -> :over
        {size, _} when size + byte_size(bytes) > limit -> :over
        {size, list} -> {size + byte_size(bytes), [bytes | list]}
      end

    %{parts | by_id: Map.put(by_id, id, entry)}
  end

  @doc """
  The answer `result` to `id` with its parts, which it takes out: `{:ok, {:parts,
  iodata}}` (the parts and the last bytes in order) when it had parts, `result` itself
  when it had none or failed, an error when its parts passed the limit.
  """
  @spec complete(t(), non_neg_integer(), term()) :: {term(), t()}
  def complete(%__MODULE__{by_id: by_id} = parts, id, result) when is_map_key(by_id, id) do
    {entry, by_id} = Map.pop(by_id, id)
    {joined(entry, result), %{parts | by_id: by_id}}
  end

  def complete(parts, _id, result), do: {result, parts}

  defp joined({_size, list}, {:ok, last}) when is_binary(last),
    do: {:ok, {:parts, Enum.reverse([last | list])}}

  defp joined(:over, {:ok, _}),
    do:
      {:error,
       "malformed reply from the Wasm host: its parts are over the frame limit of #{@limit}"}

  defp joined(_entry, {:ok, other}),
    do: {:error, "malformed reply from the Wasm host: parts ended by #{inspect(other, limit: 5)}"}

  defp joined(_entry, error), do: error
end
