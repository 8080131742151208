defmodule Wasmex.Host.ClientTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Client
  alias Wasmex.Wire

  doctest Client

  # A server that answers `:ping` with `:pong`, never answers `:hang`, and reports the
  # `{:give_up, from}` casts it gets to `test`.
  defp server(test) do
    spawn_link(fn -> serve(test) end)
  end

  defp serve(test) do
    receive do
      {:"$gen_call", from, :ping} -> GenServer.reply(from, :pong)
      {:"$gen_call", _from, :hang} -> :ok
      {:"$gen_cast", {:give_up, from}} -> send(test, {:gave_up, from})
    end

    serve(test)
  end

  describe "call/3" do
    test "returns the answer" do
      assert Client.call(server(self()), :ping, 1_000) == :pong
    end

    test "stops waiting after `wait` ms and tells the server, leaving no late answer behind" do
      pid = server(self())
      assert Client.call(pid, :hang, 50) == {:error, :timeout}
      assert_receive {:gave_up, {caller, [:alias | _]}}
      assert caller == self()
      refute_received _
    end

    test "an unregistered name is an error, at once" do
      assert Client.call(:no_such_server_name, :ping, 60_000) == {:error, {:down, :noproc}}
    end

    test "a server that is gone is an error, at once" do
      {pid, ref} = spawn_monitor(fn -> :ok end)
      assert_receive {:DOWN, ^ref, :process, ^pid, :normal}
      assert Client.call(pid, :ping, 60_000) == {:error, {:down, :noproc}}
    end
  end

  describe "call/3 against a host" do
    test "a running Wasm call whose caller gives up is stopped; the next call is served" do
      wat =
        ~s{(module (func (export "spin") (loop br 0)) (func (export "one") (result i32) i32.const 1))}

      {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      {:ok, store} = Wasmex.store(pid)
      instance = :sys.get_state(pid).instance
      request = Wasmex.Instance.call_request(store, instance, "spin", [], 60_000)

      # Waits 200 ms for a call allowed 60 s.
      assert Client.call(store.host, {:request, request}, 200) == {:error, :timeout}
      {micros, result} = :timer.tc(fn -> Wasmex.call_function(pid, "one", [], 5_000) end)
      assert result == {:ok, [1]}
      assert micros < 3_000_000
    end
  end

  describe "wait_for/1" do
    test "a call or an instantiation waits its own timeout plus 2 s, :infinity forever" do
      assert Client.wait_for(Wire.call(1, 1, "f", [], 500)) == 2_500
      assert Client.wait_for(Wire.instantiate(1, "k", nil, "", [], [], 1_000)) == 3_000
      assert Client.wait_for(Wire.call(1, 1, "f", [], :infinity)) == :infinity
    end

    test "anything else waits request_timeout" do
      assert Client.wait_for(Wire.store_new(nil, nil)) == Client.request_timeout()
    end
  end
end
