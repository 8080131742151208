defmodule Wasmex.StoreLimits do
  @moduledoc """
  Limits on what the Wasm in one store may allocate. `nil` means no limit of that kind,
  except for `table_elements`.

    * `memory_size` - bytes each linear memory may grow to;
    * `table_elements` - elements each table may grow to; `nil` (and a store made without
      limits) means 10,000,000, as for each table of an engine with instance slots:
      growing a table cannot be stopped half way at a call's deadline, and its elements
      are written out (300 million of them take gigabytes);
    * `instances`, `tables`, `memories` - how many of each the store may create.

  Growth past a limit fails the way Wasm specifies (`memory.grow` returns -1);
  instantiation past a limit fails with an error.

  A store whose memories may grow to two pages (65,536 bytes each):

      iex> limits = %Wasmex.StoreLimits{memory_size: 2 * 65_536}
      iex> {:ok, store} = Wasmex.Store.new(limits)
      iex> {:ok, pid} = Wasmex.start_link(%{store: store, bytes: ~s{(module (memory (export "memory") 1))}})
      iex> {:ok, memory} = Wasmex.memory(pid)
      iex> Wasmex.Memory.grow(store, memory, 1)
      1
      iex> {:error, _past_the_limit} = Wasmex.Memory.grow(store, memory, 1)
      iex> Wasmex.Memory.size(store, memory)
      131072
  """

  defstruct [:memory_size, :table_elements, :instances, :tables, :memories]

  @type t :: %__MODULE__{
          memory_size: non_neg_integer() | nil,
          table_elements: non_neg_integer() | nil,
          instances: non_neg_integer() | nil,
          tables: non_neg_integer() | nil,
          memories: non_neg_integer() | nil
        }

  @doc false
  @spec to_wire(t() | nil) :: map() | nil
  def to_wire(nil), do: nil
  def to_wire(%__MODULE__{} = limits), do: Map.from_struct(limits)
end
