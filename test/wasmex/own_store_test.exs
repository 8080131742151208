defmodule Wasmex.OwnStoreTest do
  @moduledoc """
  `Wasmex.start_link/1` without a store makes a store, and an OS process, of its own: a
  start that fails or raises leaves neither behind.
  """
  # Not async: the test follows the spare host the start takes (Wasmex.Host.Spare), which
  # another test starting at the same time could take instead.
  use ExUnit.Case, async: false

  # The spare host a start without a store takes next, once there is one.
  defp next_spare do
    case Map.keys(:sys.get_state(Wasmex.Host.Spare).ready) do
      [host | _] -> host
      [] -> next_spare()
    end
  end

  describe "start_link/1 with bytes and no store" do
    test "that raises (a bad :name) leaves no host running" do
      host = next_spare()
      ref = Process.monitor(host)

      assert_raise ArgumentError, fn ->
        Wasmex.start_link(%{bytes: "(module)", name: "not an atom"})
      end

      assert_receive {:DOWN, ^ref, :process, ^host, _}, 5_000
    end

    test "that fails (a trapping start function) leaves no host running" do
      host = next_spare()
      ref = Process.monitor(host)
      wat = "(module (func $s unreachable) (start $s))"
      assert {:error, _} = Wasmex.start_link(%{bytes: wat})
      assert_receive {:DOWN, ^ref, :process, ^host, _}, 5_000
    end
  end
end
