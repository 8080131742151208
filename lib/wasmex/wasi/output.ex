defmodule Wasmex.Wasi.Output do
  @moduledoc false
  # The BEAM's half of WASI output (the port's half is port/output.rs). The port sends a
  # store's output as `{stdio, StoreId, Handler, Bytes}` frames and keeps, per handler, at
  # most a window of bytes unacknowledged; each `output_ack` notification
  # (`{StoreId, Handler, Bytes, Room}`) frees `Bytes` of it:
  #
  #   * a message receiver acknowledges what it consumed (Wasmex.Wasi.ack_output/3),
  #     with `Room` nil;
  #   * a pipe acknowledges every frame once written, with its room left;
  #   * the host server acknowledges with `Room` `closed` when the receiver is gone, and
  #     the program's later writes fail with EPIPE.
  #
  # An empty frame is a probe: a pipe answers it with its room; for a message receiver
  # nothing is sent, only its being alive is checked.

  alias Wasmex.{Host, StoreOrCaller}

  @doc false
  # The handler of an output stream, as the port knows it.
  @spec handler({:pipe, pid()} | {:messages, pid(), :wasmex_stdout | :wasmex_stderr}) ::
          binary()
  def handler(term), do: :erlang.term_to_binary(term)

  @doc false
  # Runs in the host server (state) for each stdio frame of the port.
  @spec deliver(map(), non_neg_integer(), tuple(), binary()) :: map()
  def deliver(state, store_id, handler, bytes) do
    case handler do
      {:pipe, pid} ->
        if alive?(pid) do
          send(pid, {:wasmex_pipe_output, state.port, store_id, bytes})
          state
        else
          closed(state, store_id, handler, bytes)
        end

      {:messages, pid, tag} ->
        cond do
          not alive?(pid) ->
            closed(state, store_id, handler, bytes)

          bytes == "" ->
            state

          true ->
            send(pid, {tag, StoreOrCaller.new(self(), store_id), bytes})
            state
        end
    end
  end

  defp alive?(pid), do: node(pid) != node() or Process.alive?(pid)

  defp closed(state, store_id, handler, bytes),
    do:
      Wasmex.Host.Requests.notify(
        state,
        Wasmex.Wire.output_ack(store_id, handler(handler), byte_size(bytes), :closed)
      )

  @doc false
  # A pipe took `bytes` of a frame for `store_id` and has `room` left.
  @spec ack_pipe(port(), non_neg_integer(), pid(), non_neg_integer(), non_neg_integer()) :: :ok
  def ack_pipe(port, store_id, pipe, bytes, room),
    do:
      Host.send_notification(
        port,
        Wasmex.Wire.output_ack(store_id, handler({:pipe, pipe}), bytes, room)
      )

  @max_u64 0xFFFF_FFFF_FFFF_FFFF

  @doc false
  # The calling process consumed `bytes` of `stream` from `store`.
  @spec ack(StoreOrCaller.t(), :stdout | :stderr, non_neg_integer()) :: :ok
  def ack(%StoreOrCaller{host: host, store_id: store_id}, stream, bytes) do
    handler = handler({:messages, self(), :"wasmex_#{stream}"})
    # More than was ever sent frees what was sent: the port counts in 64 bits.
    bytes = min(bytes, @max_u64)
    Host.notify(host, Wasmex.Wire.output_ack(store_id, handler, bytes, nil))
  end
end
