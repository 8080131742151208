defmodule Wasmex.Wasi.StdinTest do
  @moduledoc """
  A program waiting for stdin, from the BEAM as messages or from a `Wasmex.Pipe`: a wait
  stopped at its deadline or by its caller's death is not taken for input, and leaves
  nothing behind for the next call; a pipe's end of input holds for one read only.
  """
  use ExUnit.Case, async: true

  alias Wasmex.Wasi.WasiOptions

  # `poll_stdin()` waits in poll_oneoff for stdin, returning its event count; `read()`
  # reads up to 100 bytes: `[errno, bytes read]`.
  @poller_path Path.expand("../../fixtures/wasi_stdin_poller.wat", __DIR__)
  @external_resource @poller_path
  @poller File.read!(@poller_path)

  defp start(stdin) do
    {:ok, store} = Wasmex.Store.new_wasi(%WasiOptions{stdin: stdin})
    {:ok, pid} = Wasmex.start_link(%{bytes: @poller, store: store})
    {pid, store}
  end

  describe "a poll of stdin as messages" do
    test "that reaches its deadline times out" do
      {pid, _store} = start(:messages)
      assert {:error, "timed out" <> _} = Wasmex.call_function(pid, "poll_stdin", [], 100)
    end

    test "stopped at its deadline leaves the next call's read whole" do
      {pid, store} = start(:messages)
      {:error, _} = Wasmex.call_function(pid, "poll_stdin", [], 100)
      :ok = Wasmex.Wasi.write_stdin(store, "hello")
      assert Wasmex.call_function(pid, "read", [], 5_000) == {:ok, [0, 5]}
    end

    test "whose caller died leaves the next call's read whole" do
      {pid, store} = start(:messages)
      caller = spawn(fn -> Wasmex.call_function(pid, "poll_stdin", [], 60_000) end)
      TestHelper.wait_until_pending(store.host)
      Process.exit(caller, :kill)
      :ok = Wasmex.Wasi.write_stdin(store, "hi")
      assert Wasmex.call_function(pid, "read", [], 5_000) == {:ok, [0, 2]}
    end

    test "with input written is ready at once" do
      {pid, store} = start(:messages)
      :ok = Wasmex.Wasi.write_stdin(store, "x")
      assert Wasmex.call_function(pid, "poll_stdin", [], 5_000) == {:ok, [1]}
    end
  end

  describe "a read of a stdin pipe" do
    test "at its end reads nothing, and reads what is written to the pipe later" do
      {:ok, stdin} = Wasmex.Pipe.new()
      {:ok, 3} = Wasmex.Pipe.write(stdin, "one")
      :ok = Wasmex.Pipe.seek(stdin, 0)
      {pid, _store} = start(stdin)
      {:ok, [0, 3]} = Wasmex.call_function(pid, "read", [], 5_000)
      {:ok, [0, 0]} = Wasmex.call_function(pid, "read", [], 5_000)
      # A write moves the pipe's cursor past what it wrote, as in Wasmex.
      {:ok, 5} = Wasmex.Pipe.write(stdin, "hello")
      :ok = Wasmex.Pipe.seek(stdin, 3)
      assert Wasmex.call_function(pid, "read", [], 5_000) == {:ok, [0, 5]}
    end
  end
end
