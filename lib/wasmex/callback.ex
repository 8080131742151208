defmodule Wasmex.Callback do
  @moduledoc false
  # Runs import callbacks. An instance server registers its imports here; when its Wasm
  # calls an import, the host server hands the callback to the server's runner
  # (Wasmex.Callback.Runner), a process that runs the Elixir function and writes the
  # answer straight to the port: no hop through the instance server or back through the
  # host server. A callback nested in a running one gets a runner of its own, so
  # callbacks nest (a callback may call back into Wasm whose import calls Elixir again),
  # and one whose Wasm call was stopped can be killed.
  #
  # Every callback gets exactly one answer: its runner answers with its result, or, when
  # it dies before (an exit signal from a linked process, a kill), the runner's guard
  # answers with an error saying so. The callback's row in @running, `{key, runner, port,
  # {namespace, name}}`, decides who answers: whoever takes it (the runner, its guard, or
  # abandon/4, after which nobody does).

  alias Wasmex.{Memory, StoreOrCaller}
  alias Wasmex.Callback.{Runner, Writes}

  @registry Wasmex.Callbacks
  @running Wasmex.Callbacks.Running

  @doc false
  def setup do
    :ets.new(@registry, [:named_table, :public, :set, read_concurrency: true])
    :ets.new(@running, [:named_table, :public, :set, write_concurrency: true])
    Runner.setup()
  end

  @doc """
  Registers the imports of the instance `server` serves (`nil` while it is being
  instantiated). Registering again replaces the row.
  """
  @spec register(pid(), map(), Wasmex.Instance.t() | nil) :: true
  def register(server, imports, instance) do
    memory = instance && Memory.of_instance(instance)

    :ets.insert(
      @registry,
      {server, stringify(imports), context(server, instance, memory),
       memory_floor(instance, memory)}
    )
  end

  @doc "Whether an imports map defines any function."
  @spec any?(map()) :: boolean()
  def any?(imports), do: Enum.any?(imports, fn {_ns, fns} -> fns != %{} end)

  # What every callback of the server's instance gets, but its caller: worked out once.
  defp context(server, instance, memory), do: %{memory: memory, instance: instance, pid: server}

  # How far the context memory surely reaches (`Wasmex.Callback.Writes`).
  defp memory_floor(nil, _memory), do: nil
  defp memory_floor(instance, memory), do: Writes.new_floor(memory, instance)

  @spec unregister(pid()) :: true
  def unregister(server), do: :ets.delete(@registry, server)

  defp stringify(imports) do
    Map.new(imports, fn {ns, fns} ->
      {to_string(ns), Map.new(fns, fn {name, spec} -> {to_string(name), spec} end)}
    end)
  end

  @doc """
  Runs the callback for `server`'s instance on `server`'s runner (`Wasmex.Callback.Runner`),
  answering on `port`. `:unregistered` when `server` registered no imports.
  """
  def start(host, port, server, store_id, callback_id, ns, name, params) do
    case :ets.lookup(@registry, server) do
      [{^server, imports, context, floor}] ->
        key = {host, store_id, callback_id}

        # A callback abandoned before it got here finds the mark abandon/4 left.
        case :ets.lookup(@running, key) do
          [{_, :abandoned, _, _}] ->
            :ets.delete(@running, key)

          _ ->
            Runner.dispatch(host, server, key, port, {ns, name}, fn ->
              caller = StoreOrCaller.new(host, store_id, callback_id)
              Writes.enter(port, caller, context.memory, floor)
              run(imports, Map.put(context, :caller, caller), ns, name, params)
            end)
        end

        :ok

      [] ->
        :unregistered
    end
  end

  @doc "Kills the process running a callback whose Wasm call stopped. Whether there was one."
  def abandon(host, store_id, callback_id, server) do
    key = {host, store_id, callback_id}

    case :ets.take(@running, key) do
      [{_, pid, _, _}] when is_pid(pid) ->
        Process.exit(pid, :kill)

      _ ->
        # A callback of a registered server that has not started yet (or has already
        # answered): mark it, so that it does not start.
        if :ets.member(@registry, server),
          do: :ets.insert(@running, {key, :abandoned, nil, nil})

        false
    end
  end

  @doc "Kills the processes running callbacks for `host`, which is stopping."
  @spec abandon_all(pid()) :: :ok
  def abandon_all(host) do
    running = [{{{host, :_, :_}, :"$1", :_, :_}, [{:is_pid, :"$1"}], [:"$1"]}]
    for pid <- :ets.select(@running, running), do: Process.exit(pid, :kill)
    :ets.match_delete(@running, {{host, :_, :_}, :_, :_, :_})
    :ok
  end

  # Runs the Elixir function of import `ns`.`name`: `{:ok, results}` or `{:error, message}`.
  defp run(imports, context, ns, name, params) do
    case imports do
      # A component import (Wasmex.Components): the params as they are, one result.
      %{^ns => %{^name => {:fn, fun}}} ->
        Wasmex.Components.Callbacks.run(fun, ns, name, params)

      # A host resource's function (Wasmex.Components.HostResource): its terms are the
      # instance server's.
      %{^ns => %{^name => {:resource_fn, _, _, _, _} = spec}} ->
        Wasmex.Components.Callbacks.run_resource(spec, context.pid, ns, name, params)

      %{^ns => %{^name => {:fn, _params, results, fun}}} ->
        try do
          metadata = %{namespace: ns, name: name, instance: context[:instance]}

          Wasmex.Telemetry.span([:callback], metadata, fn ->
            results(apply(fun, [context | params]), results)
          end)
        rescue
          e -> {:error, "the callback #{ns}.#{name} raised: #{Exception.message(e)}"}
        catch
          kind, reason ->
            {:error, "the callback #{ns}.#{name} failed: #{inspect({kind, reason})}"}
        end

      _ ->
        {:error, "no import #{ns}.#{name} is defined"}
    end
  end

  defp results(_value, []), do: {:ok, []}
  defp results(value, [_]), do: numbers([value])

  defp results(values, types) when is_list(values) and length(values) == length(types),
    do: numbers(values)

  defp results(value, types),
    do:
      {:error, "the callback must return a list of #{length(types)} values, got: #{show(value)}"}

  # Wasm values are numbers, and the floats that are none (`:nan`, `:infinity`,
  # `:neg_infinity`, as callbacks get them): anything else would only be refused by the
  # port, and a deeply nested term could not even be read there.
  defp numbers(values) do
    case Enum.find(values, &(not (is_number(&1) or &1 in [:nan, :infinity, :neg_infinity]))) do
      nil -> {:ok, values}
      value -> {:error, "the callback must return numbers, got: #{show(value)}"}
    end
  end

  defp show(term), do: inspect(term, limit: 10, printable_limit: 200)

  @doc """
  Registers, for instance server `server`, the imports of an instance that `handler`
  made (`Wasmex.start_link/1` with `instance:`): the port sends that instance's callbacks
  to `handler`, and they run here as a server's do. Does nothing (false) when `handler`
  has a row already. `unregister_for/1` removes the row.
  """
  @spec register_for(pid(), pid(), map(), Wasmex.Instance.t()) :: boolean()
  def register_for(handler, server, imports, instance) do
    memory = Memory.of_instance(instance)

    :ets.insert_new(
      @registry,
      {handler, stringify(imports), context(server, instance, memory),
       memory_floor(instance, memory)}
    )
  end

  @doc """
  Registers the imports of the component instance served by the calling process
  (`Wasmex.Components`), normalized by `Wasmex.Components.Imports`.
  """
  @spec register_component(map()) :: true
  def register_component(imports),
    do: :ets.insert(@registry, {self(), imports, %{pid: self(), memory: nil}, nil})

  @doc "Removes the rows `server` made with `register_for/4`."
  @spec unregister_for(pid()) :: true
  def unregister_for(server), do: :ets.match_delete(@registry, {:_, :_, %{pid: server}, :_})
end
