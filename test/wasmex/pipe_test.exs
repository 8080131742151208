defmodule Wasmex.PipeTest do
  use ExUnit.Case, async: true

  alias Wasmex.Pipe

  setup do
    {:ok, pipe} = Pipe.new()
    %{pipe: pipe}
  end

  describe "new/0 and create/0" do
    test "make empty pipes", %{pipe: pipe} do
      {:ok, other} = Pipe.create()
      assert Pipe.size(pipe) == 0
      assert Pipe.read(other) == ""
    end

    test "fill the resource and reference fields", %{pipe: pipe} do
      assert %Pipe{resource: pid, reference: ref} = pipe
      assert pid == pipe.pid and is_reference(ref)
    end

    test "a pipe ends with the process that created it" do
      test_pid = self()
      owner = spawn(fn -> send(test_pid, Pipe.new()) && receive(do: (:exit -> :ok)) end)
      assert_receive {:ok, %Pipe{pid: pid}}
      ref = Process.monitor(pid)
      send(owner, :exit)
      assert_receive {:DOWN, ^ref, :process, ^pid, :normal}
    end
  end

  describe "new/1" do
    test "without options, a program may write 4 MiB into a pipe", %{pipe: pipe} do
      assert Pipe.capacity(pipe) == 4 * 1024 * 1024
      assert Pipe.default_capacity() == 4 * 1024 * 1024
    end

    test "capacity: sets where a program's writes stop, counted from the cursor" do
      {:ok, pipe} = Pipe.new(capacity: 3)
      assert Pipe.room(pipe) == {:ok, 3}
      Pipe.write(pipe, "he")
      assert Pipe.room(pipe) == {:ok, 1}
    end

    test "bad options are refused with a reason" do
      for bad <- [0, -1, 1.5, :infinity, "10", nil] do
        assert Pipe.new(capacity: bad) ==
                 {:error,
                  "pipe capacity must be a positive integer (bytes), got: #{inspect(bad)}"}
      end

      assert Pipe.new(capacity: 2 ** 64) ==
               {:error,
                "pipe capacity must be at most 18446744073709551615 bytes, got: 18446744073709551616"}

      assert Pipe.new(capacty: 10) == {:error, "unknown pipe option :capacty (known: :capacity)"}

      assert Pipe.new(%{capacity: 10}) ==
               {:error, "pipe options must be a keyword list, got: %{capacity: 10}"}
    end
  end

  describe "write/2" do
    test "keeps the host's data whole, past the capacity that bounds a program's writes" do
      {:ok, pipe} = Pipe.new(capacity: 5)
      assert Pipe.write(pipe, "abcdefgh") == {:ok, 8}
      Pipe.seek(pipe, 0)
      assert Pipe.read(pipe) == "abcdefgh"
    end

    test "writes at the cursor, overwriting and extending", %{pipe: pipe} do
      assert Pipe.write(pipe, "hello") == {:ok, 5}
      Pipe.seek(pipe, 1)
      assert Pipe.write(pipe, "EL") == {:ok, 2}
      Pipe.seek(pipe, 0)
      assert Pipe.read(pipe) == "hELlo"
    end
  end

  describe "close/1" do
    test "ends the pipe's process", %{pipe: pipe} do
      ref = Process.monitor(pipe.pid)
      assert Pipe.close(pipe) == :ok
      assert_receive {:DOWN, ^ref, :process, _, :normal}
    end

    test "closing a closed pipe is :ok", %{pipe: pipe} do
      Pipe.close(pipe)
      assert Pipe.close(pipe) == :ok
    end
  end

  describe "read/1" do
    test "reads from the cursor to the end and advances", %{pipe: pipe} do
      Pipe.write(pipe, "abc")
      Pipe.seek(pipe, 1)
      assert Pipe.read(pipe) == "bc"
      assert Pipe.read(pipe) == ""
    end
  end

  describe "capacity/1" do
    test "is what the pipe was made with" do
      {:ok, pipe} = Pipe.new(capacity: 123)
      assert Pipe.capacity(pipe) == 123
    end
  end

  describe "seek/2 and size/1" do
    test "seek past the end clamps; size ignores the cursor", %{pipe: pipe} do
      Pipe.write(pipe, "abc")
      assert Pipe.seek(pipe, 99) == :ok
      assert Pipe.read(pipe) == ""
      assert Pipe.size(pipe) == 3
    end
  end

  describe "set_len/2" do
    test "truncates and extends with zeros", %{pipe: pipe} do
      Pipe.write(pipe, "hello")
      assert Pipe.set_len(pipe, 7) == :ok
      Pipe.seek(pipe, 0)
      assert Pipe.read(pipe) == "hello\0\0"
      assert Pipe.set_len(pipe, -1) == :error
    end

    test "refuses a length past the capacity; truncating makes room" do
      {:ok, pipe} = Pipe.new(capacity: 4)
      {:ok, 4} = Pipe.write(pipe, "full")
      assert Pipe.set_len(pipe, 5) == :error
      assert Pipe.set_len(pipe, 0) == :ok
      assert Pipe.write(pipe, "room") == {:ok, 4}
    end
  end
end
