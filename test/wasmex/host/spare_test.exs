defmodule Wasmex.Host.SpareTest do
  # Takes the application's spares: no other test may run meanwhile.
  use ExUnit.Case, async: false

  alias Wasmex.Host.Spare

  # Fills the spare pool and waits until the fill is done (the state call is answered
  # after the :fill message).
  defp filled do
    send(Spare, :fill)
    :sys.get_state(Spare)
  end

  describe "take/1" do
    test "hands over a warmed-up host with no store left from the warm-up" do
      filled()
      {:ok, host} = Spare.take(self())
      assert Wasmex.Host.Holders.empty?(:sys.get_state(host).holders)
    end

    test "the host it hands over serves stores" do
      filled()
      {:ok, host} = Spare.take(self())
      assert {:ok, _store_id} = Wasmex.Host.new_store(host, nil, nil, self())
    end
  end

  describe "refilling" do
    test "keeps the configured number of spares, however often it is asked" do
      filled()
      assert map_size(filled().ready) == Application.get_env(:wasmex, :spare_hosts, 1)
    end
  end
end
