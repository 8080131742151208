defmodule Wasmex.Host.RequestsTest do
  # Drives a host server's state directly, with a port that swallows what is written.
  use ExUnit.Case, async: true

  alias Wasmex.Host.{Pending, Requests}
  alias Wasmex.Wire

  setup do
    port = Port.open({:spawn, "cat > /dev/null"}, [:binary, :stream])
    on_exit(fn -> Wasmex.Host.Startup.close(port) end)
    %{state: %Wasmex.Host{port: port, next_id: 2}}
  end

  # A `from` whose replies reach this process, as a caller's do.
  defp from, do: {self(), [:alias | :erlang.alias()]}

  describe "send_request/3 and deliver/3" do
    test "a request is numbered, kept in flight, and its answer reaches its caller", %{
      state: state
    } do
      {_, [:alias | ref]} = f = from()
      state = Requests.send_request(state, Wire.fuel_get(1), {:reply, f})
      assert state.next_id == 3
      assert Pending.size(state.pending) == 1
      state = Requests.deliver(state, 2, {:ok, 10})
      assert_received {[:alias | ^ref], {:ok, 10}}
      assert Pending.size(state.pending) == 0
    end

    test "a call's trap comes out as its message", %{state: state} do
      state = Requests.send_request(state, Wire.call(1, 1, "f", [], 5_000), {:send, self(), :t})
      Requests.deliver(state, 2, {:error, {:trap, "wasm trap: unreachable"}})
      assert_received {:returned_function_call, {:error, "wasm trap: unreachable"}, :t}
    end
  end

  describe "part/3" do
    test "the parts of a request in flight come to its caller with its answer", %{state: state} do
      {_, [:alias | ref]} = f = from()
      state = Requests.send_request(state, Wire.memory_read(1, 1, "memory", 0, 6), {:reply, f})
      state = state |> Requests.part(2, "ab") |> Requests.part(2, "cd")
      state = Requests.deliver(state, 2, {:ok, "ef"})
      assert_received {[:alias | ^ref], {:ok, {:parts, ["ab", "cd", "ef"]}}}
      assert state.parts == Wasmex.Host.Parts.new()
    end

    test "parts of an id not in flight are dropped", %{state: state} do
      assert Requests.part(state, 9, "ab").parts == Wasmex.Host.Parts.new()
    end
  end

  describe "cancel_all/2" do
    test "keeps at most 256 cancels unanswered; each answer lets the next go", %{state: state} do
      state = Requests.cancel_all(state, for(id <- 1..300, do: {id, 1}))
      assert state.cancels_out == 256
      assert length(state.cancel_queue) == 44

      # The answer to a cancelled request frees its place: the next cancel goes.
      state = Requests.deliver(state, 1, {:error, "cancelled: the caller stopped waiting"})
      assert {state.cancels_out, length(state.cancel_queue)} == {256, 43}

      # A request answered while its cancel waited is not cancelled any more.
      state = Requests.deliver(state, 300, {:ok, [1]})
      refute Map.has_key?(state.cancel_ids, 300)

      state = Enum.reduce(2..299, state, &Requests.deliver(&2, &1, {:error, "cancelled"}))
      assert {state.cancel_queue, state.cancel_ids, state.cancels_out} == {[], %{}, 0}
    end
  end

  describe "notify/2" do
    test "an instance's stop waits for the next write when no call is in flight in its store",
         %{state: state} do
      state = Requests.notify(state, Wire.instance_stop(1, 4))
      assert length(state.deferred) == 1
      assert_receive :write_deferred
    end

    test "an instance's stop is written at once while a call is in flight in its store",
         %{state: state} do
      state = Requests.send_request(state, Wire.call(1, 4, "f", [], 5_000), {:send, self(), :t})
      state = Requests.notify(state, Wire.component_instance_stop(1, 4))
      assert state.deferred == []
    end

    test "a call in another store does not hold back the stop", %{state: state} do
      state = Requests.send_request(state, Wire.call(2, 4, "f", [], 5_000), {:send, self(), :t})
      state = Requests.notify(state, Wire.instance_stop(1, 4))
      assert length(state.deferred) == 1
    end

    test "the next request takes what was deferred ahead of it, in one write", %{state: state} do
      state = Requests.notify(state, Wire.instance_stop(1, 4))
      state = Requests.send_request(state, Wire.fuel_get(1), {:send, self(), :t})
      assert state.deferred == []
    end

    test "other notifications are written at once", %{state: state} do
      state = Requests.notify(state, Wire.stdin_eof(1))
      assert state.deferred == []
      refute state.defer_timer
    end
  end
end
