defmodule Wasmex.Host.Requests do
  @moduledoc false
  # A request's way through the host server: numbered, written to the port
  # (Wasmex.Host.Writer), kept in flight (Wasmex.Host.Pending) until its answer reaches its
  # target, or cancelled when its caller dies or gives up. Runs in the host server, on its
  # state (`%Wasmex.Host{}`).

  require Logger

  alias Wasmex.{Stats, Wire}
  alias Wasmex.Host.{Holders, KnownModules, Pending, Writer}

  @doc "Sends a request; its answer will go to `target` (see `t:Wasmex.Host.target/0`)."
  @spec send_request(struct(), Wire.request(), Wasmex.Host.target()) :: struct()
  def send_request(state, {op, args}, target) do
    id = state.next_id
    {sent, data} = KnownModules.prepare(state.modules, op, args)
    frame = Wire.encode_request(id, op, sent)
    size = IO.iodata_length(frame)

    if size > Wire.max_frame() do
      # The port would skip the frame unread, unable to say which request it was.
      error = "the request is #{size} bytes, over the frame limit of #{Wire.max_frame()}"
      reply(target, {:error, error}, state)
    else
      Stats.add(:bytes_sent, size)
      state = write(state, frame, size)
      if op == :call, do: Stats.add(:calls)
      pending = Pending.put(state.pending, id, target, watch(op, sent, target), data)
      %{state | next_id: id + 1, pending: pending}
    end
  end

  # A call's caller is watched: if it dies or gives up before the answer, the call is
  # cancelled and the port stops running it. So is a compilation's.
  defp watch(:call, args, _target) do
    case elem(args, 0) do
      {:caller, store_id, _} -> store_id
      store_id -> store_id
    end
  end

  defp watch(op, _args, {:reply, _}) when op in [:module_compile, :precompile], do: nil
  defp watch(_op, _args, _target), do: :unwatched

  @doc "The answer to request `id` reaches its target."
  @spec deliver(struct(), non_neg_integer(), {:ok, term()} | {:error, term()}) :: struct()
  def deliver(state, id, result) do
    case Pending.pop(state.pending, id) do
      # Id 0 answers a frame the port could not read; other unknown ids are answers to
      # cancelled calls.
      {nil, _} ->
        if id == 0, do: Logger.warning("wasmex_port: #{inspect(result)}")
        state

      {{target, _watch, data}, pending} ->
        state = %{state | pending: pending}

        case KnownModules.answered(state.modules, data, result) do
          # The port dropped a module the host thought it had: sent again, with it.
          {:resend, op, args, modules} ->
            send_request(%{state | modules: modules}, {op, args}, target)

          {:ok, modules} ->
            reply(target, count_failure(result), %{state | modules: modules})
        end
    end
  end

  @doc "The caller with `from` stopped waiting (`Wasmex.Host.Client`)."
  @spec give_up(struct(), GenServer.from()) :: struct()
  def give_up(state, from) do
    case Pending.give_up(state.pending, from) do
      {:cancel, id, store_id, pending} -> cancel(%{state | pending: pending}, id, store_id)
      {:ok, pending} -> %{state | pending: pending}
    end
  end

  @doc """
  A monitor of the host fired: a watched caller died (its calls are cancelled), or a store
  holder did. `{:holder, store_id | nil, state}` for the second (with the store's id if it
  is to be dropped), `{:caller, state}` or `:unknown`.
  """
  @spec down(struct(), reference(), pid()) ::
          {:caller, struct()} | {:holder, non_neg_integer() | nil, struct()} | :unknown
  def down(state, ref, pid) do
    case Pending.down(state.pending, ref, pid) do
      {:ok, cancels, pending} ->
        state = %{state | pending: pending}
        {:caller, Enum.reduce(cancels, state, fn {id, s}, state -> cancel(state, id, s) end)}

      :unknown ->
        case Holders.down(state.holders, ref, pid) do
          {:drop, store_id, holders} -> {:holder, store_id, drop_store(state, holders, store_id)}
          {:keep, _store_id, holders} -> {:holder, nil, %{state | holders: holders}}
          :unknown -> :unknown
        end
    end
  end

  @doc "The holders changed and the store `store_id` is to go: its drop is written."
  @spec drop_store(struct(), Holders.t(), non_neg_integer()) :: struct()
  def drop_store(state, holders, store_id),
    do: notify(%{state | holders: holders}, Wire.store_drop(store_id))

  defp cancel(state, id, store_id) do
    Stats.add(:cancels)
    notify(state, Wire.cancel(store_id, id))
  end

  @doc "Every request in flight gets `{:error, message}` (the port is gone)."
  @spec fail_all(struct(), String.t()) :: struct()
  def fail_all(state, message) do
    Enum.each(Pending.targets(state.pending), &reply(&1, {:error, message}, state))
    %{state | pending: Pending.new()}
  end

  # Counts a failed call by its kind; a failure while Wasm ran comes as `{:trap, message}`
  # and is passed on as the message.
  defp count_failure({:ok, _} = result), do: result

  defp count_failure({:error, {:trap, message}}) when is_binary(message) do
    Stats.add(:traps)
    Wasmex.Telemetry.event([:call, :trap], %{host: self(), message: message})
    {:error, message}
  end

  defp count_failure({:error, "timed out" <> _ = message} = result) do
    Stats.add(:timeouts)
    Wasmex.Telemetry.event([:call, :timeout], %{host: self(), message: message})
    result
  end

  defp count_failure(result), do: result

  defp reply({:reply, from}, result, state) do
    GenServer.reply(from, result)
    state
  end

  defp reply({:send, pid, tag}, result, state) do
    send(pid, {:returned_function_call, result, tag})
    state
  end

  # A store whose creator stopped waiting: nobody holds it.
  defp reply(:drop_store, {:ok, store_id}, state), do: notify(state, Wire.store_drop(store_id))
  defp reply(:drop_store, _result, state), do: state

  defp reply({:new_store, from, holder}, result, state) do
    GenServer.reply(from, result)

    case result do
      {:ok, store_id} -> %{state | holders: Holders.hold(state.holders, store_id, holder)}
      _ -> state
    end
  end

  @doc "Writes a notification (a request without a reply) through the host's batching."
  @spec notify(struct(), Wire.request()) :: struct()
  def notify(state, request) do
    {frame, size} = Writer.notification_frame(request)
    write(state, frame, size)
  end

  defp write(state, frame, size),
    do: %{state | outgoing: Writer.write(state.port, state.outgoing, frame, size)}
end
