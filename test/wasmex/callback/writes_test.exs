defmodule Wasmex.Callback.WritesTest do
  use ExUnit.Case, async: true

  alias Wasmex.Callback.Writes
  alias Wasmex.Memory

  # `run(ptr)` calls the import `env.fill(ptr)`, then returns the byte at `ptr`;
  # `grow_and_run(ptr)` grows the memory by a page first. One page to start with.
  @wat """
  (module
    (import "env" "fill" (func $fill (param i32)))
    (memory (export "memory") 1)
    (func (export "run") (param i32) (result i32)
      local.get 0 call $fill
      local.get 0 i32.load8_u)
    (func (export "grow_and_run") (param i32) (result i32)
      i32.const 1 memory.grow drop
      local.get 0 call $fill
      local.get 0 i32.load8_u))
  """

  # An instance whose `fill` runs `fun.(context, ptr)` in the callback's process.
  defp start(fun) do
    imports = %{env: %{fill: {:fn, [:i32], [], fn context, ptr -> fun.(context, ptr) end}}}
    {:ok, pid} = Wasmex.start_link(%{bytes: @wat, imports: imports})
    pid
  end

  # Reports to the test process what `Writes.write/4` did with a one-byte write of 42.
  defp reporting(test) do
    fn %{caller: caller, memory: memory}, ptr ->
      send(test, {:route, Writes.write(caller, memory, ptr, <<42>>)})
      nil
    end
  end

  describe "write/4" do
    test "sends a write below the memory's declared minimum without waiting" do
      pid = start(reporting(self()))

      assert {Wasmex.call_function(pid, "run", [100]), receive(do: ({:route, r} -> r))} ==
               {{:ok, [42]}, :ok}
    end

    test "leaves a write past what the memory surely reaches to the usual route" do
      pid = start(reporting(self()))
      {:ok, _} = Wasmex.call_function(pid, "grow_and_run", [70_000])
      assert_received {:route, :usual}
    end

    test "leaves a write through a store, not a caller, to the usual route" do
      pid = start(fn _context, _ptr -> nil end)
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      assert Writes.write(store, memory, 0, <<1>>) == :usual
    end

    test "leaves a write from a process other than the callback's to the usual route" do
      test = self()

      pid =
        start(fn %{caller: caller, memory: memory}, ptr ->
          task = Task.async(fn -> Writes.write(caller, memory, ptr, <<42>>) end)
          send(test, {:route, Task.await(task)})
          nil
        end)

      {:ok, _} = Wasmex.call_function(pid, "run", [100])
      assert_received {:route, :usual}
    end
  end

  describe "reached/3" do
    test "a write that went the usual route raises the floor to its end" do
      test = self()

      pid =
        start(fn %{caller: caller, memory: memory}, ptr ->
          before = Writes.write(caller, memory, ptr, <<42>>)
          :ok = Memory.write_binary(caller, memory, ptr, <<7>>)
          send(test, {:routes, before, Writes.write(caller, memory, ptr, <<42>>)})
          nil
        end)

      {:ok, [42]} = Wasmex.call_function(pid, "grow_and_run", [70_000])
      assert_received {:routes, :usual, :ok}
    end

    test "the raised floor holds for the instance's next callbacks" do
      test = self()

      pid =
        start(fn %{caller: caller, memory: memory}, ptr ->
          send(test, {:route, Writes.write(caller, memory, ptr, <<42>>)})
          if ptr == 70_000, do: Memory.write_binary(caller, memory, ptr, <<7>>)
          nil
        end)

      {:ok, _} = Wasmex.call_function(pid, "grow_and_run", [70_000])
      {:ok, _} = Wasmex.call_function(pid, "run", [70_000])
      assert_received {:route, :usual}
      assert_received {:route, :ok}
    end
  end

  describe "Memory.write_binary/4 inside a callback" do
    test "a write that went without waiting is read back through the caller" do
      test = self()

      pid =
        start(fn %{caller: caller, memory: memory}, ptr ->
          :ok = Memory.write_binary(caller, memory, ptr, "hello")
          send(test, {:read, Memory.read_binary(caller, memory, ptr, 5)})
          nil
        end)

      {:ok, [?h]} = Wasmex.call_function(pid, "run", [100])
      assert_received {:read, "hello"}
    end

    test "a write out of bounds still gets its error" do
      test = self()

      pid =
        start(fn %{caller: caller, memory: memory}, _ptr ->
          send(test, {:write, Memory.write_binary(caller, memory, 65_535, <<1, 2>>)})
          nil
        end)

      {:ok, _} = Wasmex.call_function(pid, "run", [0])
      assert_received {:write, {:error, "out of bounds memory access"}}
    end
  end
end
