defmodule Wasmex.Host do
  @moduledoc """
  A host is one running `wasmex_port` OS process plus this process, which owns its port.

  The host server frames requests, numbers them, and routes what comes back: replies go
  straight to whoever is waiting (the original caller of `Wasmex.call_function/4`, not the
  instance server), import callbacks go to the process that handles them. It never waits
  on the port, so replies, callbacks and new requests always flow.

  Lifetimes:

    * every store has holders (the process that created it, and each `Wasmex` instance
      server using it); when the last holder exits, the store is dropped in the port;
    * a host started for one store (`Wasmex.Store.new/0` without an engine) or by
      `Wasmex.Engine.new/1` stops once its owner has exited and it has no store left;
    * the default engine's host (`Wasmex.Engine.default/0`) stays up.

  When the port process dies, every waiting caller gets `{:error, reason}` at once and
  the host server exits with `{:shutdown, {:port_exited, description}}`; instance
  servers monitoring it exit with that reason.
  """
  use GenServer, restart: :temporary
  require Logger

  alias Wasmex.{Stats, Wire}
  alias Wasmex.Host.{Client, Events, Frames, KnownModules, Outgoing, Pending, Startup, Writer}

  defstruct [
    :port,
    :os_pid,
    :owner,
    :owner_ref,
    :frames,
    compile_timeout: 60_000,
    fatal: nil,
    next_id: 1,
    pending: Pending.new(),
    holders: %{},
    monitors: %{},
    modules: MapSet.new(),
    outgoing: Outgoing.new()
  ]

  # What the port answers when it no longer has a module (see port/module.rs).
  @not_loaded "the module is not loaded in this host and no source was sent"

  @typedoc "A reply target: where the result of a request goes."
  @type target ::
          {:reply, GenServer.from()}
          | {:send, pid(), term()}
          | {:new_store, GenServer.from(), pid()}

  @doc """
  Starts a host under `Wasmex.HostSupervisor` with the given `Wasmex.EngineConfig`.
  The host lives while `owner` (a pid) does or while it has stores; with `:forever` it
  lives until stopped.

  Options: `:name` registers the host; `:executable` runs another port program than
  the built `priv/wasmex_port`; `:os_limits` caps the OS process (default: the
  application environment) and `:instance_slots` sizes its pool of instance slots
  (default `false`: none; see `Wasmex.Engine.new/2`).
  """
  @spec start(Wasmex.EngineConfig.t(), pid() | :forever, keyword()) ::
          {:ok, pid()} | {:error, term()}
  def start(config, owner, opts \\ []) do
    DynamicSupervisor.start_child(Wasmex.HostSupervisor, {__MODULE__, {config, owner, opts}})
  end

  @doc false
  def start_link({config, owner, opts}) do
    executable = Keyword.get(opts, :executable, executable())

    host_options = %{
      os_limits:
        Keyword.get_lazy(opts, :os_limits, fn -> Application.get_env(:wasmex, :os_limits) end),
      compile_timeout:
        Keyword.get_lazy(opts, :compile_timeout, fn ->
          Application.get_env(:wasmex, :compile_timeout, 60_000)
        end),
      instance_slots: Keyword.get(opts, :instance_slots, false)
    }

    GenServer.start_link(
      __MODULE__,
      {config, owner, executable, host_options},
      Keyword.take(opts, [:name])
    )
  end

  @doc """
  Sends a request and waits for its result, a bounded time (see `Wasmex.Host.Client`):
  a caller that stops waiting gets `{:error, reason}` and its request is cancelled. Exits
  of the host become `{:error, reason}`.
  """
  @spec request(pid(), atom(), tuple()) :: {:ok, term()} | {:error, term()}
  def request(host, op, args)
      when op in [
             :module_compile,
             :precompile,
             :preinitialize,
             :module_serialize,
             :component_compile
           ] do
    case call(host, :compile_timeout) do
      {:error, _} = error -> error
      :infinity -> call(host, {:request, op, args}, :infinity)
      ms -> call(host, {:request, op, args}, ms + Client.request_timeout())
    end
  end

  def request(host, op, args), do: call(host, {:request, op, args}, Client.wait_for(op, args))

  @doc "Sends a request whose result goes to `target` (see `t:target/0`)."
  @spec cast_request(pid(), atom(), tuple(), target()) :: :ok
  def cast_request(host, op, args, target) do
    GenServer.cast(host, {:request, op, args, target})
  end

  @doc "Sends a notification: a request that gets no reply."
  @spec notify(pid(), atom(), tuple()) :: :ok
  def notify(host, op, args), do: GenServer.cast(host, {:notify, op, args})

  @doc "Creates a store in the host, held by `holder`."
  @spec new_store(pid(), term(), term(), pid()) :: {:ok, non_neg_integer()} | {:error, term()}
  def new_store(host, limits, wasi, holder),
    do: call(host, {:new_store, limits, wasi, holder})

  @doc "Adds `pid` to the holders of a store: the store lives while any holder does."
  @spec retain(pid(), non_neg_integer(), pid()) :: :ok | {:error, term()}
  def retain(host, store_id, pid) when node(host) == node() do
    # A cast is enough locally: requests this process sends next reach the host after it,
    # and fail by themselves if the store is unknown.
    GenServer.cast(host, {:retain, store_id, pid})
  end

  def retain(host, store_id, pid), do: call(host, {:retain, store_id, pid})

  @doc "Removes `pid` from the holders of a store."
  @spec release(pid(), non_neg_integer(), pid()) :: :ok
  def release(host, store_id, pid), do: GenServer.cast(host, {:release, store_id, pid})

  @doc """
  Drops a store now, whoever holds it (`Wasmex.Store.release/1`). Its drop reaches the
  port ahead of any request sent after this returns.
  """
  @spec free_store(pid(), non_neg_integer()) :: :ok | {:error, String.t()}
  def free_store(host, store_id), do: call(host, {:free_store, store_id})

  @doc """
  Asks the host to free its shared buffer (`Wasmex.Host.Bulk`) from `holder`, a process
  that died holding it under `token`: done once the port has answered every request of
  `holder`, and no sooner than `:bulk_reclaim_after` milliseconds (default 100), which
  leaves a request `holder` sent just before it died the time to arrive.
  """
  @spec reclaim_bulk(pid(), pos_integer(), pid()) :: :ok
  def reclaim_bulk(host, token, holder), do: GenServer.cast(host, {:reclaim_bulk, token, holder})

  @doc """
  Same as `release/3`, but returns once the host has let go. If `pid` was the last holder,
  the store's drop is then on its way to the port ahead of any request sent after this
  returns, so an instantiation waiting for free instance slots knows to wait for it.
  """
  @spec release_now(pid(), non_neg_integer(), pid()) :: :ok
  def release_now(host, store_id, pid) when node(host) == node() do
    _ = call(host, {:release, store_id, pid})
    :ok
  end

  # Another node's host: the order of a drop and the next request matters only locally,
  # and a node that cannot be reached must not hold up the caller.
  def release_now(host, store_id, pid), do: release(host, store_id, pid)

  @doc """
  Leaves the host without an owner: it stops once it has no store left. For a host started
  for one store, whose holders decide from then on.
  """
  @spec disown(pid()) :: :ok
  def disown(host), do: GenServer.cast(host, :disown)

  # Hands the host to a new owner (see Wasmex.Host.Spare).
  @spec adopt(pid(), pid()) :: :ok | {:error, term()}
  def adopt(host, owner), do: call(host, {:adopt, owner})

  # A call to the host server that waits a bounded time; the host's exit becomes an error.
  defp call(host, message, wait \\ Client.request_timeout()) do
    case Client.call(host, message, wait) do
      {:error, :timeout} -> {:error, "the Wasm host did not answer within #{wait} ms"}
      {:error, {:down, reason}} -> {:error, down_message(reason)}
      answer -> answer
    end
  end

  @doc "The OS process id of the host's port program (`nil` if the host does not answer)."
  @spec os_pid(pid()) :: non_neg_integer() | nil
  def os_pid(host) do
    case call(host, :os_pid) do
      {:error, _} -> nil
      os_pid -> os_pid
    end
  end

  @doc false
  def down_message({reason, {GenServer, :call, _}}), do: down_message(reason)
  def down_message(:noproc), do: "the Wasm host is not running"
  def down_message({:shutdown, {:port_exited, why}}), do: "the Wasm host exited: #{why}"
  def down_message(reason), do: "the Wasm host is not running: #{inspect(reason)}"

  # Server

  @impl true
  def init({config, owner, executable, host_options}) do
    Process.flag(:trap_exit, true)

    with {:ok, port, bulk, frames} <- Startup.start_port(executable, config, host_options) do
      owner_ref = if is_pid(owner), do: Process.monitor(owner)
      {:os_pid, os_pid} = Port.info(port, :os_pid)
      Logger.metadata(wasmex_host: os_pid)
      Stats.add(:hosts_started)
      Wasmex.Telemetry.event([:host, :start], %{host: self(), os_pid: os_pid})
      # Where large memory writes go (Wasmex.Host.Bulk), if the port has a shared buffer.
      with {fd, size} <- bulk,
           do: Wasmex.Host.Bulk.register(self(), "/proc/#{os_pid}/fd/#{fd}", size)

      {:ok,
       %__MODULE__{
         port: port,
         os_pid: os_pid,
         owner: owner,
         owner_ref: owner_ref,
         compile_timeout: host_options.compile_timeout,
         frames: frames,
         next_id: 2
       }}
    else
      {:error, reason} -> {:stop, reason}
    end
  end

  @impl true
  def handle_call({:request, op, args}, from, state) do
    {:noreply, send_request(state, op, args, {:reply, from})}
  end

  def handle_call({:new_store, limits, wasi, holder}, from, state) do
    {:noreply, send_request(state, :store_new, {limits, wasi}, {:new_store, from, holder})}
  end

  def handle_call({:retain, store_id, pid}, _from, state) do
    if Map.has_key?(state.holders, store_id) do
      {:reply, :ok, hold(state, store_id, pid)}
    else
      {:reply, {:error, "unknown store #{store_id}"}, state}
    end
  end

  def handle_call({:release, _store_id, _pid} = release, from, state) do
    GenServer.reply(from, :ok)
    handle_cast(release, state)
  end

  def handle_call({:free_store, store_id}, _from, state) do
    case state.holders do
      %{^store_id => holders} ->
        state =
          Enum.reduce(holders, state, fn {pid, ref}, state ->
            drop_holder(state, store_id, pid, ref)
          end)

        case maybe_stop(state) do
          {:noreply, state} -> {:reply, :ok, state}
          {:stop, reason, state} -> {:stop, reason, :ok, state}
        end

      _ ->
        {:reply, {:error, "unknown store #{store_id}"}, state}
    end
  end

  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}
  def handle_call(:compile_timeout, _from, state), do: {:reply, state.compile_timeout, state}

  def handle_call({:adopt, owner}, _from, state) do
    if state.owner_ref, do: Process.demonitor(state.owner_ref, [:flush])
    {:reply, :ok, %{state | owner: owner, owner_ref: Process.monitor(owner)}}
  end

  @impl true
  def handle_cast({:request, op, args, target}, state) do
    {:noreply, send_request(state, op, args, target)}
  end

  def handle_cast({:retain, store_id, pid}, state) do
    if Map.has_key?(state.holders, store_id),
      do: {:noreply, hold(state, store_id, pid)},
      else: {:noreply, state}
  end

  def handle_cast(:disown, state) do
    if state.owner_ref, do: Process.demonitor(state.owner_ref, [:flush])
    maybe_stop(%{state | owner: nil, owner_ref: nil})
  end

  def handle_cast({:notify, op, args}, state) do
    {:noreply, notify_port(state, op, args)}
  end

  # A caller stopped waiting (see Wasmex.Host.Client): its request is cancelled.
  def handle_cast({:give_up, {_pid, tag}}, state) do
    case Pending.take_tag(state.pending, tag) do
      {nil, _} -> {:noreply, state}
      {id, pending} -> {:noreply, give_up(%{state | pending: pending}, id)}
    end
  end

  def handle_cast({:reclaim_bulk, token, holder}, state) do
    reclaim_bulk_later({:reclaim_bulk, token, holder})
    {:noreply, state}
  end

  def handle_cast({:release, store_id, pid}, state) do
    case state.holders do
      %{^store_id => %{^pid => ref}} ->
        state
        |> drop_holder(store_id, pid, ref)
        |> maybe_stop()

      _ ->
        {:noreply, state}
    end
  end

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = state) do
    Stats.add(:bytes_received, byte_size(data))

    case Frames.push(state.frames, data) do
      {:ok, payloads, frames} ->
        {:noreply, Enum.reduce(payloads, %{state | frames: frames}, &Events.handle/2)}

      # The stream can no longer be trusted: this host stops (and its port with it).
      {:error, reason} ->
        Logger.error("wasmex_port: #{reason}; stopping this host")
        fail_pending(state, "the Wasm host exited: #{reason}")
        {:stop, {:shutdown, {:port_exited, reason}}, %{state | pending: Pending.new()}}
    end
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    why = state.fatal || Startup.describe_status(status)
    Stats.add(:host_exits)
    Wasmex.Telemetry.event([:host, :exit], %{host: self(), os_pid: state.os_pid, reason: why})
    Logger.warning("wasmex_port exited: #{why}")
    fail_pending(state, "the Wasm host exited: #{why}")
    {:stop, {:shutdown, {:port_exited, why}}, %{state | port: nil, pending: Pending.new()}}
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Map.pop(state.monitors, ref) do
      {{:call, id, store_id}, monitors} ->
        {:noreply, cancel(%{state | monitors: monitors}, id, store_id)}

      {{store_id, ^pid}, monitors} ->
        # A holder that was an instance server and did not run its terminate/2.
        Wasmex.forget_server(pid)
        maybe_stop(unhold(%{state | monitors: monitors}, store_id, pid))

      {nil, _} when pid == state.owner ->
        maybe_stop(%{state | owner: nil})

      {nil, _} ->
        {:noreply, state}
    end
  end

  def handle_info({:reclaim_bulk, token, holder} = reclaim, state) do
    if Pending.sent_by?(state.pending, holder),
      do: reclaim_bulk_later(reclaim),
      else: Wasmex.Host.Bulk.reclaim(self(), token)

    {:noreply, state}
  end

  def handle_info(:write_outgoing, state), do: {:noreply, write_outgoing(state)}

  def handle_info({:EXIT, port, _reason}, %{port: port} = state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{port: port} = state) do
    Wasmex.Host.Bulk.unregister(self())
    fail_pending(state, "the Wasm host stopped")
    Wasmex.Callback.abandon_all(self())
    if port, do: safe_close(port)
    :ok
  end

  @doc false
  def executable, do: Application.app_dir(:wasmex, "priv/wasmex_port")

  defp safe_close(port) do
    Port.close(port)
  rescue
    ArgumentError -> :ok
  end

  defp send_request(state, op, args, target, strip_opts \\ []) do
    id = state.next_id
    {sent, {learn, stripped}} = KnownModules.strip(op, args, state.modules, strip_opts)
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
      {watch, state} = watch_caller(state, op, sent, target, id)
      # A request sent without a module's source may need it after all (the port drops
      # modules it has not used for long): keep what to send again.
      resend = if stripped != [], do: {op, args, stripped}
      pending = Pending.put(state.pending, id, target, learn, watch, resend)
      %{state | next_id: id + 1, pending: pending}
    end
  end

  # A call's caller is watched: if it dies before the answer, the call is cancelled and
  # the port stops running it.
  defp watch_caller(state, op, args, target, id) when op in [:call, :component_call] do
    store_id =
      case elem(args, 0) do
        {:caller, store_id, _} -> store_id
        store_id -> store_id
      end

    ref = Process.monitor(Pending.caller(target))
    {ref, %{state | monitors: Map.put(state.monitors, ref, {:call, id, store_id})}}
  end

  defp watch_caller(state, op, _args, {:reply, {pid, _}}, id)
       when op in [:module_compile, :precompile, :preinitialize, :component_compile] do
    ref = Process.monitor(pid)
    {ref, %{state | monitors: Map.put(state.monitors, ref, {:call, id, nil})}}
  end

  defp watch_caller(state, _op, _args, _target, _id), do: {nil, state}

  defp reclaim_bulk_later(message) do
    case Application.get_env(:wasmex, :bulk_reclaim_after, 100) do
      0 -> send(self(), message)
      ms -> Process.send_after(self(), message, ms)
    end
  end

  defp cancel(state, id, store_id) do
    case Pending.pop(state.pending, id) do
      {nil, _} ->
        state

      {_entry, pending} ->
        Stats.add(:cancels)
        notify_port(%{state | pending: pending}, :cancel, {store_id, id})
    end
  end

  # The caller of request `id` stopped waiting. A Wasm call or a compilation (whose caller
  # is watched) is cancelled as if its caller had died; a store being created is dropped
  # once it exists; any other request just loses its waiter.
  defp give_up(state, id) do
    case Pending.get(state.pending, id) do
      {_target, _learn, watch, _resend} when watch != nil ->
        {{:call, ^id, store_id}, monitors} = Map.pop(state.monitors, watch)
        Process.demonitor(watch, [:flush])
        cancel(%{state | monitors: monitors}, id, store_id)

      {{:new_store, _from, _holder}, _learn, nil, _resend} ->
        %{state | pending: Pending.retarget(state.pending, id, :drop_store)}

      {_target, _learn, nil, _resend} ->
        %{state | pending: elem(Pending.pop(state.pending, id), 1)}

      nil ->
        state
    end
  end

  # Counts a failed call by its kind; a failure while Wasm ran comes as `{:trap, message}`
  # and is passed on as the message.
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

  @doc false
  # Writes a notification through this host's batching (Wasmex.Host.Writer).
  def notify_port(state, op, args) do
    {frame, size} = Writer.notification_frame(op, args)
    write(state, frame, size)
  end

  defp write(state, frame, size),
    do: %{state | outgoing: Writer.write(state.port, state.outgoing, frame, size)}

  defp write_outgoing(state),
    do: %{state | outgoing: Writer.flush(state.port, state.outgoing)}

  @doc """
  Writes a notification (a request without a reply) to `port`; any process may. Nothing
  happens when the port is closed (its host is gone).
  """
  @spec send_notification(port(), atom(), tuple()) :: :ok
  def send_notification(port, op, args) do
    {frame, _size} = Writer.notification_frame(op, args)
    Writer.command(port, frame)
  end

  defp unwatch(state, nil), do: state

  defp unwatch(state, ref) do
    Process.demonitor(ref, [:flush])
    %{state | monitors: Map.delete(state.monitors, ref)}
  end

  @doc false
  # The answer to request `id` reaches its target.
  def deliver(state, id, result) do
    case Pending.pop(state.pending, id) do
      # Id 0 answers a frame the port could not read; other unknown ids are answers to
      # cancelled calls.
      {nil, _} ->
        if id == 0, do: Logger.warning("wasmex_port: #{inspect(result)}")
        state

      {{target, _learn, watch, {op, args, stripped}}, pending}
      when elem(result, 1) == @not_loaded ->
        # The port dropped a module this server thought it had, or has no artifact of a
        # module whose key went alone: forget it, send it again with its source.
        state = unwatch(%{state | pending: pending}, watch)

        state = %{
          state
          | modules: MapSet.difference(state.modules, MapSet.new(stripped))
        }

        send_request(state, op, args, target, probe: false)

      {{target, learn, watch, _resend}, pending} ->
        result = count_failure(result)
        state = unwatch(%{state | pending: pending}, watch)

        state =
          if learn != [] and match?({:ok, _}, result),
            do: %{state | modules: Enum.into(learn, state.modules)},
            else: state

        reply(target, result, state)
    end
  end

  defp reply({:reply, from}, result, state),
    do: tap(state, fn _ -> GenServer.reply(from, result) end)

  defp reply({:send, pid, tag}, result, state),
    do: tap(state, fn _ -> send(pid, {:returned_function_call, result, tag}) end)

  # A store whose creator stopped waiting: nobody holds it.
  defp reply(:drop_store, {:ok, store_id}, state),
    do: notify_port(state, :store_drop, {store_id})

  defp reply(:drop_store, _result, state), do: state

  defp reply({:new_store, from, holder}, result, state) do
    GenServer.reply(from, result)

    case result do
      {:ok, store_id} -> hold(state, store_id, holder)
      _ -> state
    end
  end

  defp hold(state, store_id, pid) do
    holders = Map.get(state.holders, store_id, %{})

    if Map.has_key?(holders, pid) do
      state
    else
      ref = Process.monitor(pid)

      %{
        state
        | holders: Map.put(state.holders, store_id, Map.put(holders, pid, ref)),
          monitors: Map.put(state.monitors, ref, {store_id, pid})
      }
    end
  end

  # `pid` lets go of the store: its monitor goes, and the store with its last holder.
  defp drop_holder(state, store_id, pid, ref) do
    Process.demonitor(ref, [:flush])
    unhold(%{state | monitors: Map.delete(state.monitors, ref)}, store_id, pid)
  end

  defp unhold(state, store_id, pid) do
    holders = state.holders |> Map.get(store_id, %{}) |> Map.delete(pid)

    if map_size(holders) == 0 do
      %{
        notify_port(state, :store_drop, {store_id})
        | holders: Map.delete(state.holders, store_id)
      }
    else
      %{state | holders: Map.put(state.holders, store_id, holders)}
    end
  end

  # A host with no owner left and no store stops; the default engine's host (owner
  # `:forever`) never does.
  defp maybe_stop(%{owner: nil, holders: holders} = state) when map_size(holders) == 0,
    do: {:stop, :normal, state}

  defp maybe_stop(state), do: {:noreply, state}

  defp fail_pending(state, message) do
    Enum.each(Pending.targets(state.pending), &reply(&1, {:error, message}, state))
  end
end
