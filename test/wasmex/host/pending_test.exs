defmodule Wasmex.Host.PendingTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Pending

  doctest Pending

  defp from(pid \\ self()), do: {pid, [:alias | make_ref()]}

  # A process that waits until told to stop, and its pid.
  defp caller do
    pid = spawn_link(fn -> receive(do: (:stop -> :ok)) end)
    on_exit(fn -> send(pid, :stop) end)
    pid
  end

  defp monitors(pid) do
    {:monitored_by, by} = Process.info(pid, :monitored_by)
    Enum.count(by, &(&1 == self()))
  end

  describe "put/5 and pop/2" do
    test "an answered request is taken out with its target, watch and data" do
      f = from()
      p = Pending.put(Pending.new(), 1, {:reply, f}, :unwatched, :data)
      assert {{{:reply, ^f}, :unwatched, :data}, p} = Pending.pop(p, 1)
      assert Pending.size(p) == 0
    end

    test "popping an unknown id changes nothing" do
      p = Pending.put(Pending.new(), 3, {:reply, from()}, :unwatched, nil)
      assert Pending.pop(p, 99) == {nil, p}
    end

    test "a watched caller is monitored once, whatever it has in flight" do
      pid = caller()
      p = Pending.put(Pending.new(), 1, {:send, pid, :a}, 5, nil)
      p = Pending.put(p, 2, {:send, pid, :b}, 5, nil)
      assert monitors(pid) == 1
      {_, p} = Pending.pop(p, 1)
      {_, p} = Pending.pop(p, 2)
      # Idle now, the caller keeps its monitor for its next call.
      assert monitors(pid) == 1
      assert Pending.watched(p) == 1
      p = Pending.put(p, 3, {:reply, from(pid)}, 5, nil)
      assert monitors(pid) == 1
      assert {_, _} = Pending.pop(p, 3)
    end

    test "an unwatched request's caller is not monitored" do
      pid = caller()
      p = Pending.put(Pending.new(), 1, {:reply, from(pid)}, :unwatched, nil)
      assert monitors(pid) == 0
      {_, p} = Pending.pop(p, 1)
      assert p == Pending.new()
    end

    test "idle callers keep their monitors up to a bound; beyond it they are removed" do
      pids = for _ <- 1..1030, do: caller()

      p =
        pids
        |> Enum.with_index(1)
        |> Enum.reduce(Pending.new(), fn {pid, id}, p ->
          {_, p} = Pending.pop(Pending.put(p, id, {:send, pid, id}, 1, nil), id)
          p
        end)

      assert Pending.watched(p) == 1024
      assert Enum.sum(Enum.map(pids, &monitors/1)) == 1024
    end
  end

  describe "size/1, targets/1 and watched/1" do
    test "count what is in flight, before and after many requests at once" do
      pid = caller()
      many = Enum.reduce(1..40, Pending.new(), &Pending.put(&2, &1, {:send, pid, &1}, 1, nil))
      assert Pending.size(many) == 40
      few = Enum.reduce(3..40, many, fn id, p -> elem(Pending.pop(p, id), 1) end)
      assert Pending.size(few) == 2
      assert Enum.sort(Pending.targets(few)) == [{:send, pid, 1}, {:send, pid, 2}]
      assert Pending.watched(few) == 1
      f = from()

      assert {:cancel, 41, 1, _} =
               few |> Pending.put(41, {:reply, f}, 1, nil) |> Pending.give_up(f)
    end
  end

  describe "give_up/2" do
    test "a watched request is taken out to be cancelled in its store" do
      f = from()
      p = Pending.put(Pending.new(), 7, {:reply, f}, 42, nil)
      assert {:cancel, 7, 42, p} = Pending.give_up(p, f)
      assert Pending.size(p) == 0
      refute Pending.sent_by?(p, self())
    end

    test "a compilation (watched, no store) is cancelled on the host" do
      f = from()
      p = Pending.put(Pending.new(), 8, {:reply, f}, nil, nil)
      assert {:cancel, 8, nil, _} = Pending.give_up(p, f)
    end

    test "a store being created is re-addressed to {:drop_store, id}" do
      f = from()
      p = Pending.put(Pending.new(), 4, {:new_store, f, self(), 9}, :unwatched, nil)
      assert {:ok, p} = Pending.give_up(p, f)
      assert Pending.targets(p) == [{:drop_store, 9}]
      refute Pending.sent_by?(p, self())
      assert {{{:drop_store, 9}, :unwatched, nil}, _} = Pending.pop(p, 4)
    end

    test "any other request just loses its waiter" do
      f = from()
      p = Pending.put(Pending.new(), 5, {:reply, f}, :unwatched, nil)
      assert {:ok, p} = Pending.give_up(p, f)
      assert Pending.size(p) == 0
    end

    test "a give-up for a request answered already, or of another tag, changes nothing" do
      f = from()
      p = Pending.put(Pending.new(), 6, {:reply, f}, 1, nil)
      assert Pending.give_up(p, from()) == {:ok, p}
      {_, answered} = Pending.pop(p, 6)
      assert Pending.give_up(answered, f) == {:ok, answered}
    end
  end

  describe "down/3" do
    test "a watched caller's exit takes out every watched request of it" do
      pid = caller()
      f = from(pid)
      p = Pending.put(Pending.new(), 1, {:reply, f}, 3, nil)
      p = Pending.put(p, 2, {:send, pid, :x}, 4, nil)
      p = Pending.put(p, 3, {:send, caller(), :y}, 4, nil)
      ref = Process.monitor(pid)
      # The monitor the struct holds is the one that fires; find it by exiting the caller.
      Process.unlink(pid)
      Process.exit(pid, :kill)
      assert_receive {:DOWN, ^ref, :process, ^pid, :killed}
      assert_receive {:DOWN, pending_ref, :process, ^pid, :killed}

      assert {:ok, cancels, p} = Pending.down(p, pending_ref, pid)
      assert Enum.sort(cancels) == [{1, 3}, {2, 4}]
      assert Pending.size(p) == 1
    end

    test "a monitor the struct does not hold is :unknown" do
      assert Pending.down(Pending.new(), make_ref(), self()) == :unknown
    end

    test "an idle caller's exit leaves nothing to cancel" do
      pid = caller()
      {_, p} = Pending.pop(Pending.put(Pending.new(), 1, {:send, pid, :x}, 1, nil), 1)
      Process.unlink(pid)
      Process.exit(pid, :kill)
      assert_receive {:DOWN, ref, :process, ^pid, :killed}
      assert {:ok, [], p} = Pending.down(p, ref, pid)
      assert Pending.watched(p) == 0
    end
  end

  describe "sent_by?/2 and caller/1" do
    test "a request answered to a pid ({:send, ...}) counts, watched or not" do
      p = Pending.put(Pending.new(), 1, {:send, self(), :w}, :unwatched, nil)
      assert Pending.sent_by?(p, self())
      {_, p} = Pending.pop(p, 1)
      refute Pending.sent_by?(p, self())
    end

    test "tell which process waits for a request" do
      p = Pending.put(Pending.new(), 5, {:new_store, from(), self(), 2}, :unwatched, nil)
      assert Pending.sent_by?(p, self())
      refute Pending.sent_by?(p, spawn(fn -> :ok end))
      assert Pending.caller({:drop_store, 2}) == nil
      assert Pending.caller({:send, self(), :t}) == self()
    end
  end

  describe "runs_in?/2" do
    test "a watched request of the store is in flight" do
      p = Pending.put(Pending.new(), 1, {:send, self(), :t}, 3, nil)
      assert Pending.runs_in?(p, 3)
    end

    test "unwatched requests of the store do not count" do
      p = Pending.put(Pending.new(), 1, {:send, self(), :t}, :unwatched, nil)
      refute Pending.runs_in?(p, 3)
    end

    test "past 64 requests in flight it does not look and says yes" do
      p =
        Enum.reduce(1..65, Pending.new(), fn id, p ->
          Pending.put(p, id, {:send, self(), :t}, :unwatched, nil)
        end)

      assert Pending.runs_in?(p, 3)
    end
  end
end
