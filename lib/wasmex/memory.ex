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

  alias Wasmex.{Host, Instance, StoreOrCaller}

  @enforce_keys [:instance_id, :name]
  defstruct [:instance_id, :name]

  @type t :: %__MODULE__{instance_id: non_neg_integer(), name: String.t()}

  @doc """
  The first memory exported by the instance.
  Errors with `"The WebAssembly module has no exported memory."` when there is none.
  """
  @spec from_instance(StoreOrCaller.t(), Instance.t()) :: {:ok, t()} | {:error, String.t()}
  def from_instance(_store, %Instance{} = instance) do
    case of_instance(instance) do
      nil -> {:error, "The WebAssembly module has no exported memory."}
      memory -> {:ok, memory}
    end
  end

  @doc false
  @spec of_instance(Instance.t()) :: t() | nil
  def of_instance(%Instance{id: id, module: module}) do
    module.exports
    |> Enum.filter(&match?({_, {:memory, _}}, &1))
    |> Enum.sort()
    |> case do
      [{"memory", _} | _] -> %__MODULE__{instance_id: id, name: "memory"}
      [{name, _} | _] -> %__MODULE__{instance_id: id, name: name}
      [] -> nil
    end
  end

  @doc "The size of the memory in bytes."
  @spec size(StoreOrCaller.t(), t()) :: non_neg_integer() | {:error, String.t()}
  def size(store, %__MODULE__{} = memory) do
    store |> request(:memory_size, memory, {}) |> unwrap()
  end

  @doc """
  Grows the memory by `pages` pages of 65,536 bytes; returns the size in pages before.
  """
  @spec grow(StoreOrCaller.t(), t(), non_neg_integer()) ::
          non_neg_integer() | {:error, String.t()}
  def grow(store, %__MODULE__{} = memory, pages) do
    check_index!(pages)
    store |> request(:memory_grow, memory, {pages}) |> unwrap()
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

  @doc "Reads `length` bytes starting at `index`."
  @spec read_binary(StoreOrCaller.t(), t(), non_neg_integer(), non_neg_integer()) ::
          binary() | {:error, String.t()}
  def read_binary(store, %__MODULE__{} = memory, index, length) do
    check_index!(index)
    check_index!(length)
    store |> request(:memory_read, memory, {index, length}) |> unwrap()
  end

  @doc "Writes `binary` starting at `index` (no terminating NUL byte is added)."
  @spec write_binary(StoreOrCaller.t(), t(), non_neg_integer(), binary()) ::
          :ok | {:error, String.t()}
  def write_binary(store, %__MODULE__{} = memory, index, binary) when is_binary(binary) do
    check_index!(index)
    store |> request(:memory_write, memory, {index, binary}) |> unwrap()
  end

  @doc "Reads `length` bytes starting at `index` as a string."
  @spec read_string(StoreOrCaller.t(), t(), non_neg_integer(), non_neg_integer()) ::
          String.t() | {:error, String.t()}
  def read_string(store, memory, index, length), do: read_binary(store, memory, index, length)

  defp request(%StoreOrCaller{} = store, op, %__MODULE__{instance_id: id, name: name}, args) do
    args = List.to_tuple([StoreOrCaller.context(store), id, name | Tuple.to_list(args)])
    Host.request(store.host, op, args)
  end

  defp unwrap({:ok, :ok}), do: :ok
  defp unwrap({:ok, value}), do: value
  defp unwrap({:error, _} = error), do: error

  defp check_index!(i) when is_integer(i) and i >= 0, do: :ok

  defp check_index!(i),
    do: raise(ArgumentError, "expected a non-negative integer, got: #{inspect(i)}")
end
