defmodule Wasmex.System.FloodTest do
  @moduledoc """
  Floods: far more calls than a host can answer at once, from one process or from many.
  Every call gets exactly one answer with the right value, and once the flood has drained
  the host server holds nothing for it (no pending request, no monitor, no memory).
  """
  use ExUnit.Case, async: true

  alias Wasmex.Instance
  alias Wasmex.Host.{Holders, Pending}

  @moduletag timeout: 120_000

  @wasm_test File.read!(TestHelper.wasm_test_file_path())

  # A flooded call's deadline counts from when it is sent, so the last of a flood waits
  # behind all the others: long enough that a slow or busy machine still answers every
  # one. These tests are about answers and memory, not speed.
  @flood_call_timeout 60_000

  setup do
    {:ok, pid} = Wasmex.start_link(%{bytes: @wasm_test})
    {:ok, store} = Wasmex.store(pid)
    host = store.host
    :erlang.garbage_collect(host)
    {:memory, memory} = Process.info(host, :memory)
    state = :sys.get_state(host)

    %{
      pid: pid,
      store: store,
      instance: :sys.get_state(pid).instance,
      host: host,
      baseline: %{
        memory: memory,
        holders: Holders.count(state.holders),
        watched: Pending.watched(state.pending)
      }
    }
  end

  # Casts `n` calls of `sum` at `instance`, tagged `{:f, i}` for i in 1..n.
  defp cast_sums(store, instance, n) do
    for i <- 1..n do
      Instance.call_exported_function(
        store,
        instance,
        "sum",
        [i, 1],
        {:f, i},
        @flood_call_timeout
      )
    end
  end

  # Receives `n` answers tagged `{:f, i}` for i in 1..n, each with `i + 1`, each once.
  defp receive_sums(n, timeout) do
    seen = :atomics.new(n, [])
    deadline = System.monotonic_time(:millisecond) + timeout

    Enum.each(1..n, fn received ->
      wait = max(deadline - System.monotonic_time(:millisecond), 0)

      receive do
        {:returned_function_call, result, {:f, i}} ->
          assert result == {:ok, [i + 1]}, "call #{i}: #{inspect(result)}"
          assert :atomics.add_get(seen, i, 1) == 1, "call #{i} was answered twice"
      after
        wait -> flunk("#{received - 1} of #{n} answers within #{timeout} ms")
      end
    end)

    # Exactly n distinct answers arrived and nothing else follows.
    assert Enum.all?(1..n, &(:atomics.get(seen, &1) == 1))
    refute_receive {:returned_function_call, _, _}, 100
  end

  # Nothing of the flood is left in the host server: no request, no monitor of a caller
  # but those it had before (this process's, kept while it lives: see Wasmex.Host.Pending).
  defp assert_drained(%{host: host, baseline: baseline}) do
    state = :sys.get_state(host)
    assert Pending.size(state.pending) == 0
    refute Pending.sent_by?(state.pending, self())
    assert Pending.watched(state.pending) == baseline.watched
    assert Holders.count(state.holders) == baseline.holders
    # Every cancel of a caller that died was written and answered.
    assert {state.cancel_queue, state.cancel_ids, state.cancels_out} == {[], %{}, 0}
    :erlang.garbage_collect(host)
    {:memory, memory} = Process.info(host, :memory)
    assert memory < max(2 * baseline.memory, 5_000_000)
    assert Process.info(host, :message_queue_len) == {:message_queue_len, 0}
  end

  describe "200,000 casts from one process at one instance" do
    test "all answered once with the right value; the host server gives back its memory",
         %{store: store, instance: instance, pid: pid} = ctx do
      n = 200_000

      cast_sums(store, instance, n)

      receive_sums(n, 90_000)
      assert_drained(ctx)
      assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
    end
  end

  describe "10,000 processes calling one instance at once" do
    test "each gets its own answer", %{pid: pid} = ctx do
      n = 10_000
      test_pid = self()

      callers =
        for i <- 1..n do
          spawn_link(fn ->
            send(test_pid, {:answer, i, Wasmex.call_function(pid, "sum", [i, 1], 60_000)})
          end)
        end

      answers =
        for _ <- 1..n, into: %{} do
          assert_receive {:answer, i, result}, 60_000
          {i, result}
        end

      # The callers are gone (and so, with them, the host's monitors of them).
      for caller <- callers do
        ref = Process.monitor(caller)
        assert_receive {:DOWN, ^ref, :process, ^caller, _}, 10_000
      end

      assert map_size(answers) == n
      assert Enum.all?(answers, fn {i, result} -> result == {:ok, [i + 1]} end)
      assert_drained(ctx)
      assert Process.info(pid, :message_queue_len) == {:message_queue_len, 0}
    end
  end

  describe "a flood queued behind a call that never ends" do
    test "100,000 queued calls all run once the stuck call is stopped",
         %{store: store, instance: instance} = ctx do
      n = 100_000
      Instance.call_exported_function(store, instance, "endless_loop", [], :stuck, 1_000)

      cast_sums(store, instance, n)

      assert_receive {:returned_function_call, {:error, "timed out" <> _}, :stuck}, 30_000
      receive_sums(n, 60_000)
      assert_drained(ctx)
    end

    test "a flooding caller that dies takes its queued calls with it",
         %{store: store, instance: instance, pid: pid} = ctx do
      n = 100_000
      test_pid = self()

      flooder =
        spawn(fn ->
          # The store thread is busy for up to 60 s; the flood queues behind it.
          Instance.call_exported_function(store, instance, "endless_loop", [], :stuck, 60_000)

          cast_sums(store, instance, n)

          send(test_pid, :flooded)
          receive do: (:never -> :ok)
        end)

      ref = Process.monitor(flooder)
      assert_receive :flooded, 30_000
      Process.exit(flooder, :kill)
      assert_receive {:DOWN, ^ref, :process, ^flooder, :killed}

      # The loop is cancelled and the queued calls skipped: the instance answers long
      # before the loop's 60 s timeout, and nothing is left pending.
      {micros, result} = :timer.tc(fn -> Wasmex.call_function(pid, "sum", [1, 2], 30_000) end)
      assert result == {:ok, [3]}
      assert micros < 20_000_000
      assert_drained(ctx)
    end
  end
end
