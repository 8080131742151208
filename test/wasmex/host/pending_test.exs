defmodule Wasmex.Host.PendingTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Pending

  doctest Pending

  defp from, do: {self(), [:alias | make_ref()]}

  describe "put/6, pop/2 and take_tag/2" do
    test "a caller's tag finds its request until the request is answered" do
      {_, tag} = f = from()
      p = Pending.put(Pending.new(), 1, {:reply, f}, [], nil, nil)
      {_entry, answered} = Pending.pop(p, 1)
      assert Pending.take_tag(answered, tag) == {nil, answered}
      assert {1, _} = Pending.take_tag(p, tag)
    end

    test "requests whose target has no tag ({:send, ...}) are kept but not indexed" do
      p = Pending.put(Pending.new(), 2, {:send, self(), :t}, [], nil, nil)
      assert Pending.size(p) == 1
      assert Pending.targets(p) == [{:send, self(), :t}]
    end

    test "popping an unknown id changes nothing" do
      p = Pending.put(Pending.new(), 3, {:reply, from()}, [], nil, nil)
      assert Pending.pop(p, 99) == {nil, p}
    end
  end

  describe "retarget/3" do
    test "a store whose creator gave up is re-addressed to :drop_store and unindexed" do
      {_, tag} = f = from()
      p = Pending.put(Pending.new(), 4, {:new_store, f, self()}, [], nil, nil)
      p = Pending.retarget(p, 4, :drop_store)
      assert Pending.get(p, 4) == {:drop_store, [], nil, nil}
      assert {nil, _} = Pending.take_tag(p, tag)
    end
  end

  describe "sent_by?/2 and caller/1" do
    test "tell which process sent a request" do
      p = Pending.put(Pending.new(), 5, {:new_store, from(), self()}, [], nil, nil)
      assert Pending.sent_by?(p, self())
      refute Pending.sent_by?(p, spawn(fn -> :ok end))
      assert Pending.caller(:drop_store) == nil
    end
  end
end
