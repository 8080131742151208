defmodule Wasmex.Memory do
  @moduledoc """
  The linear memory of a Wasm instance: a byte array that Wasm and Elixir share.

  Every function takes the store the instance lives in (or, inside an import callback,
  the `caller`). Memory is measured in bytes; it grows in pages of 65,536 bytes.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, store} = Wasmex.store(pid)
      iex> {:ok, memory} = Wasmex.memory(pid)
      iex> Wasmex.Memory.size(store, memory)
      1114112
      iex> Wasmex.Memory.write_binary(store, memory, 100, "hello")
      :ok
      iex> Wasmex.Memory.read_binary(store, memory, 100, 5)
      "hello"
  """

  import Bitwise

  alias Wasmex.{Instance, StoreOrCaller, Wire}
  alias Wasmex.Callback.Writes
  alias Wasmex.Memory.Transfer

  @enforce_keys [:instance_id, :name]
  # `resource` (`{instance_id, export_name}`: which memory) and `reference` (made with the
  # handle) are the fields of Wasmex's struct; the others are internal.
  defstruct [:resource, :reference, :instance_id, :name, store: nil, size: :uint8, offset: 0]

  @typedoc "The element type of a typed view (earlier Wasmex API)."
  @type view_type :: :uint8 | :int8 | :uint16 | :int16 | :uint32 | :int32

  @typedoc """
  A memory. `store`, `size` and `offset` are set for typed views made with the earlier
  Wasmex API (`from_instance/1,3`, `Wasmex.memory/3`); the 0.9.1 functions ignore them.
  """
  @type t :: %__MODULE__{
          resource: {non_neg_integer(), String.t()},
          reference: reference(),
          instance_id: non_neg_integer(),
          name: String.t(),
          store: StoreOrCaller.t() | nil,
          size: view_type(),
          offset: non_neg_integer()
        }

  @doc """
  The first memory exported by the instance.
  Errors with `"The WebAssembly module has no exported memory."` when there is none.
  """
  @spec from_instance(StoreOrCaller.t(), Instance.t()) :: {:ok, t()} | {:error, String.t()}
  def from_instance(store, %Instance{} = instance) do
    with :ok <- Instance.of_store(store, instance) do
      case of_instance(instance) do
        nil -> {:error, "The WebAssembly module has no exported memory."}
        memory -> {:ok, memory}
      end
    end
  end

  @doc false
  @spec of_instance(Instance.t()) :: t() | nil
  def of_instance(%Instance{id: id, module: module}) do
    # The first memory export by name, in one pass: modules may export hundreds of
    # functions, and every instance with imports asks.
    first =
      :maps.fold(
        fn
          name, {:memory, _}, nil -> name
          name, {:memory, _}, first when name < first -> name
          _name, _export, first -> first
        end,
        nil,
        module.exports
      )

    first && handle(id, first)
  end

  defp handle(id, name),
    do: %__MODULE__{resource: {id, name}, reference: make_ref(), instance_id: id, name: name}

  @doc "The size of the memory in bytes."
  @spec size(StoreOrCaller.t(), t()) :: non_neg_integer() | {:error, String.t()}
  def size(store, %__MODULE__{} = memory) do
    case store |> Transfer.request(memory, &Wire.memory_size/3) |> Transfer.unwrap() do
      size when is_integer(size) -> tap(size, &Writes.reached(store, memory, &1))
      error -> error
    end
  end

  @doc """
  Grows the memory by `pages` pages of 65,536 bytes; returns the size in pages before.
  """
  @spec grow(StoreOrCaller.t(), t(), non_neg_integer()) ::
          non_neg_integer() | {:error, String.t()}
  def grow(store, %__MODULE__{} = memory, pages) do
    check_index!(pages)
    store |> Transfer.request(memory, &Wire.memory_grow(&1, &2, &3, pages)) |> Transfer.unwrap()
  end

  @doc "Reads the byte at `index`."
  @spec get_byte(StoreOrCaller.t(), t(), non_neg_integer()) :: byte() | {:error, String.t()}
  def get_byte(store, memory, index) do
    case read_binary(store, memory, index, 1) do
      <<byte>> -> byte
      error -> error
    end
  end

  @doc "Writes the byte `value` (0..255) at `index`."
  @spec set_byte(StoreOrCaller.t(), t(), non_neg_integer(), byte()) :: :ok | {:error, String.t()}
  def set_byte(store, memory, index, value) do
    unless is_integer(value) and value in 0..255,
      do: raise(ArgumentError, "byte value must be 0..255, got: #{inspect(value)}")

    write_binary(store, memory, index, <<value>>)
  end

  @doc """
  Reads `length` bytes starting at `index`.

  A read of more than 256 MiB goes to the host in parts (one message carries at most
  1 GiB), the last one first: a read past the end is refused before the rest is read,
  but one within the memory is not atomic (a caller of the same store may write in
  between).
  """
  @spec read_binary(StoreOrCaller.t(), t(), non_neg_integer(), non_neg_integer()) ::
          binary() | {:error, String.t()}
  def read_binary(store, %__MODULE__{} = memory, index, length) do
    check_index!(index)
    check_index!(length)
    Transfer.read(store, memory, index, length)
  end

  @doc """
  Writes `binary` starting at `index` (no terminating NUL byte is added).

  A write of more than 4 MiB goes to the host in parts of 1 MiB, which the host keeps
  aside until the last one and then writes in one step: other requests to the host are
  served between the parts, and the store's other callers see the write whole or not at
  all. A write of more than 256 MiB goes in parts of 256 MiB, the last one first: a write
  that does not fit in the memory changes nothing, but one that does is not atomic (a
  caller of the same store may read a part-written range).
  """
  @spec write_binary(StoreOrCaller.t(), t(), non_neg_integer(), binary()) ::
          :ok | {:error, String.t()}
  def write_binary(store, %__MODULE__{} = memory, index, binary) when is_binary(binary) do
    check_index!(index)
    Transfer.write(store, memory, index, binary)
  end

  @doc "Reads `length` bytes starting at `index` as a string."
  @spec read_string(StoreOrCaller.t(), t(), non_neg_integer(), non_neg_integer()) ::
          String.t() | {:error, String.t()}
  def read_string(store, memory, index, length), do: read_binary(store, memory, index, length)

  defp check_index!(i) when is_integer(i) and i >= 0, do: :ok

  defp check_index!(i),
    do: raise(ArgumentError, "expected a non-negative integer, got: #{inspect(i)}")

  # Typed views: the earlier Wasmex API. A view has an element type and an offset; both
  # the offset and the index count elements, little-endian: a :uint16 view at offset 50
  # starts at byte 100, and its index 3 is bytes 106-107.

  @view_types %{
    uint8: {1, :unsigned},
    int8: {1, :signed},
    uint16: {2, :unsigned},
    int16: {2, :signed},
    uint32: {4, :unsigned},
    int32: {4, :signed}
  }

  @doc """
  The number of bytes one element of a view takes.

      iex> Wasmex.Memory.bytes_per_element(:uint32)
      4
  """
  @spec bytes_per_element(t() | view_type()) :: pos_integer()
  def bytes_per_element(%__MODULE__{size: size}), do: bytes_per_element(size)
  def bytes_per_element(size) when is_map_key(@view_types, size), do: elem(@view_types[size], 0)

  @doc "A `:uint8` view of the instance's memory at offset 0 (earlier Wasmex API)."
  @spec from_instance(Instance.t()) :: {:ok, t()} | {:error, String.t()}
  def from_instance(%Instance{} = instance), do: from_instance(instance, :uint8, 0)

  @doc "A typed view of the instance's memory (earlier Wasmex API)."
  @spec from_instance(Instance.t(), view_type(), non_neg_integer()) ::
          {:ok, t()} | {:error, String.t()}
  def from_instance(%Instance{} = instance, size, offset)
      when is_map_key(@view_types, size) and is_integer(offset) and offset >= 0 do
    store = Instance.store_of(instance)

    with {:ok, memory} <- from_instance(store, instance) do
      {:ok, %{memory | store: store, size: size, offset: offset}}
    end
  end

  def from_instance(%Instance{}, size, offset) when is_map_key(@view_types, size),
    do: {:error, "a view's offset must be a non-negative integer, got: #{inspect(offset)}"}

  def from_instance(%Instance{}, size, _offset),
    do:
      {:error,
       "a view's type must be one of #{inspect(Map.keys(@view_types) |> Enum.sort())}, got: #{inspect(size)}"}

  @doc "The number of elements of the view that fit in the memory after its offset."
  @spec length(t()) :: non_neg_integer() | {:error, String.t()}
  def length(%__MODULE__{size: size, offset: offset} = memory), do: length(memory, size, offset)

  @doc "Same as `length/1` with another element type and offset."
  @spec length(t(), view_type(), non_neg_integer()) :: non_neg_integer() | {:error, String.t()}
  def length(%__MODULE__{store: store} = memory, size, offset) do
    case size(store, memory) do
      bytes when is_integer(bytes) -> max(div(bytes, bytes_per_element(size)) - offset, 0)
      error -> error
    end
  end

  @doc "Grows the memory by `pages` (of 65,536 bytes); returns the previous size in pages."
  @spec grow(t(), non_neg_integer()) :: non_neg_integer() | {:error, String.t()}
  def grow(%__MODULE__{store: store} = memory, pages), do: grow(store, memory, pages)

  @doc "The element at `index` of the view."
  @spec get(t(), non_neg_integer()) :: integer() | {:error, String.t()}
  def get(%__MODULE__{size: size, offset: offset} = memory, index),
    do: get(memory, size, offset, index)

  @doc "The element at `index` of a view with the given type and offset."
  @spec get(t(), view_type(), non_neg_integer(), non_neg_integer()) ::
          integer() | {:error, String.t()}
  def get(%__MODULE__{store: store} = memory, size, offset, index) do
    {bytes, signedness} = Map.fetch!(@view_types, size)
    bits = bytes * 8

    with {:ok, position} <- view_position(memory, size, offset, index, 1),
         <<value::little-size(bits)-unit(1)>> <- read_binary(store, memory, position, bytes) do
      if signedness == :signed, do: signed(value, bits), else: value
    end
  end

  @doc "Writes `value` at `index` of the view; returns the value."
  @spec set(t(), non_neg_integer(), integer()) :: integer() | {:error, String.t()}
  def set(%__MODULE__{size: size, offset: offset} = memory, index, value),
    do: set(memory, size, offset, index, value)

  @doc "Same as `set/3` with another element type and offset."
  @spec set(t(), view_type(), non_neg_integer(), non_neg_integer(), integer()) ::
          integer() | {:error, String.t()}
  def set(%__MODULE__{store: store} = memory, size, offset, index, value) do
    {bytes, signedness} = Map.fetch!(@view_types, size)
    bits = bytes * 8

    with :ok <- check_fits(value, bits, signedness, size),
         {:ok, position} <- view_position(memory, size, offset, index, 1),
         :ok <- write_binary(store, memory, position, <<value::little-size(bits)-unit(1)>>) do
      value
    end
  end

  @doc "Reads `length` elements of the view from `index`, as bytes."
  @spec read_binary(t(), non_neg_integer(), non_neg_integer()) :: binary() | {:error, String.t()}
  def read_binary(%__MODULE__{size: size, offset: offset} = memory, index, length),
    do: read_binary(memory, size, offset, index, length)

  @doc "Same as `read_binary/3` with another element type and offset."
  @spec read_binary(t(), view_type(), non_neg_integer(), non_neg_integer(), non_neg_integer()) ::
          binary() | {:error, String.t()}
  def read_binary(%__MODULE__{store: store} = memory, size, offset, index, length) do
    with {:ok, position} <- view_position(memory, size, offset, index, length) do
      read_binary(store, memory, position, length * bytes_per_element(size))
    end
  end

  @doc "Writes `binary` into the view from element `index`."
  @spec write_binary(t(), non_neg_integer(), binary()) :: :ok | {:error, String.t()}
  def write_binary(%__MODULE__{size: size, offset: offset} = memory, index, binary),
    do: write_binary(memory, size, offset, index, binary)

  @doc "Same as `write_binary/3` with another element type and offset."
  @spec write_binary(t(), view_type(), non_neg_integer(), non_neg_integer(), binary()) ::
          :ok | {:error, String.t()}
  def write_binary(%__MODULE__{store: store} = memory, size, offset, index, binary)
      when is_binary(binary) do
    with {:ok, position} <- view_position(memory, size, offset, index, 0) do
      write_binary(store, memory, position, binary)
    end
  end

  @doc "Reads `length` elements of the view from `index` as a string."
  @spec read_string(t(), non_neg_integer(), non_neg_integer()) ::
          String.t() | {:error, String.t()}
  def read_string(%__MODULE__{} = memory, index, length), do: read_binary(memory, index, length)

  @doc "Same as `read_string/3` with another element type and offset."
  @spec read_string(t(), view_type(), non_neg_integer(), non_neg_integer(), non_neg_integer()) ::
          String.t() | {:error, String.t()}
  def read_string(%__MODULE__{} = memory, size, offset, index, length),
    do: read_binary(memory, size, offset, index, length)

  # The byte position of element `index`, checked against the view's length.
  defp view_position(%__MODULE__{store: nil}, _size, _offset, _index, _count),
    do: {:error, "this memory has no store: make views with from_instance/1,3 or Wasmex.memory/3"}

  defp view_position(memory, size, offset, index, count) do
    unless is_map_key(@view_types, size),
      do: raise(ArgumentError, "unknown view type #{inspect(size)}")

    check_index!(offset)
    check_index!(index)

    case length(memory, size, offset) do
      {:error, _} = error ->
        error

      length when index + count > length and count > 0 ->
        {:error, "index #{index} is out of range for a view of #{length} elements"}

      _length ->
        {:ok, (offset + index) * bytes_per_element(size)}
    end
  end

  defp check_fits(value, bits, :unsigned, size) when is_integer(value) do
    if value >= 0 and value < 1 <<< bits,
      do: :ok,
      else: {:error, "#{value} does not fit in #{size}"}
  end

  defp check_fits(value, bits, :signed, size) when is_integer(value) do
    limit = 1 <<< (bits - 1)

    if value >= -limit and value < limit,
      do: :ok,
      else: {:error, "#{value} does not fit in #{size}"}
  end

  defp check_fits(value, _bits, _signedness, size),
    do: {:error, "#{inspect(value)} is not an integer for #{size}"}

  defp signed(value, bits) do
    if value >= 1 <<< (bits - 1), do: value - (1 <<< bits), else: value
  end
end
