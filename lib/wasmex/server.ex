defmodule Wasmex.Server do
  @moduledoc false
  # The process `Wasmex.start_link/1` starts: it holds one instance (and its store) and
  # serves the `Wasmex` functions on it.
  use GenServer

  alias Wasmex.{Callback, Host, Instance, Memory, StoreOrCaller, Wire}
  alias Wasmex.Host.Client
  alias Wasmex.Server.Stops

  @waiting_for_callback "the instance's store is waiting for this callback to return: " <>
                          "call into it through the callback's caller instead " <>
                          "(Wasmex.Instance.call_exported_function/6 with context.caller)"

  @doc false
  # Wasmex.call_function/4 without its telemetry span. A call goes from its caller straight
  # to the instance's host, whatever the instance: the instance server publishes where its
  # calls go (its route) in an ETS table, and a caller that cannot read it there (another
  # node's instance) asks the server for it. The server is never on a call's path.
  # A caller that stops waiting has its call cancelled (see Wasmex.Host.Client).
  @spec call_function(GenServer.server(), String.t(), [number()], timeout()) ::
          {:ok, [number()]} | {:error, any()}
  def call_function(server, name, params, timeout) do
    case route(server) do
      {:ok, {host, context, id}} ->
        # A callback calling an instance of the store whose call waits for it: the store
        # serves nothing else until that call ends.
        if match?({^host, ^context, _}, Process.get(:wasmex_waiting_store)),
          do: {:error, @waiting_for_callback},
          else: call(host, context, id, name, params, timeout)

      {:error, reason} ->
        {:error, "the instance is not running: #{inspect(reason)}"}
    end
  end

  defp call(host, context, id, name, params, timeout) do
    request = Wire.call(context, id, name, params, timeout)

    case Client.call(host, {:request, request}, Client.wait_for(request)) do
      {:error, :timeout} -> {:error, "timed out: no answer within #{timeout} ms"}
      {:error, {:down, reason}} -> {:error, "the instance is not running: #{inspect(reason)}"}
      answer -> answer
    end
  end

  # Where an instance server's calls go: `{host, context, instance id}`.
  defp route(pid) when is_pid(pid) and node(pid) == node() do
    case :ets.lookup(Wasmex.Routes, pid) do
      [{^pid, host, context, id}] ->
        if Process.alive?(pid), do: {:ok, {host, context, id}}, else: {:error, :noproc}

      [] ->
        ask_route(pid)
    end
  end

  defp route(pid) when is_pid(pid), do: ask_route(pid)

  defp route(name) do
    case GenServer.whereis(name) do
      pid when is_pid(pid) -> route(pid)
      _ -> {:error, :noproc}
    end
  end

  # A server whose route is not in this node's table (another node's, or one still
  # starting) says it itself.
  defp ask_route(pid) do
    GenServer.call(pid, :route, Client.request_timeout())
  catch
    :exit, {reason, {GenServer, :call, _}} -> {:error, reason}
  end

  @impl true
  # A server starts through Wasmex.Server.Start, which hands it a state made for it and
  # enters the GenServer loop; GenServer.start_link/3 has nothing to start it from.
  def init(_args), do: {:stop, "a Wasmex.Server starts through Wasmex.start_link/1"}

  @impl true
  def handle_call(:route, _from, %{store: store, instance: instance} = state),
    do: {:reply, {:ok, {store.host, StoreOrCaller.context(store), instance.id}}, state}

  def handle_call({:exported_function_exists, name}, _from, state) do
    {:reply, Instance.function_export_exists(state.store, state.instance, name), state}
  end

  def handle_call(:memory, _from, state),
    do: {:reply, Memory.from_instance(state.store, state.instance), state}

  def handle_call({:memory, size, offset}, _from, state),
    do: {:reply, Memory.from_instance(state.instance, size, offset), state}

  def handle_call(:store, _from, state), do: {:reply, {:ok, state.store}, state}
  def handle_call(:instance, _from, state), do: {:reply, {:ok, state.instance}, state}
  def handle_call(:module, _from, state), do: {:reply, {:ok, state.module}, state}

  # What `Wasmex.Components.call_function/4` asks a server it finds no route for: this is
  # not a component's.
  def handle_call(:component_route, _from, state),
    do: {:reply, {:error, "a core instance server: use Wasmex.call_function/4"}, state}

  @impl true
  def handle_info({:DOWN, _ref, :process, host, reason}, %{store: %{host: host}} = state) do
    {:stop, {:shutdown, {:wasmex_host_down, reason}}, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{store: store} = state) do
    :ets.delete(Wasmex.Routes, self())

    case state.callbacks do
      :none -> :ok
      :own -> Callback.unregister(self())
      :for -> Callback.unregister_for(self())
    end

    # A call still running on this instance stops, and later ones are refused: nobody
    # serves the instance any more.
    Enum.each(Stops.take(self()), &Host.notify(store.host, &1))

    # Let go of the store before exiting, not by the host's monitor: the monitor's message
    # can reach the host after the process that stopped this one sent its next request,
    # and a start right after a stop would then find the instance slots still taken. (A
    # host that is down answers at once: the call fails.)
    Host.release_now(store.host, store.store_id, self())
  end

  @doc false
  # Removes what an instance server registered (its call route and its imports); called
  # by the host when a server ends without running terminate/2. Returns the notifications
  # that stop a call still running on the server's instance, for the host to send.
  @spec forget(pid()) :: [Wire.request()]
  def forget(server) do
    :ets.delete(Wasmex.Routes, server)
    :ets.delete(Wasmex.Routes, {Wasmex.Components, server})
    Callback.unregister(server)
    Callback.unregister_for(server)
    Stops.take(server)
  end
end
