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

  describe "write/2" do
    test "writes at the cursor, overwriting and extending", %{pipe: pipe} do
      assert Pipe.write(pipe, "hello") == {:ok, 5}
      Pipe.seek(pipe, 1)
      assert Pipe.write(pipe, "EL") == {:ok, 2}
      Pipe.seek(pipe, 0)
      assert Pipe.read(pipe) == "hELlo"
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
  end
end
