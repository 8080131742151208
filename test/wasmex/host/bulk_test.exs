defmodule Wasmex.Host.BulkTest do
  @moduledoc """
  The host's shared buffer (`Wasmex.Host.Bulk`) stays with a transfer until the port is
  done with it, also when the caller stops waiting first.
  """
  # Not async: the test shortens the application's request timeout.
  use ExUnit.Case, async: false

  alias Wasmex.Memory

  @mib 1024 * 1024

  # A store whose call waits in an import callback until the callback gets `:go`: the
  # store's own requests queue behind it meanwhile.
  defp busy_store(engine) do
    test = self()

    waits = fn _context ->
      send(test, {:call_waiting, self()})
      receive do: (:go -> nil)
    end

    {:ok, store} = Wasmex.Store.new(nil, engine)

    {:ok, pid} =
      Wasmex.start_link(%{
        store: store,
        bytes:
          ~s{(module (import "env" "wait" (func $w)) (memory (export "memory") 32) (func (export "run") call $w))},
        imports: %{env: %{wait: {:fn, [], [], waits}}}
      })

    {:ok, memory} = Wasmex.memory(pid)
    call = Task.async(fn -> Wasmex.call_function(pid, "run", [], 60_000) end)
    assert_receive {:call_waiting, callback}
    %{store: store, memory: memory, call: call, callback: callback}
  end

  describe "a transfer whose caller stopped waiting" do
    setup do
      Application.put_env(:wasmex, :request_timeout, 300)
      on_exit(fn -> Application.delete_env(:wasmex, :request_timeout) end)
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      %{engine: engine}
    end

    test "keeps the buffer until the port has used it: another store's write cannot change it",
         %{engine: engine} do
      busy = busy_store(engine)
      mine = :binary.copy("A", @mib)

      assert {:error, "the Wasm host did not answer within 300 ms"} =
               Memory.write_binary(busy.store, busy.memory, 0, mine)

      # Another tenant's write, while the first is still queued in the port.
      {:ok, other_store} = Wasmex.Store.new(nil, engine)

      {:ok, other} =
        Wasmex.start_link(%{bytes: ~s{(module (memory (export "memory") 32))}, store: other_store})

      {:ok, other_memory} = Wasmex.memory(other)

      :ok =
        Memory.write_binary(other_store, other_memory, 0, :binary.copy("SECRET-B", div(@mib, 8)))

      send(busy.callback, :go)
      {:ok, []} = Task.await(busy.call)
      assert Memory.read_binary(busy.store, busy.memory, 0, 8) == "AAAAAAAA"
    end

    test "is freed by the host once the port has answered", %{engine: engine} do
      busy = busy_store(engine)
      [{_host, _path, _size, lock}] = :ets.lookup(Wasmex.Host.Bulk, busy.store.host)
      {:error, _} = Memory.write_binary(busy.store, busy.memory, 0, :binary.copy("A", @mib))
      held_while_queued = :atomics.get(lock, 1)
      send(busy.callback, :go)
      {:ok, []} = Task.await(busy.call)
      # Served after the write (same store): the write has been answered.
      _ = Memory.size(busy.store, busy.memory)
      _ = :sys.get_state(busy.store.host)
      assert {held_while_queued != 0, :atomics.get(lock, 1)} == {true, 0}
    end
  end
end
