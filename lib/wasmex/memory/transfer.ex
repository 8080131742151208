defmodule Wasmex.Memory.Transfer do
  @moduledoc false
  # How `Wasmex.Memory` moves bytes to and from the port, by size:
  #
  #   * up to 4 MiB: one request; from 256 KiB on, the bytes go through the host's shared
  #     buffer when it is free (`Wasmex.Host.Bulk`), else in the request's frame or reply;
  #   * a read of more than 1 MiB through the pipe is answered in 1 MiB parts, joined here
  #     (`Wasmex.Host.Parts`, port/memory.rs);
  #   * a write of more than 4 MiB, up to 256 MiB, is staged: parts of 1 MiB, each its own
  #     request (through the shared buffer when it is free), then one request that writes
  #     them all at once (port/staging.rs). The host's other requests go between the
  #     parts, and the write is still one step for the store's other callers;
  #   * more than 256 MiB (one message carries at most 1 GiB): parts of 256 MiB, the last
  #     one first, so that a transfer past the end fails before anything moves. Such a
  #     transfer is not atomic.

  alias Wasmex.{Host, Memory, StoreOrCaller, Wire}
  alias Wasmex.Callback.Writes

  @part_bytes 256 * 1024 * 1024
  @address_limit 0x1_0000_0000_0000_0000
  # Writes of more than this are staged, in parts of @stage_part (the shared buffer takes
  # up to 4 MiB: smaller writes go in one transfer).
  @staged_above 4 * 1024 * 1024
  @stage_part 1024 * 1024

  @doc "Reads `length` bytes of `memory` from `index` (both checked)."
  @spec read(StoreOrCaller.t(), Memory.t(), non_neg_integer(), non_neg_integer()) ::
          binary() | {:error, String.t()}
  def read(store, memory, index, length) do
    cond do
      # No memory reaches past 2^64 bytes.
      index + length > @address_limit -> {:error, "out of bounds memory access"}
      length <= @part_bytes -> read_part(store, memory, index, length)
      true -> read_in_parts(store, memory, index, length)
    end
  end

  @doc "Writes `binary` into `memory` at `index` (checked)."
  @spec write(StoreOrCaller.t(), Memory.t(), non_neg_integer(), binary()) ::
          :ok | {:error, String.t()}
  def write(store, memory, index, binary) do
    size = byte_size(binary)

    cond do
      size > @part_bytes -> write_in_parts(store, memory, index, binary)
      size > @staged_above -> write_staged(store, memory, index, binary)
      true -> write_one(store, memory, index, binary)
    end
  end

  defp read_in_parts(store, memory, index, length) do
    with {:ok, [last | others]} <- last_first(index, length, &read_part(store, memory, &1, &2)),
         do: IO.iodata_to_binary([others | last])
  end

  defp read_part(store, memory, index, length) do
    copy = build(store, memory, &Wire.memory_read_bulk(&1, &2, &3, index, length))

    result =
      with :pipe <- Wasmex.Host.Bulk.read(store.host, length, copy),
           do: request(store, memory, &Wire.memory_read(&1, &2, &3, index, length))

    unwrap(result)
  end

  # Inside a callback, a write known to fit goes without a round trip.
  defp write_one(store, memory, index, binary) do
    with :usual <- Writes.write(store, memory, index, binary),
         :ok <- write_part(store, memory, index, binary) do
      Writes.reached(store, memory, index + byte_size(binary))
    end
  end

  defp write_in_parts(store, memory, index, binary) do
    write = fn at, length ->
      write_part(store, memory, at, binary_part(binary, at - index, length))
    end

    with {:ok, _} <- last_first(index, byte_size(binary), write), do: :ok
  end

  defp write_part(store, memory, index, binary) do
    send_bytes(
      store.host,
      binary,
      fn length -> build(store, memory, &Wire.memory_write_bulk(&1, &2, &3, index, length)) end,
      build(store, memory, &Wire.memory_write(&1, &2, &3, index, binary))
    )
  end

  # Stages the parts of `binary` under a new write id, then writes them in one step. A
  # part that fails ends the write (what was staged is dropped by the port in time, see
  # port/staging.rs).
  defp write_staged(store, memory, index, binary) do
    write = System.unique_integer([:positive])
    context = StoreOrCaller.context(store)

    staged =
      Enum.reduce_while(parts(byte_size(binary)), :ok, fn {at, length}, :ok ->
        case stage(store, context, write, binary_part(binary, at, length)) do
          :ok -> {:cont, :ok}
          error -> {:halt, error}
        end
      end)

    with :ok <- staged,
         :ok <-
           unwrap(request(store, memory, &Wire.memory_write_staged(&1, &2, &3, index, write))),
         do: Writes.reached(store, memory, index + byte_size(binary))
  end

  defp parts(size),
    do: for(at <- 0..(size - 1)//@stage_part, do: {at, min(@stage_part, size - at)})

  defp stage(store, context, write, part) do
    send_bytes(
      store.host,
      part,
      &Wire.memory_stage_bulk(context, write, &1),
      Wire.memory_stage(context, write, part)
    )
  end

  # Sends `binary` to `host` through its shared buffer, with the request `from_buffer.(length)`
  # that takes the bytes from there; or, when the buffer cannot take them, in the
  # request `in_frame` itself. The answer, unwrapped.
  defp send_bytes(host, binary, from_buffer, in_frame) do
    result =
      with :pipe <- Wasmex.Host.Bulk.write(host, binary, from_buffer),
           do: Host.request(host, in_frame)

    unwrap(result)
  end

  # One message to or from the host carries at most `Wasmex.Wire.max_frame/0` bytes: a
  # longer transfer goes in parts of @part_bytes. Runs `transfer.(at, length)` for each
  # part of the `length` bytes from `index`, the last one first: when it fails (a range
  # past the end fails there), no other runs, and the other parts are never listed (a
  # bogus length could name billions of them; once the last part is in range, they are
  # bounded by the memory's size). Then the others in order. `{:ok, [last result | the
  # others' results in order]}`, or the first error.
  defp last_first(index, length, transfer) do
    full_parts = div(length - 1, @part_bytes)
    before_last = full_parts * @part_bytes

    case transfer.(index + before_last, length - before_last) do
      {:error, _} = error ->
        error

      last ->
        0..(full_parts - 1)//1
        |> Enum.reduce_while([last], fn part, done ->
          case transfer.(index + part * @part_bytes, @part_bytes) do
            {:error, _} = error -> {:halt, error}
            result -> {:cont, [result | done]}
          end
        end)
        |> case do
          {:error, _} = error -> error
          [_ | _] = done -> {:ok, [last | tl(Enum.reverse(done))]}
        end
    end
  end

  @doc """
  Sends the request `build.(context, instance_id, memory_name)` (a `Wasmex.Wire`
  constructor) for `memory` and waits for its answer.
  """
  @spec request(
          StoreOrCaller.t(),
          Memory.t(),
          (term(), non_neg_integer(), String.t() ->
             Wire.request())
        ) :: term()
  def request(%StoreOrCaller{} = store, %Memory{} = memory, build),
    do: Host.request(store.host, build(store, memory, build))

  defp build(store, %Memory{instance_id: id, name: name}, build),
    do: build.(StoreOrCaller.context(store), id, name)

  @doc "What a memory request's answer gives the caller."
  @spec unwrap(term()) :: term()
  def unwrap({:ok, :ok}), do: :ok
  # A read the port answered in parts (see Wasmex.Host.Parts).
  def unwrap({:ok, {:parts, iodata}}), do: IO.iodata_to_binary(iodata)
  def unwrap({:ok, value}), do: value
  def unwrap({:error, _} = error), do: error
end
