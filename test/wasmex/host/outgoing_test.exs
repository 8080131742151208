defmodule Wasmex.Host.OutgoingTest do
  @moduledoc """
  A busy host writes the requests that reach it together as one batch
  (`Wasmex.Host.Outgoing`, read by `port/frame.rs`): every request is still answered, in
  the order it came.
  """
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Wasmex.Host.Outgoing

  doctest Outgoing

  @filler :binary.copy("x", 1020)

  # Waits (without sleeping) until `pid` has `n` messages waiting.
  defp await_mailbox(pid, n) do
    unless Process.info(pid, :message_queue_len) == {:message_queue_len, n} do
      :erlang.yield()
      await_mailbox(pid, n)
    end
  end

  # Runs `requests` (functions) against a suspended host, each from a task started once
  # the one before has reached the host's mailbox; then resumes the host so that it finds
  # them all waiting. Returns the results in order.
  defp while_suspended(host, requests) do
    :sys.suspend(host)

    tasks =
      requests
      |> Enum.with_index(1)
      |> Enum.map(fn {request, n} ->
        task = Task.async(request)
        await_mailbox(host, n)
        task
      end)

    :sys.resume(host)
    Enum.map(tasks, &Task.await/1)
  end

  describe "add/2 and take/1" do
    test "a queue with nothing added takes nothing" do
      assert {nil, _} = Outgoing.take(Outgoing.new())
    end

    test "requests come out in the order they went in" do
      out = Enum.reduce(1..3, Outgoing.new(), &Outgoing.add(&2, <<&1>>, 1))
      {payload, _} = Outgoing.take(out)
      assert IO.iodata_to_binary(payload) == <<0, 1::32, 1, 1::32, 2, 1::32, 3>>
    end
  end

  describe "full?/1" do
    test "is false for a few small requests" do
      refute Outgoing.new() |> Outgoing.add("ab", 2) |> Outgoing.full?()
    end

    test "is true once the batch holds 64 KiB" do
      out = Enum.reduce(1..64, Outgoing.new(), fn _, out -> Outgoing.add(out, @filler, 1020) end)
      assert Outgoing.full?(out)
    end
  end

  describe "batchable?/1" do
    test "a large request is written on its own" do
      refute Outgoing.batchable?(65_536)
    end
  end

  describe "a busy host" do
    test "answers every request that reached it together, each with its own result" do
      {pid, store} = TestHelper.start_instance()
      calls = for i <- 1..20, do: fn -> Wasmex.call_function(pid, "sum", [i, i]) end
      assert while_suspended(store.host, calls) == for(i <- 1..20, do: {:ok, [2 * i]})
    end

    test "writes requests that reached it together as a batch" do
      {pid, store} = TestHelper.start_instance()
      before = Wasmex.Stats.get().request_batches
      calls = for i <- 1..5, do: fn -> Wasmex.call_function(pid, "sum", [i, i]) end
      while_suspended(store.host, calls)
      assert Wasmex.Stats.get().request_batches > before
    end

    test "runs a batch's requests in the order they came" do
      {pid, store} = TestHelper.start_instance()
      {:ok, memory} = Wasmex.memory(pid)

      [:ok, read] =
        while_suspended(store.host, [
          fn -> Wasmex.Memory.write_binary(store, memory, 0, "in order") end,
          fn -> Wasmex.Memory.read_binary(store, memory, 0, 8) end
        ])

      assert read == "in order"
    end

    test "writes a large request after the batch that came before it" do
      {pid, store} = TestHelper.start_instance()
      {:ok, memory} = Wasmex.memory(pid)
      large = :binary.copy("L", 70_000)

      [:ok, :ok, read] =
        while_suspended(store.host, [
          fn -> Wasmex.Memory.write_binary(store, memory, 0, "small") end,
          fn -> Wasmex.Memory.write_binary(store, memory, 0, large) end,
          fn -> Wasmex.Memory.read_binary(store, memory, 0, 5) end
        ])

      assert read == "LLLLL"
    end
  end

  describe "the port" do
    test "refuses a batch that does not split into whole frames, and serves on" do
      {pid, store} = TestHelper.start_instance()
      port = :sys.get_state(store.host).port

      log =
        capture_log(fn ->
          # One frame announced as 9 bytes with only 1 there (the host frames its writes
          # itself: the port is a stream).
          Port.command(port, <<6::32, 0, 9::32, 1>>)
          # Answered after the refusal, which the port wrote first.
          assert {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
        end)

      assert log =~ "malformed batch: a frame of 9 bytes with 1 left in the batch"
    end
  end
end
