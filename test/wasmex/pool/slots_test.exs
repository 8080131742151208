defmodule Wasmex.Pool.SlotsTest do
  use ExUnit.Case, async: true

  alias Wasmex.Pool.Slots

  doctest Slots

  defp start_slots(max_queue) do
    name = :"slots_#{System.unique_integer([:positive])}"
    start_supervised!({Slots, name: name, max_queue: max_queue})
    name
  end

  describe "take/1 and give_back/2" do
    test "admit max_queue holders, refuse the next, admit again once one gives back" do
      slots = start_slots(2)
      assert {:ok, a} = Slots.take(slots)
      assert {:ok, _b} = Slots.take(slots)
      assert Slots.take(slots) == {:error, :queue_full}
      assert Slots.in_flight(slots) == 2
      assert Slots.give_back(slots, a) == :ok
      assert {:ok, _} = Slots.take(slots)
    end

    test "a holder killed before it gives back loses its slots" do
      slots = start_slots(1)
      test = self()

      holder =
        spawn(fn ->
          {:ok, _} = Slots.take(slots)
          send(test, :taken)
          Process.sleep(:infinity)
        end)

      assert_receive :taken
      # Watch the slots server receive the holder's :DOWN: a monitor of our own would tell
      # when the holder died, not when the server heard of it. The hold is a cast, so the
      # server may monitor the holder only after it died: the reason is then :noproc.
      server = Process.whereis(slots)
      :erlang.trace(server, true, [:receive])
      Process.exit(holder, :kill)
      assert_receive {:trace, ^server, :receive, {:DOWN, _, :process, ^holder, reason}}
      assert reason in [:killed, :noproc]
      :erlang.trace(server, false, [:receive])
      # The server handles that :DOWN before this call.
      _ = :sys.get_state(slots)
      assert Slots.in_flight(slots) == 0
      assert {:ok, _} = Slots.take(slots)
    end

    test "a pool whose slots are gone says it is not running instead of crashing the caller" do
      assert Slots.take(:"no_such_slots_#{System.unique_integer([:positive])}") ==
               {:error, :not_running}
    end
  end
end
