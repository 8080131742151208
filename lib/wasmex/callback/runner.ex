defmodule Wasmex.Callback.Runner do
  @moduledoc false
  # The processes that run import callbacks. Each instance server (more exactly: each
  # process the port names as the handler of a callback, on each host) has a runner, a
  # long-lived process that runs its callbacks one at a time, much as Wasmex runs them in
  # the instance's own GenServer: a callback then costs a message, not a process. A
  # callback that comes while the runner is busy (one nested in a running callback: Elixir
  # called back into Wasm, whose import calls Elixir again) gets a new runner; once done,
  # a runner becomes the idle one again, or ends if there is one already.
  #
  # The idle runner of `{host, server}` is a row in @idle. The host server takes the row
  # to hand the runner a callback, so a runner is either idle (its row is there, and only
  # the host can send it work) or busy. A runner ends when its server or its host goes:
  # it deletes its own idle row first; when the row was already taken, a callback is on
  # its way (messages from the host come before the host's :DOWN) and it runs that first.
  #
  # A guard process, started with the runner, monitors it for its whole life: when the
  # runner dies with callbacks in hand (an exit signal from a process the callback
  # linked, a kill), the guard answers each with an error saying so. Who answers is
  # decided by the callback's row in Wasmex.Callbacks.Running (see Wasmex.Callback):
  # whoever takes it.

  @idle Wasmex.Callbacks.Runners
  @running Wasmex.Callbacks.Running
  # Words of heap (256 KiB) above which an idle runner collects its garbage.
  @large_heap 32_768

  @doc false
  def setup, do: :ets.new(@idle, [:named_table, :public, :set, write_concurrency: true])

  @doc """
  Hands `job` (a function of no arguments returning the callback's result) to the idle
  runner of `server` on `host`, or to a new runner when none is idle. The callback's row
  in @running is `{key, runner, port, import}`, where `key` is `{host, store_id,
  callback_id}` and `import` `{namespace, name}`. Runs in the host server.
  """
  @spec dispatch(pid(), pid(), tuple(), port() | nil, {String.t(), String.t()}, (() -> term())) ::
          :ok
  def dispatch(host, server, key, port, import, job) do
    case take_idle(host, server) do
      nil ->
        start(host, server, {key, port, import, job})

      runner ->
        :ets.insert(@running, {key, runner, port, import})
        send(runner, {:run, key, job})

        # A runner that died while idle, with its row taken just now, would never run
        # the job: its guard may already have looked for rows. Whoever takes the row
        # answers.
        if not Process.alive?(runner) and :ets.take(@running, key) != [],
          do: start(host, server, {key, port, import, job})
    end

    :ok
  end

  defp take_idle(host, server) do
    case :ets.take(@idle, {host, server}) do
      [{_, runner}] -> runner
      [] -> nil
    end
  end

  # A new runner for `first` (a callback), with its guard in place before it runs anything.
  defp start(host, server, {key, port, import, job}) do
    spawn(fn ->
      me = self()

      guard =
        spawn(fn ->
          ref = Process.monitor(me)
          send(me, {:guarded, self()})
          guard(me, ref, {host, server})
        end)

      receive do: ({:guarded, ^guard} -> :ok)
      Process.monitor(host)
      Process.monitor(server)

      # The row is made here: the host may meanwhile have marked the callback abandoned
      # (see Wasmex.Callback.abandon/4), and then it does not run.
      if :ets.insert_new(@running, {key, me, port, import}),
        do: run(key, job),
        else: :ets.delete(@running, key)

      idle(host, server)
    end)
  end

  # Idle again, unless another runner is: then this one is not needed. A runner may stay
  # idle for long, so what a callback left on its heap is collected first when it is
  # large.
  defp idle(host, server) do
    {:total_heap_size, words} = Process.info(self(), :total_heap_size)
    if words > @large_heap, do: :erlang.garbage_collect()
    if :ets.insert_new(@idle, {{host, server}, self()}), do: loop(host, server)
  end

  defp loop(host, server) do
    receive do
      {:run, key, job} ->
        run(key, job)
        idle(host, server)

      {:DOWN, _ref, :process, ^host, _reason} ->
        retire(host, server, :host_down)

      {:DOWN, _ref, :process, ^server, _reason} ->
        retire(host, server, :server_down)

      # Whatever the callbacks' code left behind for this process.
      _other ->
        loop(host, server)
    end
  end

  # Ends the idle runner once nothing can be on its way to it: when its row is gone, the
  # host took it and sends a callback, which comes before the host's :DOWN.
  defp retire(host, server, why) do
    if :ets.select_delete(@idle, [{{{host, server}, self()}, [], [true]}]) == 0 do
      # A host already gone sent whatever it sent before its :DOWN came.
      wait = if why == :host_down, do: 0, else: :infinity

      receive do
        {:run, key, job} -> run(key, job)
        {:DOWN, _ref, :process, ^host, _reason} -> :ok
      after
        wait -> :ok
      end
    end
  end

  # Runs a job and answers it, unless its row is gone (abandoned meanwhile).
  defp run({host, store_id, callback_id} = key, job) do
    # The store whose call waits for this callback: a core call into it from here could
    # only wait for that call to end (see Wasmex.Server); a component call from here is
    # served inside it (see Wasmex.Components).
    Process.put(:wasmex_waiting_store, {host, store_id, callback_id})
    result = job.()
    Process.delete(:wasmex_waiting_store)
    # From taking the row until the answer is sent an exit signal must not come between.
    trapping = Process.flag(:trap_exit, true)

    case :ets.take(@running, key) do
      [{_, _, port, _}] -> answer(key, port, result)
      [] -> :ok
    end

    Process.flag(:trap_exit, trapping)
    # An exit signal that came meanwhile takes this process down as it would have.
    unless trapping do
      receive do
        {:EXIT, _from, reason} when reason != :normal -> exit(reason)
      after
        0 -> :ok
      end
    end
  end

  defp guard(runner, ref, idle_key) do
    receive do
      {:DOWN, ^ref, :process, ^runner, reason} ->
        :ets.select_delete(@idle, [{{idle_key, runner}, [], [true]}])
        held = :ets.select(@running, [{{:"$1", runner, :_, :_}, [], [:"$1"]}])

        for key <- held do
          case :ets.take(@running, key) do
            [{_, _, port, {ns, name}}] ->
              answer(
                key,
                port,
                {:error, "the callback #{ns}.#{name} exited before returning: #{show(reason)}"}
              )

            [] ->
              :ok
          end
        end
    end
  end

  @doc "Sends the answer of callback `key` to `port`."
  @spec answer(tuple(), port() | nil, term()) :: term()
  def answer({_host, store_id, callback_id}, port, result),
    do:
      Wasmex.Host.send_notification(
        port,
        Wasmex.Wire.callback_return(store_id, callback_id, result)
      )

  defp show(term), do: inspect(term, limit: 10, printable_limit: 200)
end
