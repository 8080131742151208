defmodule Wasmex.MemoryTest do
  use ExUnit.Case, async: true

  alias Wasmex.Memory

  # Large enough to go through a host's shared buffer.
  @large 300_000

  setup do
    {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
    {:ok, store} = Wasmex.store(pid)
    {:ok, memory} = Wasmex.memory(pid)
    %{pid: pid, store: store, memory: memory}
  end

  describe "from_instance/2" do
    test "finds the exported memory", %{store: store, pid: pid} do
      instance = :sys.get_state(pid).instance
      assert {:ok, %Memory{name: "memory"}} = Memory.from_instance(store, instance)
    end

    test "fills the resource and reference fields", %{store: store, pid: pid} do
      instance = :sys.get_state(pid).instance
      {:ok, memory} = Memory.from_instance(store, instance)
      assert %Memory{resource: {id, "memory"}, reference: ref} = memory
      assert id == instance.id and is_reference(ref)
    end

    test "of several exported memories, finds the first by name" do
      wat = ~s{(module (memory (export "zeta") 1) (memory (export "beta") 2) (func (export "f")))}
      {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      {:ok, store} = Wasmex.store(pid)

      assert {:ok, %Memory{name: "beta"}} =
               Memory.from_instance(store, :sys.get_state(pid).instance)
    end

    test "errors when the module exports no memory" do
      {:ok, pid} = Wasmex.start_link(%{bytes: "(module)"})
      {:ok, store} = Wasmex.store(pid)

      assert Memory.from_instance(store, :sys.get_state(pid).instance) ==
               {:error, "The WebAssembly module has no exported memory."}
    end
  end

  describe "size/2" do
    test "is in bytes", %{store: store, memory: memory} do
      assert Memory.size(store, memory) == 17 * 65_536
    end
  end

  describe "grow/3" do
    test "returns the previous size in pages", %{store: store, memory: memory} do
      assert Memory.grow(store, memory, 3) == 17
      assert Memory.grow(store, memory, 1) == 20
      assert Memory.size(store, memory) == 21 * 65_536
    end

    test "fails past the maximum" do
      {:ok, pid} = Wasmex.start_link(%{bytes: ~s{(module (memory (export "memory") 1 2))}})
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      assert {:error, "Failed to grow the memory: " <> _} = Memory.grow(store, memory, 2)
      assert Memory.grow(store, memory, 1) == 1
    end
  end

  describe "get_byte/3 and set_byte/4" do
    test "read and write single bytes", %{store: store, memory: memory} do
      assert Memory.get_byte(store, memory, 0) == 0
      assert Memory.set_byte(store, memory, 7, 255) == :ok
      assert Memory.get_byte(store, memory, 7) == 255
    end

    test "report out-of-bounds indexes", %{store: store, memory: memory} do
      assert Memory.get_byte(store, memory, 999_999_999_999) ==
               {:error, "out of bounds memory access"}

      assert Memory.set_byte(store, memory, 17 * 65_536, 1) ==
               {:error, "out of bounds memory access"}
    end

    test "raise on a negative index or a value that is not a byte", %{
      store: store,
      memory: memory
    } do
      assert_raise ArgumentError, fn -> Memory.get_byte(store, memory, -42) end
      assert_raise ArgumentError, fn -> Memory.set_byte(store, memory, 0, 256) end
    end
  end

  describe "read_binary/4 and write_binary/4" do
    test "round-trip bytes without adding a NUL", %{store: store, memory: memory} do
      :ok = Memory.write_binary(store, memory, 0, "hello")
      :ok = Memory.write_binary(store, memory, 1, "abc")
      assert Memory.read_binary(store, memory, 0, 5) == "habco"
      assert Memory.read_binary(store, memory, 8, 0) == ""
    end

    test "report ranges past the end", %{store: store, memory: memory} do
      size = Memory.size(store, memory)

      assert Memory.read_binary(store, memory, size - 2, 3) ==
               {:error, "out of bounds memory access"}

      assert Memory.write_binary(store, memory, size - 1, "ab") ==
               {:error, "out of bounds memory access"}

      assert Memory.read_binary(store, memory, size - 2, 2) == <<0, 0>>
    end

    test "move tens of MiB in one call" do
      {:ok, pid} = Wasmex.start_link(%{bytes: ~s{(module (memory (export "memory") 1024))}})
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      data = :crypto.strong_rand_bytes(48 * 1024 * 1024)
      assert Memory.write_binary(store, memory, 1_000, data) == :ok
      assert Memory.read_binary(store, memory, 1_000, byte_size(data)) == data
    end

    test "a write of more than 4 MiB past the end changes nothing" do
      {:ok, pid} = Wasmex.start_link(%{bytes: ~s{(module (memory (export "memory") 100))}})
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      size = Memory.size(store, memory)
      data = :binary.copy(<<9>>, 5 * 1024 * 1024)

      assert Memory.write_binary(store, memory, size - 1024 * 1024, data) ==
               {:error, "out of bounds memory access"}

      assert Memory.read_binary(store, memory, size - 1024 * 1024, 1024 * 1024) ==
               :binary.copy(<<0>>, 1024 * 1024)
    end

    test "a write of more than 4 MiB from many processes at once each land whole" do
      {:ok, pid} = Wasmex.start_link(%{bytes: ~s{(module (memory (export "memory") 400))}})
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      # Three 6 MiB writes at once: their parts interleave in the host, staged apart.
      writes =
        for i <- 0..2, do: {i * 6 * 1024 * 1024, :crypto.strong_rand_bytes(6 * 1024 * 1024)}

      writes
      |> Enum.map(fn {at, data} ->
        Task.async(fn -> Memory.write_binary(store, memory, at, data) end)
      end)
      |> Enum.each(fn task -> assert Task.await(task) == :ok end)

      for {at, data} <- writes,
          do: assert(Memory.read_binary(store, memory, at, byte_size(data)) == data)
    end

    test "a megabyte goes through the host's shared buffer and reads back", context do
      %{store: store, memory: memory} = context
      assert [_] = :ets.lookup(Wasmex.Host.Bulk, store.host)
      data = :crypto.strong_rand_bytes(1024 * 1024)
      assert Memory.write_binary(store, memory, 7, data) == :ok
      assert Memory.read_binary(store, memory, 7, byte_size(data)) == data
    end

    test "a large write past the end is refused, through the shared buffer too", context do
      %{store: store, memory: memory} = context
      size = Memory.size(store, memory)
      data = :binary.copy(<<1>>, 512 * 1024)

      assert Memory.write_binary(store, memory, size - 1024, data) ==
               {:error, "out of bounds memory access"}

      assert Memory.read_binary(store, memory, size - 1024, 1024) == :binary.copy(<<0>>, 1024)
    end

    test "large writes from many processes at once each land whole", context do
      %{store: store, memory: memory} = context
      # Four 256 KiB writes to separate places, at once: one at a time gets the buffer,
      # the others go through the pipe.
      chunks = for i <- 0..3, do: {i * 262_144, :binary.copy(<<i + 1>>, 262_144)}

      chunks
      |> Enum.map(fn {at, data} ->
        Task.async(fn -> Memory.write_binary(store, memory, at, data) end)
      end)
      |> Enum.each(fn task -> assert Task.await(task) == :ok end)

      for {at, data} <- chunks, do: assert(Memory.read_binary(store, memory, at, 262_144) == data)
    end

    test "a large read is copied into the host's shared buffer and read from there", context do
      %{store: store, memory: memory} = context
      data = :crypto.strong_rand_bytes(512 * 1024)
      # Written in pieces below the buffer's minimum, so only the read uses the buffer.
      for at <- 0..(512 * 1024 - 1)//65_536,
          do: :ok = Memory.write_binary(store, memory, 3 + at, binary_part(data, at, 65_536))

      assert Memory.read_binary(store, memory, 3, byte_size(data)) == data
      [{_host, path, _size, _lock}] = :ets.lookup(Wasmex.Host.Bulk, store.host)
      assert binary_part(File.read!(path), 0, byte_size(data)) == data
    end

    test "a large read past the end is refused, through the shared buffer too", context do
      %{store: store, memory: memory} = context
      size = Memory.size(store, memory)

      assert Memory.read_binary(store, memory, size - 1024, 512 * 1024) ==
               {:error, "out of bounds memory access"}

      assert byte_size(Memory.read_binary(store, memory, size - 512 * 1024, 512 * 1024)) ==
               512 * 1024
    end

    test "large reads from many processes at once each get their own bytes", context do
      %{store: store, memory: memory} = context
      chunks = for i <- 0..3, do: {i * 262_144, :binary.copy(<<i + 1>>, 262_144)}
      for {at, data} <- chunks, do: :ok = Memory.write_binary(store, memory, at, data)

      chunks
      |> Enum.map(fn {at, data} ->
        {data, Task.async(fn -> Memory.read_binary(store, memory, at, 262_144) end)}
      end)
      |> Enum.each(fn {data, task} -> assert Task.await(task) == data end)
    end

    test "a transfer killed while it holds the buffer leaves it to later ones", context do
      %{store: store, memory: memory} = context
      Application.put_env(:wasmex, :bulk_reclaim_after, 0)
      on_exit(fn -> Application.delete_env(:wasmex, :bulk_reclaim_after) end)
      [{_host, _path, _size, lock}] = :ets.lookup(Wasmex.Host.Bulk, store.host)
      killed = fn _length -> Process.exit(self(), :kill) end

      {_pid, ref} =
        spawn_monitor(fn ->
          Wasmex.Host.Bulk.write(store.host, :binary.copy(<<1>>, @large), killed)
        end)

      assert_receive {:DOWN, ^ref, :process, _, :killed}
      # Held by the dead process: this write goes through the pipe and asks the host to
      # take the buffer back, which it does at once (no request of the dead one is left).
      :ok = Memory.write_binary(store, memory, 0, :binary.copy(<<2>>, @large))
      _ = :sys.get_state(store.host)
      _ = :sys.get_state(store.host)
      assert :atomics.get(lock, 1) == 0
    end

    test "a transfer killed with its request still in the port keeps the buffer until answered",
         context do
      %{store: store, memory: memory} = context
      Application.put_env(:wasmex, :bulk_reclaim_after, 0)
      on_exit(fn -> Application.delete_env(:wasmex, :bulk_reclaim_after) end)
      [{_host, _path, _size, lock}] = :ets.lookup(Wasmex.Host.Bulk, store.host)
      test_pid = self()

      # A call that waits in an import callback until told to go on: requests for the
      # store itself wait for the call to end.
      waits = fn _context ->
        send(test_pid, {:call_waiting, self()})
        receive do: (:go -> nil)
      end

      {:ok, waiting} =
        Wasmex.start_link(%{
          store: store,
          bytes: ~s{(module (import "env" "wait" (func $w)) (func (export "run") call $w))},
          imports: %{env: %{wait: {:fn, [], [], waits}}}
        })

      call = Task.async(fn -> Wasmex.call_function(waiting, "run", []) end)
      assert_receive {:call_waiting, callback}
      args = fn length -> {store.store_id, memory.instance_id, memory.name, 0, length} end

      sends_and_dies = fn length ->
        Wasmex.Host.cast_request(
          store.host,
          :memory_write_bulk,
          args.(length),
          {:send, self(), :w}
        )

        Process.exit(self(), :kill)
      end

      {holder, ref} =
        spawn_monitor(fn ->
          Wasmex.Host.Bulk.write(store.host, :binary.copy(<<1>>, @large), sends_and_dies)
        end)

      assert_receive {:DOWN, ^ref, :process, _, :killed}
      token = :atomics.get(lock, 1)
      Wasmex.Host.reclaim_bulk(store.host, token, holder)
      _ = :sys.get_state(store.host)
      _ = :sys.get_state(store.host)
      # The port has yet to copy the bytes out of the buffer: it stays the dead holder's.
      held_while_pending = :atomics.get(lock, 1)

      send(callback, :go)
      {:ok, []} = Task.await(call)
      # Served after the write (same store): the write has been answered.
      _ = Memory.size(store, memory)
      _ = :sys.get_state(store.host)
      _ = :sys.get_state(store.host)

      assert {held_while_pending, :atomics.get(lock, 1), Memory.get_byte(store, memory, 0)} ==
               {token, 0, 1}
    end

    test "a host whose buffer cannot be opened gets large reads and writes through the pipe",
         context do
      %{store: store, memory: memory} = context
      [{host, _path, size, lock}] = :ets.lookup(Wasmex.Host.Bulk, store.host)
      :ets.insert(Wasmex.Host.Bulk, {host, "/nonexistent/wasmex-bulk", size, lock})
      data = :crypto.strong_rand_bytes(300_000)
      assert Memory.write_binary(store, memory, 0, data) == :ok
      assert Memory.read_binary(store, memory, 0, byte_size(data)) == data
    end

    test "a read longer than one message may carry comes back whole, in parts" do
      %{store: store, memory: memory} = memory_of_pages(17_000)
      part = 256 * 1024 * 1024
      length = Wasmex.Wire.max_frame() + 2
      :ok = Memory.write_binary(store, memory, part - 1, "ab")
      :ok = Memory.write_binary(store, memory, length - 1, "z")
      read = Memory.read_binary(store, memory, 0, length)

      assert {byte_size(read), binary_part(read, part - 1, 2), :binary.last(read)} ==
               {length, "ab", ?z}
    end

    test "a write of more than 256 MiB lands whole, in parts" do
      %{store: store, memory: memory} = memory_of_pages(5_000)
      part = 256 * 1024 * 1024

      data =
        IO.iodata_to_binary([TestHelper.filled(?x, part - 1), "ab", TestHelper.filled(?y, 1000)])

      assert Memory.write_binary(store, memory, 1, data) == :ok

      assert Memory.read_binary(store, memory, 0, 2) <>
               Memory.read_binary(store, memory, part, 2) <>
               Memory.read_binary(store, memory, part + 1001, 2) == <<0, "xaby", 0>>
    end

    test "a read in parts past the end is refused" do
      %{store: store, memory: memory} = memory_of_pages(5_000)
      size = Memory.size(store, memory)

      assert Memory.read_binary(store, memory, 0, size + 1) ==
               {:error, "out of bounds memory access"}
    end

    test "a length no memory can hold is refused at once, however many parts it names", %{
      store: store,
      memory: memory
    } do
      # 2^64 - 65,530 bytes from 65,535 would be 2^36 parts of 256 MiB: listing them would
      # hang this test and take gigabytes.
      assert Memory.read_binary(store, memory, 65_535, 2 ** 64 - 65_530) ==
               {:error, "out of bounds memory access"}
    end

    test "a range that ends past 2^64 bytes is out of bounds", %{store: store, memory: memory} do
      assert Memory.read_binary(store, memory, 10, 2 ** 64) ==
               {:error, "out of bounds memory access"}
    end

    test "a write in parts that does not fit changes nothing" do
      %{store: store, memory: memory} = memory_of_pages(5_000)
      size = Memory.size(store, memory)
      data = TestHelper.filled(?x, 300_000_000)

      assert Memory.write_binary(store, memory, size - 299_999_999, data) ==
               {:error, "out of bounds memory access"}

      assert Memory.read_binary(store, memory, size - 299_999_999, 1) == <<0>>
    end
  end

  defp memory_of_pages(pages) do
    {:ok, pid} = Wasmex.start_link(%{bytes: ~s{(module (memory (export "memory") #{pages}))}})
    {:ok, store} = Wasmex.store(pid)
    {:ok, memory} = Wasmex.memory(pid)
    %{store: store, memory: memory}
  end

  describe "read_string/4" do
    test "reads the string a function returns a pointer to", %{
      pid: pid,
      store: store,
      memory: memory
    } do
      {:ok, [pointer]} = Wasmex.call_function(pid, "string", [])
      assert Memory.read_string(store, memory, pointer, 13) == "Hello, World!"
    end
  end
end
