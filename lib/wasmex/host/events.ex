defmodule Wasmex.Host.Events do
  @moduledoc false
  # What a host server does with each frame from its port, once the frame is checked
  # (Wasmex.Host.Incoming): replies reach their targets, callbacks their runners,
  # WASI output and input requests reach their pipes or processes. Runs in the host server,
  # on its state.

  require Logger

  alias Wasmex.{Stats, Wire}
  alias Wasmex.Host.{Frames, Incoming, Requests}

  @doc """
  Bytes from the port: each whole frame is handled (`handle/2`). A stream that can no
  longer be trusted stops the host (and its port with it): every request in flight fails.
  """
  @spec data(binary(), struct()) :: {:noreply, struct()} | {:stop, term(), struct()}
  def data(data, state) do
    Stats.add(:bytes_received, byte_size(data))

    case Frames.push(state.frames, data) do
      {:ok, [payload], frames} ->
        {:noreply, handle(payload, %{state | frames: frames})}

      {:ok, payloads, frames} ->
        {:noreply, Enum.reduce(payloads, %{state | frames: frames}, &handle/2)}

      {:error, reason} ->
        Logger.error("wasmex_port: #{reason}; stopping this host")
        state = Requests.fail_all(state, "the Wasm host exited: #{reason}")
        {:stop, {:shutdown, {:port_exited, reason}}, state}
    end
  end

  @doc "One frame's payload from the port: the host's state after acting on it."
  @spec handle(binary(), struct()) :: struct()
  def handle(payload, state) do
    case Wire.decode(payload) do
      {:ok, term} -> handle_event(Incoming.check(term), state)
      {:error, reason} -> log_error(reason, state)
    end
  end

  defp handle_event({:reply, id, result}, state), do: Requests.deliver(state, id, result)

  defp handle_event({:reply_part, id, bytes}, state), do: Requests.part(state, id, bytes)

  defp handle_event({:callback, store_id, callback_id, pid, ns, name, params}, state),
    do: callback(state, store_id, callback_id, pid, ns, name, params)

  defp handle_event({:stdio, store_id, handler, bytes}, state),
    do: stdio(state, store_id, handler, bytes)

  defp handle_event({:callback_abandoned, store_id, callback_id, server}, state) do
    unless Wasmex.Callback.abandon(self(), store_id, callback_id, server) do
      send(server, {:wasmex_callback_abandoned, store_id, callback_id})
    end

    state
  end

  defp handle_event({:stdin_read, store_id, pid}, state), do: stdin_read(state, store_id, pid)

  # The port is about to end itself (a cap was exceeded): that is the exit's reason.
  defp handle_event({:fatal, message}, state), do: %{state | fatal: message}

  defp handle_event({:log, message}, state) do
    Logger.warning("wasmex_port: #{message}")
    state
  end

  defp handle_event({:invalid, reason}, state), do: log_error(reason, state)

  defp log_error(reason, state) do
    Logger.error("wasmex_port: #{reason}")
    state
  end

  defp callback(state, store_id, callback_id, pid, ns, name, params) do
    Stats.add(:callbacks)

    with :unregistered <-
           Wasmex.Callback.start(self(), state.port, pid, store_id, callback_id, ns, name, params) do
      # A process handling callbacks itself (an instance made with Wasmex.Instance.new/4).
      if is_pid(pid) and (node(pid) != node() or Process.alive?(pid)) do
        send(pid, {:wasmex_callback, self(), store_id, callback_id, ns, name, params})
        state
      else
        error = {:error, "the process handling import #{ns}.#{name} is not running"}
        Requests.notify(state, Wire.callback_return(store_id, callback_id, error))
      end
    else
      _started -> state
    end
  end

  # WASI output reaches its pipe or process (see Wasmex.Wasi.Output).
  defp stdio(state, store_id, handler, bytes),
    do: Wasmex.Wasi.Output.deliver(state, store_id, handler, bytes)

  defp stdin_read(state, store_id, pid) do
    if node(pid) != node() or Process.alive?(pid) do
      send(pid, {:wasmex_pipe_read, self(), store_id})
      state
    else
      Requests.notify(state, Wire.stdin_eof(store_id))
    end
  end
end
