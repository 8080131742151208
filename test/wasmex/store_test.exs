defmodule Wasmex.StoreTest do
  use ExUnit.Case, async: true

  alias Wasmex.{Store, StoreOrCaller}

  describe "new/0,1,2" do
    test "without an engine, each store gets its own host process" do
      {:ok, a} = Store.new()
      {:ok, b} = Store.new()
      assert %StoreOrCaller{caller_id: nil} = a
      refute a.host == b.host
      refute Wasmex.Host.os_pid(a.host) == Wasmex.Host.os_pid(b.host)
    end

    test "with an engine, stores share its host" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, a} = Store.new(nil, engine)
      {:ok, b} = Store.new(%Wasmex.StoreLimits{memory_size: 1_000_000}, engine)
      assert a.host == engine.host and b.host == engine.host
      refute a.store_id == b.store_id
    end

    test "refuses limits of the wrong shape" do
      assert {:error, "memory_size must be a non-negative integer" <> _} =
               Store.new(%Wasmex.StoreLimits{memory_size: -1})
    end

    test "a store's own host stops when the store is released, while its creator lives on" do
      {:ok, store} = Store.new()
      ref = Process.monitor(store.host)
      Store.release(store, self())
      assert_receive {:DOWN, ^ref, :process, _, :normal}
    end

    test "a store's own host stops when its last holder exits" do
      test_pid = self()

      holder =
        spawn(fn ->
          {:ok, store} = Store.new()
          send(test_pid, {:store, store})
          receive do: (:exit -> :ok)
        end)

      assert_receive {:store, store}
      ref = Process.monitor(store.host)
      send(holder, :exit)
      assert_receive {:DOWN, ^ref, :process, _, :normal}
    end
  end

  describe "new_wasi/1,2,3" do
    test "creates a store whose instances get WASI" do
      {:ok, store} = Store.new_wasi(%Wasmex.Wasi.WasiOptions{args: ["a"]})
      wat = ~s{(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))}
      {:ok, module} = Wasmex.Module.compile(store, wat)
      assert {:ok, _pid} = Wasmex.start_link(%{store: store, module: module})
    end

    test "refuses options longer than one message may carry, and the host goes on" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      too_long = TestHelper.filled(?a, Wasmex.Wire.max_frame() + 1)
      options = %Wasmex.Wasi.WasiOptions{args: [too_long]}

      assert {:error, "the request is " <> _} = Store.new_wasi(options, nil, engine)
      assert {:ok, %StoreOrCaller{}} = Store.new(nil, engine)
    end

    test "a plain store does not provide WASI imports" do
      {:ok, store} = Store.new()
      wat = ~s{(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))))}
      {:ok, module} = Wasmex.Module.compile(store, wat)
      assert {:error, message} = Wasmex.start_link(%{store: store, module: module})
      assert message =~ "wasi_snapshot_preview1::proc_exit"
    end
  end

  describe "release/1" do
    @counter ~s{(module (memory 1) (global $n (mut i32) (i32.const 0))
                 (func (export "touch") (result i32)
                   ;; Writes the whole first page, so that it is resident.
                   (local $i i32)
                   (loop $fill
                     (i32.store (local.get $i) (local.get $i))
                     (local.set $i (i32.add (local.get $i) (i32.const 4)))
                     (br_if $fill (i32.lt_u (local.get $i) (i32.const 65536))))
                   (global.set $n (i32.add (global.get $n) (i32.const 1)))
                   (global.get $n)))}

    test "stops the call running on the store, and refuses those waiting" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Store.new(nil, engine)
      test = self()
      started = {:fn, [], [], fn _context -> send(test, :spinning) end}
      wat = ~s{(module (import "env" "started" (func $started))
                 (func (export "spin") (call $started) (loop br 0)))}

      {:ok, pid} =
        Wasmex.start_link(%{bytes: wat, store: store, imports: %{env: %{started: started}}})

      spin = Task.async(fn -> Wasmex.call_function(pid, "spin", [], :infinity) end)
      assert_receive :spinning, 5_000
      assert Store.release(store) == :ok
      assert Task.await(spin) == {:error, "stopped: the store was released"}
    end

    test "frees the store now: its instance servers and later calls get a clear error" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, store} = Store.new(nil, engine)
      {:ok, module} = Wasmex.Module.compile(store, @counter)
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      assert Wasmex.call_function(pid, "touch", []) == {:ok, [1]}

      assert Store.release(store) == :ok
      assert {:error, "unknown store " <> _} = Wasmex.call_function(pid, "touch", [])
      assert {:error, "unknown store " <> _} = Wasmex.Instance.new(store, module, %{})
      assert {:error, "unknown store " <> _} = Store.release(store)
      # The engine serves its other stores.
      {:ok, other} = Store.new(nil, engine)
      {:ok, pid} = Wasmex.start_link(%{store: other, module: module})
      assert Wasmex.call_function(pid, "touch", []) == {:ok, [1]}
    end

    test "stops the host of a store made without an engine" do
      {:ok, store} = Store.new()
      ref = Process.monitor(store.host)
      assert Store.release(store) == :ok
      assert_receive {:DOWN, ^ref, :process, _, :normal}
      assert {:error, "unknown store " <> _} = Store.release(store)
    end

    test "refuses a caller" do
      {:ok, store} = Store.new()
      caller = %{store | caller_id: 1}
      assert {:error, "a caller cannot be released" <> _} = Store.release(caller)
    end

    # The loop of a long-lived process handling jobs, each in a store of its own: 3,000
    # rounds on an engine that holds 1,000 instances at once.
    test "lets one process go through 3,000 stores, with the port's memory back where it was" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      {:ok, first} = Store.new(nil, engine)
      {:ok, module} = Wasmex.Module.compile(first, @counter)
      :ok = Store.release(first)
      os_pid = Wasmex.Host.os_pid(engine.host)

      round = fn ->
        {:ok, store} = Store.new(nil, engine)
        {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
        {:ok, [1]} = Wasmex.call_function(pid, "touch", [])
        :ok = GenServer.stop(pid)
        :ok = Store.release(store)
      end

      for _ <- 1..200, do: round.()
      warm = resident_kb(os_pid)
      for _ <- 1..2_800, do: round.()
      # 3,000 stores of one touched page each kept alive would be 190 MB and more.
      assert resident_kb(os_pid) - warm < 8_000
    end

    defp resident_kb(os_pid) do
      [kb] =
        Regex.run(~r/VmRSS:\s+(\d+) kB/, File.read!("/proc/#{os_pid}/status"),
          capture: :all_but_first
        )

      String.to_integer(kb)
    end
  end

  describe "the resource and reference fields" do
    test "name where the store lives" do
      {:ok, store} = Store.new()
      assert %StoreOrCaller{resource: {host, id}, reference: ref} = store
      assert host == store.host and id == store.store_id and is_reference(ref)
    end
  end
end

defmodule Wasmex.StoreWarningTest do
  # Not async: the limit is application environment, read by every store's creation.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Wasmex.Store

  describe "the :stores_per_process_warning limit" do
    setup do
      previous = Application.get_env(:wasmex, :stores_per_process_warning)
      Application.put_env(:wasmex, :stores_per_process_warning, 3)

      on_exit(fn ->
        if previous,
          do: Application.put_env(:wasmex, :stores_per_process_warning, previous),
          else: Application.delete_env(:wasmex, :stores_per_process_warning)
      end)
    end

    test "logs a warning once a process holds more stores than the limit, not for released ones" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      new_store = fn -> elem(Store.new(nil, engine), 1) end
      released = for _ <- 1..5, do: new_store.()
      Enum.each(released, &Store.release/1)

      quiet = capture_log(fn -> for _ <- 1..3, do: new_store.() end)
      refute quiet =~ "Wasmex stores"

      log = capture_log(fn -> new_store.() end)
      assert log =~ "holds 4 Wasmex stores"
      assert log =~ "Wasmex.Store.release/1"
      # Once per crossing, not at every store after it.
      refute capture_log(fn -> new_store.() end) =~ "Wasmex stores"
    end
  end
end
