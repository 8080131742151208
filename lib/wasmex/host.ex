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
  servers monitoring it exit with `{:shutdown, {:wasmex_host_down, reason}}`.
  """
  use GenServer, restart: :temporary
  require Logger

  alias Wasmex.{Stats, Wire}
  alias Wasmex.Host.{Bulk, Client, Events, Holders, KnownModules, Outgoing, Parts, Pending}
  alias Wasmex.Host.{Requests, Startup, Stores, Writer}

  defstruct [
    :port,
    :os_pid,
    :owner,
    :owner_ref,
    :frames,
    compile_timeout: 60_000,
    fatal: nil,
    next_id: 1,
    next_store_id: 1,
    pending: Pending.new(),
    # The parts of answers that come in pieces (large memory reads), until their reply.
    parts: Parts.new(),
    holders: Holders.new(),
    modules: KnownModules.new(),
    outgoing: Outgoing.new(),
    # Stores opened without waiting whose `store_open` is not written yet: id => {frame,
    # size}, written ahead of the next write (Wasmex.Host.Requests.open_store/6).
    opening: %{},
    # Notifications not written yet ({frame, size}, newest first): drops of stores and
    # stops of idle instances, written ahead of the next write or by :write_deferred
    # (Wasmex.Host.Requests.notify/2, drop_store/3).
    deferred: [],
    defer_timer: false,
    # Cancels of callers that died (Wasmex.Host.Requests.cancel_all/2): those not yet
    # written, in order; each one's state (:queued or :sent); how many sent are unanswered.
    cancel_queue: [],
    cancel_ids: %{},
    cancels_out: 0
  ]

  @typedoc "A reply target: where the result of a request goes."
  @type target ::
          {:reply, GenServer.from()}
          | {:send, pid(), term()}
          | {:new_store, GenServer.from(), pid(), pos_integer()}
          | {:bulk, GenServer.from(), pos_integer()}

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
    init_args = {config, owner, executable, Startup.host_options(opts)}
    GenServer.start_link(__MODULE__, init_args, Keyword.take(opts, [:name]))
  end

  @doc """
  Sends a request (built by `Wasmex.Wire`) and waits for its result, a bounded time (see
  `Wasmex.Host.Client`): a caller that stops waiting gets `{:error, reason}` and its
  request is cancelled. Exits of the host become `{:error, reason}`.
  """
  @spec request(pid(), Wire.request()) :: {:ok, term()} | {:error, term()}
  def request(host, {op, _args} = request)
      when op in [
             :module_compile,
             :precompile,
             :preinitialize,
             :module_serialize,
             :component_compile
           ] do
    case call(host, :compile_timeout) do
      {:error, _} = error -> error
      :infinity -> call(host, {:request, request}, :infinity)
      ms -> call(host, {:request, request}, ms + Client.request_timeout())
    end
  end

  def request(host, request), do: call(host, {:request, request}, Client.wait_for(request))

  @doc """
  Sends a request as `request/2` does, for a transfer through the host's shared buffer
  held under `token` (`Wasmex.Host.Bulk`). A caller that stops waiting leaves the buffer
  to the host, which frees it once the port has answered: the port may still be about to
  use it. Returns the answer, or `{:no_answer, {:error, message}}` for a caller that
  stopped waiting.
  """
  @spec bulk_request(pid(), Wire.request(), pos_integer()) ::
          term() | {:no_answer, {:error, String.t()}}
  def bulk_request(host, request, token) do
    wait = Client.wait_for(request)

    case Client.call(host, {:request, request, {:bulk, token}}, wait) do
      {:error, :timeout} ->
        GenServer.cast(host, {:free_bulk, token})
        {:no_answer, no_answer(wait)}

      {:error, {:down, reason}} ->
        {:error, down_message(reason)}

      answer ->
        answer
    end
  end

  @doc """
  Sends a request as `request/2` does, making `holder` a holder of store `store_id` first
  (as `retain/3` does) with the same message: an instance server's instantiation.
  """
  @spec request_holding(pid(), Wire.request(), non_neg_integer(), pid()) ::
          {:ok, term()} | {:error, term()}
  def request_holding(host, request, store_id, holder),
    do: call(host, {:request, request, {:hold, store_id, holder}}, Client.wait_for(request))

  @doc "Sends a request (built by `Wasmex.Wire`) whose result goes to `target` (see `t:target/0`)."
  @spec cast_request(pid(), Wire.request(), target()) :: :ok
  def cast_request(host, request, target), do: GenServer.cast(host, {:request, request, target})

  @doc "Sends a notification (built by `Wasmex.Wire`): a request that gets no reply."
  @spec notify(pid(), Wire.request()) :: :ok
  def notify(host, request), do: GenServer.cast(host, {:notify, request})

  # The same with op and args apart, for requests without a constructor in `Wasmex.Wire`
  # (ops of test programs standing in for the port).
  @doc false
  def request(host, op, args), do: request(host, {op, args})
  @doc false
  def cast_request(host, op, args, target), do: cast_request(host, {op, args}, target)
  @doc false
  def notify(host, op, args), do: notify(host, {op, args})

  @doc """
  Creates a store in the host, held by `holder`. A store without WASI whose limits are
  plain counts is answered at once, without waiting for the port (its id is the host
  server's to choose): should the port fail to make it, every request on it gets
  `{:error, "the store could not be created: " <> reason}`. A store with WASI, whose
  options can fail in many ways (a missing directory), is answered once it is made.
  """
  @spec new_store(pid(), term(), term(), pid()) :: {:ok, non_neg_integer()} | {:error, term()}
  def new_store(host, limits, wasi, holder),
    do: call(host, {:new_store, limits, wasi, holder})

  @doc "Adds `pid` to the holders of a store: the store lives while any holder does."
  @spec retain(pid(), non_neg_integer(), pid()) :: :ok | {:error, term()}
  def retain(host, store_id, pid) when node(host) == node() do
    # A cast is enough locally: requests this process sends next reach the host after it,
    # and fail by themselves if the store is unknown. A host that is gone already says so
    # here, rather than by the exit of what was to hold the store.
    if Process.alive?(host),
      do: GenServer.cast(host, {:retain, store_id, pid}),
      else: {:error, down_message(:noproc)}
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

  defp no_answer(wait), do: {:error, "the Wasm host did not answer within #{wait} ms"}

  # A call to the host server that waits a bounded time; the host's exit becomes an error.
  defp call(host, message, wait \\ Client.request_timeout()) do
    case Client.call(host, message, wait) do
      {:error, :timeout} -> no_answer(wait)
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
           do: Bulk.register(self(), "/proc/#{os_pid}/fd/#{fd}", size)

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
  def handle_call({:request, request}, from, state) do
    {:noreply, Requests.send_request(state, request, {:reply, from})}
  end

  def handle_call({:request, request, {:bulk, token}}, from, state),
    do: {:noreply, Requests.send_request(state, request, {:bulk, from, token})}

  def handle_call({:request, request, {:hold, store_id, holder}}, from, state) do
    {_, state} = Stores.retain(state, store_id, holder)
    {:noreply, Requests.send_request(state, request, {:reply, from})}
  end

  def handle_call({:new_store, limits, wasi, holder}, from, state),
    do: Stores.new(state, limits, wasi, holder, from)

  def handle_call({:retain, store_id, pid}, _from, state) do
    {reply, state} = Stores.retain(state, store_id, pid)
    {:reply, reply, state}
  end

  def handle_call({:release, _store_id, _pid} = release, from, state) do
    GenServer.reply(from, :ok)
    handle_cast(release, state)
  end

  def handle_call({:free_store, store_id}, _from, state) do
    with {:ok, state} <- Stores.free(state, store_id) do
      case maybe_stop(state) do
        {:noreply, state} -> {:reply, :ok, state}
        {:stop, reason, state} -> {:stop, reason, :ok, state}
      end
    else
      error -> {:reply, error, state}
    end
  end

  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}
  def handle_call(:compile_timeout, _from, state), do: {:reply, state.compile_timeout, state}

  def handle_call({:adopt, owner}, _from, state) do
    if state.owner_ref, do: Process.demonitor(state.owner_ref, [:flush])
    {:reply, :ok, %{state | owner: owner, owner_ref: Process.monitor(owner)}}
  end

  @impl true
  def handle_cast({:request, request, target}, state) do
    {:noreply, Requests.send_request(state, request, target)}
  end

  def handle_cast({:retain, store_id, pid}, state),
    do: {:noreply, elem(Stores.retain(state, store_id, pid), 1)}

  def handle_cast(:disown, state) do
    if state.owner_ref, do: Process.demonitor(state.owner_ref, [:flush])
    maybe_stop(%{state | owner: nil, owner_ref: nil})
  end

  def handle_cast({:notify, request}, state), do: {:noreply, Requests.notify(state, request)}

  # A caller stopped waiting (see Wasmex.Host.Client): its request is cancelled.
  def handle_cast({:give_up, from}, state), do: {:noreply, Requests.give_up(state, from)}

  # A caller that stopped waiting for its transfer through the shared buffer: the buffer
  # is freed when the port answers the transfer (see Wasmex.Host.Pending.give_up/2, which
  # came just before), or now if it did already.
  def handle_cast({:free_bulk, token}, state) do
    unless Pending.frees_bulk?(state.pending, token), do: Bulk.reclaim(self(), token)
    {:noreply, state}
  end

  def handle_cast({:reclaim_bulk, _token, _holder} = reclaim, state) do
    Bulk.reclaim_later(reclaim)
    {:noreply, state}
  end

  def handle_cast({:release, store_id, pid}, state) do
    case Stores.release(state, store_id, pid) do
      {:dropped, state} -> maybe_stop(state)
      {:kept, state} -> {:noreply, state}
    end
  end

  @impl true
  def handle_info({port, {:data, data}}, %{port: port} = state), do: Events.data(data, state)

  def handle_info({port, {:exit_status, status}}, %{port: port} = state) do
    why = state.fatal || Startup.describe_status(status)
    Stats.add(:host_exits)
    Wasmex.Telemetry.event([:host, :exit], %{host: self(), os_pid: state.os_pid, reason: why})
    Logger.warning("wasmex_port exited: #{why}")
    state = Requests.fail_all(state, "the Wasm host exited: #{why}")
    {:stop, {:shutdown, {:port_exited, why}}, %{state | port: nil}}
  end

  def handle_info({:DOWN, ref, :process, pid, _reason}, state) do
    case Requests.down(state, ref, pid) do
      {:caller, state} ->
        {:noreply, state}

      {:holder, _store_id, state} ->
        # A holder that was an instance server and did not run its terminate/2: what it
        # registered goes, and a call still running on its instance stops.
        stops = Wasmex.forget_server(pid)
        maybe_stop(Enum.reduce(stops, state, &Requests.notify(&2, &1)))

      :unknown when pid == state.owner ->
        maybe_stop(%{state | owner: nil})

      :unknown ->
        {:noreply, state}
    end
  end

  def handle_info({:reclaim_bulk, token, holder} = reclaim, state) do
    if Pending.sent_by?(state.pending, holder),
      do: Bulk.reclaim_later(reclaim),
      else: Bulk.reclaim(self(), token)

    {:noreply, state}
  end

  def handle_info(:write_deferred, state), do: {:noreply, Requests.write_deferred(state)}

  def handle_info(:write_outgoing, state),
    do: {:noreply, %{state | outgoing: Writer.flush(state.port, state.outgoing)}}

  def handle_info({:EXIT, port, _reason}, %{port: port} = state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, reason}, state), do: {:stop, reason, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{port: port} = state) do
    Bulk.unregister(self())
    Requests.fail_all(state, "the Wasm host stopped")
    Wasmex.Callback.abandon_all(self())
    if port, do: Startup.close(port)
    :ok
  end

  @doc false
  def executable, do: Application.app_dir(:wasmex, "priv/wasmex_port")

  @doc """
  Writes a notification (a request without a reply) to `port`; any process may. Nothing
  happens when the port is closed (its host is gone).
  """
  @spec send_notification(port(), Wire.request()) :: :ok
  def send_notification(port, request) do
    {frame, size} = Writer.notification_frame(request)
    Writer.command(port, frame, size)
  end

  # A host with no owner left and no store stops; the default engine's host (owner
  # `:forever`) never does.
  defp maybe_stop(%{owner: nil} = state) do
    if Holders.empty?(state.holders), do: {:stop, :normal, state}, else: {:noreply, state}
  end

  defp maybe_stop(state), do: {:noreply, state}
end
