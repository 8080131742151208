defmodule Wasmex.Server.Start do
  @moduledoc false
  # How `Wasmex.start_link/1` starts an instance server (`Wasmex.Server`).
  #
  # The server process is spawned first and waits. The calling process then makes what
  # the server is to serve, on the server's behalf: the instance (the server is its
  # store's holder and its callbacks' handler), the registration of its imports, its call
  # route and the stop it leaves for when it ends. It hands that state over, and the
  # server enters its `GenServer` loop with it; should anything fail, the server is
  # abandoned, and `start_link/2` returns the error once it has ended (normally).
  #
  # A start thus costs the caller what `Wasmex.Instance.new/4` costs it (one round trip to
  # the port) and a spawn: a new process making the round trip itself and then reporting
  # back, as a `GenServer` `init/1` would, costs a third more on a 2-vCPU VM.
  #
  # A name is registered before anything else, by the server itself (as
  # `GenServer.start_link/3` does, and as `Registry` requires): a name already taken gives
  # `{:error, {:already_started, pid}}`.

  alias Wasmex.{Callback, Host, Instance, Store, StoreOrCaller, Wire}
  alias Wasmex.Server.Stops

  @doc """
  Starts a server linked to the caller for `args` (`:store`, `:module`, `:imports`,
  `:links`, and `:instance` for an instance the caller made already), registered under
  `name` unless it is nil.
  """
  @spec start_link(map(), GenServer.name() | nil) :: {:ok, pid()} | {:error, term()}
  def start_link(args, name) do
    check_name(name)
    caller = self()
    server = :proc_lib.spawn_link(__MODULE__, :await, [caller])

    try do
      with :ok <- register(server, name),
           {:ok, state} <- prepare(server, args),
           :ok <- alive(server, args.store) do
        send(server, {:wasmex_serve, caller, state, name})
        {:ok, server}
      else
        {:error, _} = error ->
          abandon(server)
          error
      end
    catch
      kind, reason ->
        abandon(server)
        :erlang.raise(kind, reason, __STACKTRACE__)
    end
  end

  # A server killed while its state was made (it is not returned yet, so only through a
  # link) may have been forgotten by its host already (Wasmex.Host forgets a holder that
  # ends): what was registered for it since goes here. Past this check, its host forgets
  # it when it ends.
  defp alive(server, store) do
    if Process.alive?(server) do
      :ok
    else
      Enum.each(Wasmex.Server.forget(server), &Host.notify(store.host, &1))
      {:error, "the instance server exited before it started"}
    end
  end

  # The server ends before this returns: a name it took is free again, and a caller that
  # traps exits finds no exit signal of it left in its mailbox.
  defp abandon(server) do
    ref = Process.monitor(server)
    Process.unlink(server)
    send(server, {:wasmex_abandon, self()})

    receive do
      {:DOWN, ^ref, :process, ^server, _reason} -> :ok
    end

    receive do
      {:EXIT, ^server, _reason} -> :ok
    after
      0 -> :ok
    end
  end

  @doc false
  # The server's first function (its initial call): waits for its state, then serves it.
  # A caller that dies before handing it over takes the server with it (they are linked).
  @spec await(pid()) :: :ok | no_return()
  def await(caller) do
    receive do
      {:wasmex_register, ^caller, name} ->
        send(caller, {:wasmex_registered, self(), register_self(name)})
        await(caller)

      {:wasmex_serve, ^caller, state, name} ->
        Process.monitor(state.store.host)
        # What tools and crash reports name the process by, as for any GenServer.
        Process.put(:"$initial_call", {Wasmex.Server, :init, 1})

        if name,
          do: :gen_server.enter_loop(Wasmex.Server, [], state, gen_name(name)),
          else: :gen_server.enter_loop(Wasmex.Server, [], state)

      {:wasmex_abandon, ^caller} ->
        :ok
    end
  end

  defp check_name(name)
       when is_atom(name) or
              (is_tuple(name) and tuple_size(name) == 2 and elem(name, 0) == :global) or
              (is_tuple(name) and tuple_size(name) == 3 and elem(name, 0) == :via and
                 is_atom(elem(name, 1))),
       do: :ok

  defp check_name(name) do
    raise ArgumentError,
          "expected :name to be an atom, {:global, term} or {:via, module, term}, got: " <>
            inspect(name)
  end

  # Asks the server to register itself under `name`.
  defp register(_server, nil), do: :ok

  defp register(server, name) do
    ref = Process.monitor(server)
    send(server, {:wasmex_register, self(), name})

    receive do
      {:wasmex_registered, ^server, result} ->
        Process.demonitor(ref, [:flush])
        result

      {:DOWN, ^ref, :process, ^server, reason} ->
        {:error, reason}
    end
  end

  defp register_self(name) when is_atom(name) do
    Process.register(self(), name)
    :ok
  rescue
    ArgumentError -> {:error, {:already_started, Process.whereis(name)}}
  end

  defp register_self({:global, key}), do: registered(:global, key)
  defp register_self({:via, module, key}), do: registered(module, key)

  defp registered(module, key) do
    case module.register_name(key, self()) do
      :yes -> :ok
      :no -> {:error, {:already_started, module.whereis_name(key)}}
    end
  end

  defp gen_name(name) when is_atom(name), do: {:local, name}
  defp gen_name(name), do: name

  # The state `server` serves: its instance, with everything registered that routes calls
  # and callbacks to it. Imports are registered first: a start function may call them
  # while instantiating. Without imports no callback can come: nothing to register.
  defp prepare(server, %{store: store, module: module, imports: imports} = args) do
    callbacks? = Callback.any?(imports)
    given? = Map.has_key?(args, :instance)
    if callbacks? and not given?, do: Callback.register(server, imports, nil)

    case instance_of(server, args) do
      {:ok, instance} ->
        register_callbacks(server, args, callbacks?, given?, instance)
        route = {server, store.host, StoreOrCaller.context(store), instance.id}
        :ets.insert(Wasmex.Routes, route)

        # What stops a call still running on the instance when the server ends (see
        # Wasmex.Server.terminate/2). A caller context's store is its own caller's.
        if not given? and is_nil(store.caller_id),
          do: Stops.put(server, Wire.instance_stop(store.store_id, instance.id))

        {:ok,
         %{
           store: store,
           module: module,
           instance: instance,
           # What terminate/2 unregisters: nothing without import callbacks.
           callbacks: if(callbacks?, do: if(given?, do: :for, else: :own), else: :none)
         }}

      {:error, _} = error ->
        Callback.unregister(server)
        error
    end
  end

  # The port sends the callbacks of an instance given to start_link/1 to the process that
  # made it, usually the one starting this server (this one): they run with these imports.
  defp register_callbacks(_server, _args, false = _callbacks?, _given?, _instance), do: :ok

  defp register_callbacks(server, args, true, true = _given?, instance),
    do: Callback.register_for(self(), server, args.imports, instance)

  defp register_callbacks(server, args, true, false, instance),
    do: Callback.register(server, args.imports, instance)

  # An instance given to start_link/1 is served as it is (the server holds its store from
  # now on); otherwise the module is instantiated in the store by a request that makes the
  # server a holder of the store and the handler of the instance's callbacks.
  defp instance_of(server, %{instance: %Instance{} = instance, store: store}) do
    with :ok <- Instance.of_store(store, instance),
         :ok <- Store.retain(store, server),
         do: {:ok, instance}
  end

  defp instance_of(server, %{store: store, module: module, imports: imports, links: links}),
    do: Instance.new(store, module, imports, links, holder: server, handler: server)
end
