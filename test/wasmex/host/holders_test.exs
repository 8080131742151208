defmodule Wasmex.Host.HoldersTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Holders

  doctest Holders

  defp holder do
    pid = spawn(fn -> receive(do: (:stop -> :ok)) end)
    on_exit(fn -> send(pid, :stop) end)
    pid
  end

  defp monitored?(pid) do
    {:monitored_by, by} = Process.info(pid, :monitored_by)
    self() in by
  end

  describe "hold/3" do
    test "monitors each holder of a store once" do
      a = holder()
      h = Holders.new() |> Holders.hold(1, a) |> Holders.hold(1, a)
      assert Holders.count(h) == 1
      assert monitored?(a)
      assert Holders.holds?(h, 1)
      refute Holders.holds?(h, 2)
    end
  end

  describe "release/3" do
    test "the store is dropped with its last holder, and the monitors go" do
      [a, b] = [holder(), holder()]
      h = Holders.new() |> Holders.hold(1, a) |> Holders.hold(1, b)
      assert {:keep, h} = Holders.release(h, 1, a)
      refute monitored?(a)
      assert {:drop, h} = Holders.release(h, 1, b)
      assert Holders.empty?(h)
      assert Holders.count(h) == 0
    end

    test "a process that does not hold the store changes nothing" do
      h = Holders.hold(Holders.new(), 1, holder())
      assert Holders.release(h, 1, self()) == {:keep, h}
      assert Holders.release(h, 9, self()) == {:keep, h}
    end
  end

  describe "free/2" do
    test "drops a store whoever holds it" do
      [a, b] = [holder(), holder()]
      h = Holders.new() |> Holders.hold(1, a) |> Holders.hold(1, b) |> Holders.hold(2, a)
      assert {:drop, h} = Holders.free(h, 1)
      refute Holders.holds?(h, 1)
      refute monitored?(b)
      assert Holders.count(h) == 1
    end

    test "an unknown store is :unknown" do
      assert Holders.free(Holders.new(), 1) == :unknown
    end
  end

  describe "down/3" do
    test "a holder's exit lets go of its store" do
      a = holder()
      b = holder()
      h = Holders.new() |> Holders.hold(1, a) |> Holders.hold(1, b)
      Process.exit(a, :kill)
      assert_receive {:DOWN, ref, :process, ^a, :killed}
      assert {:keep, 1, h} = Holders.down(h, ref, a)
      Process.exit(b, :kill)
      assert_receive {:DOWN, ref, :process, ^b, :killed}
      assert {:drop, 1, h} = Holders.down(h, ref, b)
      assert Holders.empty?(h)
    end

    test "a monitor it does not hold is :unknown" do
      assert Holders.down(Holders.new(), make_ref(), self()) == :unknown
    end
  end
end
