defmodule Wasmex.Callback.Writes do
  @moduledoc false
  # A write a callback makes into its instance's memory, through its caller, goes to the
  # port without waiting for the answer: one message, no round trip. It is sent straight
  # to the port from the callback's process, so it reaches the Wasm frame waiting for the
  # callback before anything the process (or anyone it talks to) sends later, and before
  # the callback's answer.
  #
  # A write nobody waits for must not fail, so only writes known to fit take this route:
  # those that end below a floor the memory has surely reached. Linear memory never
  # shrinks, so the floor is the memory's declared minimum at first, then the end of every
  # write or the size that the port confirmed since (kept per instance, in an :atomics).
  # Anything else (another memory, a write past the floor, a large one, a write from
  # another process) takes the usual route and gets the usual answer.

  alias Wasmex.{Memory, StoreOrCaller, Wire}
  alias Wasmex.Host.Writer

  @key :wasmex_callback_writes
  # Larger writes go the usual route (the shared buffer, for the largest ones).
  @max_quiet 65_536

  @typedoc "The floor of one instance's context memory, in bytes."
  @type floor :: :atomics.atomics_ref()

  @doc "A floor for `memory` of `instance`, starting at the memory's declared minimum."
  @spec new_floor(Memory.t() | nil, Wasmex.Instance.t() | nil) :: floor() | nil
  def new_floor(nil, _instance), do: nil

  def new_floor(%Memory{name: name}, instance) do
    floor = :atomics.new(1, signed: false)

    case instance.module.exports do
      %{^name => {:memory, %{minimum: pages}}} -> :atomics.put(floor, 1, pages * 65_536)
      _ -> :ok
    end

    floor
  end

  @doc "Marks the calling process as the one running callback `caller_id`."
  @spec enter(port(), StoreOrCaller.t(), Memory.t() | nil, floor() | nil) :: :ok
  def enter(_port, _caller, nil, _floor), do: :ok

  def enter(port, %StoreOrCaller{} = caller, %Memory{} = memory, floor) do
    Process.put(
      @key,
      {port, caller.host, caller.store_id, caller.caller_id, memory_key(memory), floor}
    )

    :ok
  end

  @doc """
  Writes without waiting when the calling process runs the callback of `caller`, the
  memory is its instance's, and the write ends below the floor: `:ok`, or `:usual` to take
  the usual route.
  """
  @spec write(StoreOrCaller.t(), Memory.t(), non_neg_integer(), binary()) :: :ok | :usual
  def write(%StoreOrCaller{caller_id: nil}, _memory, _index, _binary), do: :usual

  def write(%StoreOrCaller{} = caller, %Memory{} = memory, index, binary)
      when byte_size(binary) <= @max_quiet do
    with {port, floor} <- running(caller, memory),
         true <- index + byte_size(binary) <= :atomics.get(floor, 1) do
      ctx = StoreOrCaller.context(caller)
      request = Wire.memory_write(ctx, memory.instance_id, memory.name, index, binary)
      Writer.command(port, Wire.encode_request(Wire.unanswered_id(), request))
    else
      _ -> :usual
    end
  end

  def write(_caller, _memory, _index, _binary), do: :usual

  @doc "Raises the floor to `size`: the port confirmed that the memory has reached it."
  @spec reached(StoreOrCaller.t(), Memory.t(), non_neg_integer()) :: :ok
  def reached(%StoreOrCaller{caller_id: nil}, _memory, _size), do: :ok

  def reached(caller, memory, size) do
    case running(caller, memory) do
      {_port, floor} -> raise_to(floor, size)
      nil -> :ok
    end
  end

  defp raise_to(floor, size) do
    seen = :atomics.get(floor, 1)

    if size > seen and :atomics.compare_exchange(floor, 1, seen, size) != :ok,
      do: raise_to(floor, size),
      else: :ok
  end

  defp running(%StoreOrCaller{host: host, store_id: store, caller_id: id}, memory) do
    key = memory_key(memory)

    case Process.get(@key) do
      {port, ^host, ^store, ^id, ^key, floor} -> {port, floor}
      _ -> nil
    end
  end

  defp memory_key(%Memory{instance_id: id, name: name}), do: {id, name}
end
