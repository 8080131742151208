defmodule Wasmex.HostTest do
  use ExUnit.Case, async: true

  alias Wasmex.{Host, Store, StoreOrCaller, Wire}

  @sum ~s{(module (func (export "sum") (param i32 i32) (result i32)
            (i32.add (local.get 0) (local.get 1))))}

  setup do
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, store} = Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(store, @sum)
    %{host: engine.host, engine: engine, module: module}
  end

  describe "new_store/4" do
    test "numbers the stores itself; each is made in the port before its first request",
         %{host: host, module: module} do
      ids =
        for _ <- 1..20 do
          {:ok, id} = Host.new_store(host, nil, nil, self())
          # Sent at once: the port makes the store before it serves this.
          {:ok, pid} = Wasmex.start_link(%{store: StoreOrCaller.new(host, id), module: module})
          assert {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
          GenServer.stop(pid)
          id
        end

      assert ids == Enum.sort(Enum.uniq(ids))
    end

    test "a store the port cannot make: each request on it says why, until it is dropped",
         %{host: host, module: module} do
      # Limits the host server would have waited for, sent as they are: the port refuses.
      id = 1_000_000
      Host.notify(host, Wire.store_open(id, %{memory_size: -1}, nil))
      store = StoreOrCaller.new(host, id)
      why = "the store could not be created: memory_size must be a non-negative integer, got: -1"

      assert Wasmex.start_link(%{store: store, module: module}) == {:error, why}
      assert StoreOrCaller.get_fuel(store) == {:error, why}
      assert Host.request(host, Wire.store_ready(id)) == {:error, why}

      Host.notify(host, Wire.store_drop(id))
      assert Host.request(host, Wire.store_ready(id)) == {:error, "unknown store #{id}"}
    end

    test "a store with WASI is answered once made: its creator gets the port's reason, and the port forgets it",
         %{host: host} do
      assert {:error, reason} = Host.new_store(host, nil, %{args: :not_a_list}, self())
      refute reason =~ "could not be created"
      assert reason =~ "args"

      {:ok, next} = Host.new_store(host, nil, nil, self())
      failed = next - 1
      assert Host.request(host, Wire.store_ready(failed)) == {:error, "unknown store #{failed}"}
    end

    test "limits that are not plain counts are waited for: the creator gets the port's reason",
         %{engine: engine} do
      assert {:error, "memory_size must be a non-negative integer" <> _} =
               Store.new(%Wasmex.StoreLimits{memory_size: -1}, engine)

      assert {:ok, _} = Store.new(%Wasmex.StoreLimits{memory_size: 65_536, instances: 2}, engine)
    end
  end

  describe "free_store/2" do
    test "a store freed before its first request never reaches the port", %{host: host} do
      {:ok, id} = Host.new_store(host, nil, nil, self())
      assert Map.has_key?(:sys.get_state(host).opening, id)
      assert Host.free_store(host, id) == :ok
      state = :sys.get_state(host)
      refute Map.has_key?(state.opening, id)
      assert state.deferred == []
      assert Host.request(host, Wire.store_ready(id)) == {:error, "unknown store #{id}"}
    end

    test "a drop goes ahead of the next request, or alone once the drop timer runs out",
         %{host: host, module: module} do
      {:ok, id} = Host.new_store(host, nil, nil, self())
      store = StoreOrCaller.new(host, id)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      GenServer.stop(pid)
      :erlang.trace(host, true, [:receive])
      assert Host.free_store(host, id) == :ok
      # No request follows: the timer writes it.
      assert_receive {:trace, ^host, :receive, :write_deferred}
      assert :sys.get_state(host).deferred == []
      :erlang.trace(host, false, [:receive])
      assert Host.request(host, Wire.store_ready(id)) == {:error, "unknown store #{id}"}

      # Freed, then used at once: the drop is written first.
      {:ok, id} = Host.new_store(host, nil, nil, self())
      {:ok, pid} = Wasmex.start_link(%{store: StoreOrCaller.new(host, id), module: module})
      GenServer.stop(pid)
      assert Host.free_store(host, id) == :ok
      assert Host.request(host, Wire.store_ready(id)) == {:error, "unknown store #{id}"}
    end
  end

  describe "notify/2" do
    test "an idle instance's stop is written with the next request: a call after it is refused",
         %{host: host, module: module} do
      {:ok, id} = Host.new_store(host, nil, nil, self())
      store = StoreOrCaller.new(host, id)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      instance = :sys.get_state(pid).instance
      GenServer.stop(pid)
      ref = make_ref()
      Wasmex.Instance.call_exported_function(store, instance, "sum", [1, 2], ref)

      assert_receive {:returned_function_call, {:error, "stopped: the instance's server stopped"},
                      ^ref}
    end

    test "with no request after it, the stop is written alone by the defer timer",
         %{host: host, module: module} do
      {:ok, id} = Host.new_store(host, nil, nil, self())
      {:ok, pid} = Wasmex.start_link(%{store: StoreOrCaller.new(host, id), module: module})
      :erlang.trace(host, true, [:receive])
      GenServer.stop(pid)
      assert_receive {:trace, ^host, :receive, :write_deferred}
      :erlang.trace(host, false, [:receive])
      assert :sys.get_state(host).deferred == []
    end
  end

  describe "request_holding/4" do
    test "makes the holder hold the store with the request: the store lives as long as it does",
         %{host: host, engine: engine} do
      {:ok, store} = Store.new(nil, engine)
      holder = spawn(fn -> receive do: (:exit -> :ok) end)
      request = Wire.fuel_get(StoreOrCaller.context(store))

      assert {:error, "Could not get fuel" <> _} =
               Host.request_holding(host, request, store.store_id, holder)

      Store.release(store, self())
      assert {:error, "Could not get fuel" <> _} = StoreOrCaller.get_fuel(store)

      # Once the host has the holder's :DOWN in its mailbox, what is sent next comes after.
      :erlang.trace(host, true, [:receive])
      send(holder, :exit)
      assert_receive {:trace, ^host, :receive, {:DOWN, _, :process, ^holder, _}}
      :erlang.trace(host, false, [:receive])
      assert {:error, "unknown store" <> _} = StoreOrCaller.get_fuel(store)
    end
  end
end
