defmodule Wasmex.Pool do
  @moduledoc """
  N instances of one module, supervised, with calls spread over them.

  The module is compiled once, in one engine (one OS process) that every instance of the
  pool shares; each instance has a store of its own. Calls need no checkout: a call picks
  an instance (round-robin) and goes straight to it. At most `max_queue` calls per pool and
  node are in flight; beyond that a call returns `{:error, :queue_full}` at once. A slot is
  freed when its call returns, gives up, or its caller dies, even killed
  (`Wasmex.Pool.Slots`). Instances
  that exit are restarted; if the engine's process dies, the pool restarts it and all its
  instances, so the pool keeps its size. An engine that dies again and again (a guest over
  its caps) is restarted after a growing wait, from 100 ms up to 5 s, so the pool runs on.

  Pools started under the same name on several nodes form one `:pg` group: with
  `scope: :global` a call may go to any node's instances, and when a node goes away its
  instances leave the group.

      iex> {:ok, _} = Wasmex.Pool.start_link(name: :doc_pool, size: 2, bytes: File.read!(TestHelper.wasm_test_file_path()))
      iex> Wasmex.Pool.call_function(:doc_pool, "sum", [40, 2])
      {:ok, [42]}
      iex> length(Wasmex.Pool.members(:doc_pool))
      2
  """
  use Supervisor

  alias Wasmex.Pool.{Engine, Slots, Worker}

  @pg_scope Wasmex.Pool

  @typedoc "A pool's name (an atom, registered locally on each node)."
  @type name :: atom()

  @doc false
  def pg_scope, do: @pg_scope

  @doc """
  Starts a pool. Options:

    * `:name` (required) - the pool's name;
    * `:bytes` - `.wasm`/`.wat` bytes, or `:module` - a `Wasmex.Module` (from any host);
    * `:size` - number of instances, at least 1 (default: the number of schedulers);
    * `:imports`, `:links`, `:wasi` - as for `Wasmex.start_link/1` (each instance gets a
      WASI store of its own);
    * `:engine_config` - a `Wasmex.EngineConfig`; `:os_limits` - caps of the pool's OS
      process, `:compile_timeout` and `:instance_slots` (see `Wasmex.Engine.new/2`;
      default slots: twice the instances the pool runs, links included, at least the
      engine's default and at most 20,000, the most an engine can reserve);
    * `:max_queue` - calls in flight per node before `{:error, :queue_full}` (default 10,000).
  """
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts) do
    name = Keyword.fetch!(opts, :name)

    with :ok <- check_keys(opts),
         :ok <- check(opts, :size, &(is_integer(&1) and &1 >= 1), "a positive integer"),
         :ok <- check(opts, :max_queue, &(is_integer(&1) and &1 >= 0), "a non-negative integer"),
         do: Supervisor.start_link(__MODULE__, opts, name: name)
  end

  @options [:name, :bytes, :module, :size, :imports, :links, :wasi, :engine_config] ++
             [:os_limits, :compile_timeout, :instance_slots, :max_queue]

  # A mistyped option (`os_limit:`) must not start a pool without what it asked for.
  defp check_keys(opts) do
    case Enum.find(Keyword.keys(opts), &(&1 not in @options)) do
      nil -> :ok
      key -> {:error, "unknown option #{inspect(key)} for Wasmex.Pool.start_link/1"}
    end
  end

  defp check(opts, key, valid?, what) do
    case Keyword.fetch(opts, key) do
      :error ->
        :ok

      {:ok, value} ->
        if valid?.(value),
          do: :ok,
          else: {:error, "#{inspect(key)} must be #{what}, got: #{inspect(value)}"}
    end
  end

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    size = Keyword.get(opts, :size, System.schedulers_online())
    max_queue = Keyword.get(opts, :max_queue, 10_000)
    :persistent_term.put({__MODULE__, name}, {:atomics.new(1, []), slots_name(name)})

    workers =
      for index <- 1..size,
          do: Supervisor.child_spec({Worker, {name, index}}, id: {Worker, index})

    children = [
      {Slots, name: slots_name(name), max_queue: max_queue},
      {Engine, {name, opts}},
      %{
        id: :workers,
        type: :supervisor,
        start:
          {Supervisor, :start_link,
           [workers, [strategy: :one_for_one, max_restarts: size * 10, max_seconds: 5]]}
      }
    ]

    Supervisor.init(children, strategy: :rest_for_one)
  end

  @doc """
  Calls `name` on one of the pool's instances. `opts`: `scope: :local` (default, this
  node's instances) or `:global` (any node's).
  """
  @spec call_function(name(), String.t() | atom(), [number()], timeout(), keyword()) ::
          {:ok, [number()]} | {:error, term()}
  def call_function(pool, name, params, timeout \\ 5_000, opts \\ []) do
    case :persistent_term.get({__MODULE__, pool}, nil) do
      nil ->
        call_any(pool, name, params, timeout, opts, nil)

      {counters, slots} ->
        case Slots.take(slots) do
          {:ok, slot} ->
            try do
              call_any(pool, name, params, timeout, opts, counters)
            after
              Slots.give_back(slots, slot)
            end

          # This node's pool stopped: no local instance answers (its members may still be
          # listed in :pg for a moment, which drops them on their exit asynchronously).
          {:error, :not_running} ->
            if Keyword.get(opts, :scope, :local) == :local,
              do: no_instance(pool),
              else: call_any(pool, name, params, timeout, opts, nil)

          {:error, :queue_full} = error ->
            error
        end
    end
  end

  @doc "How many calls of the pool are in flight on this node."
  @spec in_flight(name()) :: non_neg_integer()
  def in_flight(pool), do: Slots.in_flight(slots_name(pool))

  defp slots_name(pool), do: :"#{pool}.Slots"

  defp call_any(pool, name, params, timeout, opts, counters) do
    case members(pool, Keyword.get(opts, :scope, :local)) do
      [] -> no_instance(pool)
      members -> Wasmex.call_function(pick(members, counters), name, params, timeout)
    end
  end

  defp no_instance(pool), do: {:error, "the pool #{inspect(pool)} has no running instance"}

  defp pick(members, nil), do: Enum.random(members)

  defp pick(members, counters),
    do: Enum.at(members, rem(:atomics.add_get(counters, 1, 1), length(members)))

  @doc "The instance servers of the pool: this node's (`:local`) or every node's (`:global`)."
  @spec members(name(), :local | :global) :: [pid()]
  def members(pool, scope \\ :local)
  def members(pool, :local), do: :pg.get_local_members(@pg_scope, pool)
  def members(pool, :global), do: :pg.get_members(@pg_scope, pool)
end

defmodule Wasmex.Pool.Engine do
  @moduledoc false
  # Owns the pool's engine (its OS process) and the module compiled in it. If the engine's
  # process dies (a guest over its caps, a crash) this server starts a new one, and the
  # pool's instances, which end with it, are restarted into it by their supervisor. A
  # guest that brings the engine down again and again makes it wait longer each time
  # (doubling from 100 ms to 5 s; the first restart, and one after 30 s without any, is
  # at once), so the restarts stay within the supervisors' limits and the pool keeps
  # running; until the new engine is up, instances starting wait for it.
  use GenServer

  alias Wasmex.{EngineConfig, Module, Store}

  def start_link({name, opts}),
    do: GenServer.start_link(__MODULE__, opts, name: engine_name(name))

  def engine_name(pool), do: :"#{pool}.Engine"

  @doc """
  What a worker needs: the engine, the module and the instance options; `{:error, reason}`
  when the engine's owner is gone or does not answer within `request_timeout`.
  """
  def get(pool), do: Wasmex.Bounded.call(engine_name(pool), :get)

  # Restarts of the engine within this window count towards the wait before the next.
  @restart_window 30_000
  @max_wait 5_000

  @impl true
  def init(opts) do
    case start_engine(opts) do
      {:ok, started} -> {:ok, Map.merge(started, %{opts: opts, waiting: [], restarts: []})}
      {:error, reason} -> {:stop, reason}
    end
  end

  defp start_engine(opts) do
    config = Keyword.get(opts, :engine_config, %EngineConfig{})

    engine_opts =
      opts
      |> Keyword.take([:os_limits, :compile_timeout, :instance_slots])
      |> Keyword.put_new_lazy(:instance_slots, fn -> instance_slots(opts) end)

    with {:ok, engine} <- Wasmex.Engine.new(config, engine_opts),
         {:ok, store} <- Store.new(nil, engine),
         {:ok, module} <- compile(store, opts) do
      Process.monitor(engine.host)
      Store.release(store, self())
      instance_opts = Map.new(Keyword.take(opts, [:imports, :links, :wasi]))
      {:ok, %{engine: engine, module: module, instance_opts: instance_opts}}
    end
  end

  @doc false
  # How long to wait before restarting an engine that went down `n` times within the
  # window (this one included).
  @spec restart_wait(pos_integer()) :: non_neg_integer()
  def restart_wait(1), do: 0
  def restart_wait(n), do: min(100 * Integer.pow(2, n - 2), @max_wait)

  # Slots for every instance and its links twice over (a restarted instance may start
  # before its old store is gone), at least an engine's default.
  defp instance_slots(opts) do
    case Application.get_env(:wasmex, :instance_slots, 1000) do
      false ->
        false

      slots ->
        size = Keyword.get(opts, :size, System.schedulers_online())
        links = count_links(Keyword.get(opts, :links, %{}))
        min(max(slots, 2 * size * (1 + links)), 20_000)
    end
  end

  # Linked modules are instances too, nested ones included.
  defp count_links(links) when is_map(links),
    do: Enum.reduce(links, 0, fn {_, spec}, n -> n + 1 + count_links(spec[:links] || %{}) end)

  defp compile(store, opts) do
    case {opts[:module], opts[:bytes]} do
      {%Module{} = module, _} -> {:ok, module}
      {nil, bytes} when is_binary(bytes) -> Module.compile(store, bytes)
      _ -> {:error, "a pool needs :bytes or :module"}
    end
  end

  @impl true
  def handle_call(:get, from, %{engine: nil} = state),
    do: {:noreply, %{state | waiting: [from | state.waiting]}}

  def handle_call(:get, _from, state), do: {:reply, served(state), state}

  @impl true
  def handle_info({:DOWN, _ref, :process, host, _reason}, %{engine: %{host: host}} = state) do
    now = System.monotonic_time(:millisecond)
    restarts = [now | Enum.filter(state.restarts, &(&1 > now - @restart_window))]
    Process.send_after(self(), :restart, restart_wait(length(restarts)))
    {:noreply, %{state | engine: nil, restarts: restarts}}
  end

  def handle_info(:restart, state) do
    case start_engine(state.opts) do
      {:ok, started} ->
        state = Map.merge(state, started)
        Enum.each(state.waiting, &GenServer.reply(&1, served(state)))
        {:noreply, %{state | waiting: []}}

      {:error, reason} ->
        {:stop, {:shutdown, {:engine_down, reason}}, state}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp served(state), do: Map.take(state, [:engine, :module, :instance_opts])
end

defmodule Wasmex.Pool.Worker do
  @moduledoc false
  # Starts one instance server of a pool (in a store of its own on the pool's engine)
  # and adds it to the pool's :pg group.
  alias Wasmex.{Pool, Store}

  def child_spec({pool, index}) do
    %{id: {__MODULE__, index}, start: {__MODULE__, :start_link, [pool]}}
  end

  def start_link(pool) do
    with {:ok, %{engine: engine, module: module, instance_opts: opts}} <- Pool.Engine.get(pool),
         {:ok, store} <- new_store(engine, opts) do
      result = Wasmex.start_link(Map.merge(opts, %{store: store, module: module}))
      # The instance server holds the store now.
      Store.release(store, self())

      with {:ok, pid} <- result do
        :ok = :pg.join(Pool.pg_scope(), pool, pid)
        {:ok, pid}
      end
    end
  end

  defp new_store(engine, %{wasi: wasi}) when wasi not in [nil, false],
    do:
      with(
        {:ok, options} <- Wasmex.Wasi.WasiOptions.cast(wasi),
        do: Store.new_wasi(options, nil, engine)
      )

  defp new_store(engine, _opts), do: Store.new(nil, engine)
end
