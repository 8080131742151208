defmodule Wasmex.Wasi.OutputTest do
  @moduledoc """
  Bounded WASI output, seen from a program: a pipe's capacity (ENOSPC past it), the
  window of unacknowledged bytes of output sent as messages (`Wasmex.Wasi.ack_output/3`),
  and the order output keeps with replies and callbacks.
  """
  use ExUnit.Case, async: true

  alias Wasmex.Pipe
  alias Wasmex.Wasi.WasiOptions

  # `write(fd, times, size)` writes `size` bytes of "x" to `fd` `times` times and returns
  # {writes that succeeded, errno of the first that failed or 0}. `write_then_call`
  # writes "before" to stdout, then calls the import env.peek; `write_then_read` writes
  # "before", then reads stdin and returns the bytes read.
  @writer """
  (module
    (import "wasi_snapshot_preview1" "fd_write"
      (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read"
      (func $fd_read (param i32 i32 i32 i32) (result i32)))
    (import "env" "peek" (func $peek))
    (memory (export "memory") 2)
    (data (i32.const 200) "before")
    (func (export "write") (param $fd i32) (param $times i32) (param $size i32)
      (result i32 i32) (local $i i32) (local $errno i32)
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (local.get $size))
      (memory.fill (i32.const 1024) (i32.const 120) (local.get $size))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $times)))
          (local.set $errno
            (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
          (br_if $done (local.get $errno))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.get $i) (local.get $errno))
    (func (export "write_then_call")
      (i32.store (i32.const 0) (i32.const 200))
      (i32.store (i32.const 4) (i32.const 6))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (call $peek))
    (func (export "write_then_read") (result i32)
      (i32.store (i32.const 0) (i32.const 200))
      (i32.store (i32.const 4) (i32.const 6))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (i32.store (i32.const 0) (i32.const 300))
      (i32.store (i32.const 4) (i32.const 10))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (i32.load (i32.const 16))))
  """

  @enospc 51
  @epipe 64

  defp writer(wasi_fields, peek \\ fn _context -> nil end) do
    {:ok, store} = Wasmex.Store.new_wasi(struct(WasiOptions, wasi_fields))
    {:ok, module} = Wasmex.Module.compile(store, @writer)
    imports = %{env: %{peek: {:fn, [], [], peek}}}
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module, imports: imports})
    %{pid: pid, store: store}
  end

  defp contents(pipe) do
    :ok = Pipe.seek(pipe, 0)
    Pipe.read(pipe)
  end

  describe "a program writing to a Wasmex.Pipe" do
    test "past the default capacity (4 MiB) gets ENOSPC; what fits is kept" do
      {:ok, pipe} = Pipe.new()
      %{pid: pid} = writer(stdout: pipe)

      assert Wasmex.call_function(pid, :write, [1, 200, 32_768]) == {:ok, [128, @enospc]}
      assert Pipe.size(pipe) == 4 * 1024 * 1024
    end

    test "past a custom capacity keeps the part of the write that fits" do
      {:ok, pipe} = Pipe.new(capacity: 10_050)
      %{pid: pid} = writer(stdout: pipe)

      assert Wasmex.call_function(pid, :write, [1, 200, 100]) == {:ok, [100, @enospc]}
      assert contents(pipe) == String.duplicate("x", 10_050)
    end

    test "at the limit fails every write until the pipe has room again" do
      {:ok, pipe} = Pipe.new(capacity: 1000)
      %{pid: pid} = writer(stdout: pipe)
      assert Wasmex.call_function(pid, :write, [1, 20, 100]) == {:ok, [10, @enospc]}
      assert Wasmex.call_function(pid, :write, [1, 1, 1]) == {:ok, [0, @enospc]}

      # Truncating (or seeking back) makes room; the port asks the pipe before failing.
      :ok = Pipe.set_len(pipe, 0)
      assert Wasmex.call_function(pid, :write, [1, 20, 100]) == {:ok, [10, @enospc]}
      :ok = Pipe.seek(pipe, 500)
      assert Wasmex.call_function(pid, :write, [1, 20, 100]) == {:ok, [5, @enospc]}
      assert Pipe.size(pipe) == 1000
    end

    test "stdout and stderr writing to one pipe share its capacity" do
      {:ok, pipe} = Pipe.new(capacity: 1000)
      %{pid: pid} = writer(stdout: pipe, stderr: pipe)
      assert Wasmex.call_function(pid, :write, [1, 6, 100]) == {:ok, [6, 0]}
      assert Wasmex.call_function(pid, :write, [2, 6, 100]) == {:ok, [4, @enospc]}
    end

    test "that has exited fails with EPIPE" do
      test_pid = self()
      owner = spawn(fn -> send(test_pid, Pipe.new()) && receive(do: (:exit -> :ok)) end)
      assert_receive {:ok, pipe}
      %{pid: pid} = writer(stdout: pipe)
      ref = Process.monitor(pipe.pid)
      send(owner, :exit)
      assert_receive {:DOWN, ^ref, :process, _, _}

      assert {:ok, [written, @epipe]} = Wasmex.call_function(pid, :write, [1, 100, 100_000])
      assert written < 100
    end
  end

  # Every stdout message of `store` until none comes for `quiet` ms, acknowledging each
  # when `ack?`; returns the bytes received.
  defp take_output(store, ack?, quiet \\ 200, total \\ 0) do
    resource = store.resource

    receive do
      {:wasmex_stdout, %{resource: ^resource} = from, data} ->
        if ack?, do: :ok = Wasmex.Wasi.ack_output(from, :stdout, byte_size(data))
        take_output(store, ack?, quiet, total + byte_size(data))
    after
      quiet -> total
    end
  end

  describe "Wasmex.Wasi.ack_output/3" do
    setup do
      writer(stdout: {:messages, self()}, output_window: 1000)
    end

    test "a program writing more than the window waits until acknowledgements come",
         %{pid: pid, store: store} do
      task = Task.async(fn -> Wasmex.call_function(pid, :write, [1, 30, 100], 10_000) end)
      assert take_output(store, false) == 1000
      assert Task.yield(task, 0) == nil

      # Acknowledging what came lets the rest come, and the call end.
      :ok = Wasmex.Wasi.ack_output(store, :stdout, 1000)
      assert take_output(store, true) == 2000
      assert Task.await(task) == {:ok, [30, 0]}
    end

    test "without acknowledgements, a call's timeout stops it on time and the store serves on",
         %{pid: pid, store: store} do
      started = System.monotonic_time(:millisecond)
      assert {:error, "timed out: " <> _} = Wasmex.call_function(pid, :write, [1, 30, 100], 300)
      assert System.monotonic_time(:millisecond) - started < 1_000
      assert Wasmex.call_function(pid, :write, [1, 0, 100], 1_000) == {:ok, [0, 0]}
      assert take_output(store, false, 50) == 1000

      # Once acknowledged, the window is free for the next call.
      :ok = Wasmex.Wasi.ack_output(store, :stdout, 1000)
      task = Task.async(fn -> Wasmex.call_function(pid, :write, [1, 5, 100], 10_000) end)
      assert Task.await(task) == {:ok, [5, 0]}
      assert take_output(store, true, 50) == 500
    end

    test "a call waiting for acknowledgements is stopped when its caller dies",
         %{pid: pid, store: store} do
      caller = spawn(fn -> Wasmex.call_function(pid, :write, [1, 30, 100], 60_000) end)
      assert take_output(store, false) == 1000
      Process.exit(caller, :kill)
      # Served only once the cancelled call has ended: it queues behind it.
      assert Wasmex.call_function(pid, :write, [1, 0, 100], 5_000) == {:ok, [0, 0]}
    end

    test "acknowledgements from another process or for another stream free nothing",
         %{pid: pid, store: store} do
      task = Task.async(fn -> Wasmex.call_function(pid, :write, [1, 30, 100], 10_000) end)
      assert take_output(store, false) == 1000

      stranger = Task.async(fn -> Wasmex.Wasi.ack_output(store, :stdout, 1000) end)
      assert Task.await(stranger) == :ok
      assert Wasmex.Wasi.ack_output(store, :stderr, 1000) == :ok
      assert take_output(store, false) == 0
      assert Task.yield(task, 0) == nil

      :ok = Wasmex.Wasi.ack_output(store, :stdout, 1000)
      assert take_output(store, true) == 2000
      assert Task.await(task) == {:ok, [30, 0]}
    end

    test "an acknowledgement past 64 bits frees what was sent, as any larger one does",
         %{pid: pid, store: store} do
      task = Task.async(fn -> Wasmex.call_function(pid, :write, [1, 30, 100], 10_000) end)
      assert take_output(store, false) == 1000
      :ok = Wasmex.Wasi.ack_output(store, :stdout, 2 ** 70)
      assert take_output(store, true) == 2000
      assert Task.await(task) == {:ok, [30, 0]}
    end

    test "acknowledging ahead of the output frees nothing in advance", %{pid: pid, store: store} do
      :ok = Wasmex.Wasi.ack_output(store, :stdout, 1_000_000)
      task = Task.async(fn -> Wasmex.call_function(pid, :write, [1, 30, 100], 10_000) end)
      assert take_output(store, false) == 1000
      assert Task.yield(task, 0) == nil
      :ok = Wasmex.Wasi.ack_output(store, :stdout, 1000)
      assert take_output(store, true) == 2000
      assert Task.await(task) == {:ok, [30, 0]}
    end

    test "a program whose receiver has exited gets EPIPE" do
      receiver = spawn(fn -> :ok end)
      ref = Process.monitor(receiver)
      assert_receive {:DOWN, ^ref, :process, _, _}
      %{pid: pid} = writer(stdout: {:messages, receiver}, output_window: 1000)
      assert {:ok, [written, @epipe]} = Wasmex.call_function(pid, :write, [1, 30, 100], 10_000)
      assert written <= 10
    end

    test "a bad stream or byte count is refused", %{store: store} do
      assert Wasmex.Wasi.ack_output(store, :stdin, 1) ==
               {:error, "ack_output expects :stdout or :stderr, got: :stdin"}

      assert Wasmex.Wasi.ack_output(store, :stdout, 1.5) ==
               {:error, "ack_output expects a non-negative number of bytes, got: 1.5"}
    end
  end

  describe "output order" do
    test "output written before an import callback reaches its pipe before the callback runs" do
      {:ok, pipe} = Pipe.new()
      test_pid = self()
      peek = fn _context -> send(test_pid, {:seen, contents(pipe)}) && nil end
      %{pid: pid} = writer([stdout: pipe], peek)
      assert Wasmex.call_function(pid, :write_then_call, []) == {:ok, []}
      assert_receive {:seen, "before"}
    end

    test "output written before a stdin read arrives while the read waits" do
      %{pid: pid, store: store} = writer(stdin: :messages, stdout: {:messages, self()})
      task = Task.async(fn -> Wasmex.call_function(pid, :write_then_read, [], 10_000) end)
      assert_receive {:wasmex_stdout, _, "before"}, 5_000
      assert Task.yield(task, 0) == nil
      :ok = Wasmex.Wasi.write_stdin(store, "abc")
      assert Task.await(task) == {:ok, [3]}
    end

    test "many small writes arrive whole, in order, before the call's reply" do
      %{pid: pid, store: store} = writer(stdout: {:messages, self()})
      assert Wasmex.call_function(pid, :write, [1, 20_000, 3]) == {:ok, [20_000, 0]}
      assert take_output(store, true, 0) == 60_000
    end
  end
end
