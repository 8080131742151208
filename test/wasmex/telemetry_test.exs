defmodule Wasmex.TelemetryTest do
  @moduledoc """
  The `:telemetry` events Wasmex emits (see `docs/telemetry.md`), observed through the
  test stand-in for `:telemetry` (`test/support/telemetry.ex`), whose handlers run in the
  emitting process and here send each event to the test process.
  """
  # Handlers are global: no other test may emit events while these count them.
  use ExUnit.Case, async: false
  doctest Wasmex.Telemetry

  alias Wasmex.{Instance, Module, Store}

  @wat ~s{(module
    (import "env" "add_one" (func $add_one (param i32) (result i32)))
    (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "via_import") (param i32) (result i32) local.get 0 call $add_one)
    (func (export "boom") unreachable)
    (func (export "spin") (loop $l br $l)))}

  @events [
    [:wasmex, :call, :start],
    [:wasmex, :call, :stop],
    [:wasmex, :call, :exception],
    [:wasmex, :call, :trap],
    [:wasmex, :call, :timeout],
    [:wasmex, :module, :compile, :start],
    [:wasmex, :module, :compile, :stop],
    [:wasmex, :module, :compile, :exception],
    [:wasmex, :instantiate, :start],
    [:wasmex, :instantiate, :stop],
    [:wasmex, :instantiate, :exception],
    [:wasmex, :component, :call, :start],
    [:wasmex, :component, :call, :stop],
    [:wasmex, :component, :call, :exception],
    [:wasmex, :component, :instantiate, :start],
    [:wasmex, :component, :instantiate, :stop],
    [:wasmex, :component, :instantiate, :exception],
    [:wasmex, :callback, :start],
    [:wasmex, :callback, :stop],
    [:wasmex, :callback, :exception],
    [:wasmex, :host, :start],
    [:wasmex, :host, :exit],
    [:wasmex, :span_test, :start],
    [:wasmex, :span_test, :stop],
    [:wasmex, :span_test, :exception],
    [:wasmex, :event_test]
  ]

  setup do
    id = {__MODULE__, make_ref()}
    test = self()

    :ok = :telemetry.attach_many(id, @events, &send(&4, {:event, &1, &2, &3}), test)

    on_exit(fn -> :telemetry.detach(id) end)
    :ok
  end

  defp imports(fun \\ fn _context, x -> x + 1 end),
    do: %{env: %{add_one: {:fn, [:i32], [:i32], fun}}}

  defp start_instance(imports \\ imports()) do
    {:ok, pid} = Wasmex.start_link(%{bytes: @wat, imports: imports})
    pid
  end

  defp assert_span_start(measurements, metadata) do
    assert is_integer(measurements.monotonic_time)
    assert is_integer(measurements.system_time)
    assert is_reference(metadata.telemetry_span_context)
    metadata.telemetry_span_context
  end

  defp assert_span_end(measurements, metadata, context) do
    assert is_integer(measurements.monotonic_time)
    assert is_integer(measurements.duration) and measurements.duration >= 0
    assert metadata.telemetry_span_context == context
  end

  describe "available?/1" do
    test "is true for a module with the :telemetry API and false otherwise" do
      assert Wasmex.Telemetry.available?(:telemetry)
      refute Wasmex.Telemetry.available?(:lists)
      refute Wasmex.Telemetry.available?(:no_such_module)
    end
  end

  describe "enabled?/0" do
    test "is true when :telemetry is present" do
      assert Wasmex.Telemetry.enabled?()
    end
  end

  describe "span/3" do
    test "emits :start and :stop with the result, and returns the result" do
      assert Wasmex.Telemetry.span([:span_test], %{a: 1}, fn -> :done end) == :done
      assert_receive {:event, [:wasmex, :span_test, :start], m, %{a: 1} = meta}
      context = assert_span_start(m, meta)
      assert_receive {:event, [:wasmex, :span_test, :stop], m, %{a: 1, result: :done} = meta}
      assert_span_end(m, meta, context)
    end

    test "emits :exception with kind, reason and stacktrace, and lets the exception go on" do
      assert_raise RuntimeError, "no", fn ->
        Wasmex.Telemetry.span([:span_test], %{a: 1}, fn -> raise "no" end)
      end

      assert_receive {:event, [:wasmex, :span_test, :start], _, %{telemetry_span_context: ctx}}
      assert_receive {:event, [:wasmex, :span_test, :exception], m, meta}
      assert_span_end(m, meta, ctx)
      assert %{a: 1, kind: :error, reason: %RuntimeError{message: "no"}} = meta
      assert is_list(meta.stacktrace)
      refute_received {:event, [:wasmex, :span_test, :stop], _, _}
    end
  end

  describe "event/2" do
    test "emits the event with system_time and monotonic_time" do
      assert Wasmex.Telemetry.event([:event_test], %{b: 2}) == :ok
      assert_receive {:event, [:wasmex, :event_test], m, %{b: 2}}
      assert Map.keys(m) |> Enum.sort() == [:monotonic_time, :system_time]
    end
  end

  describe "Wasmex.call_function/4" do
    test "is a [:wasmex, :call] span with the instance, function, timeout and result" do
      pid = start_instance()
      assert {:ok, [3]} = Wasmex.call_function(pid, :sum, [1, 2], 1_000)

      meta = %{instance: pid, function: "sum", timeout: 1_000}
      assert_receive {:event, [:wasmex, :call, :start], m, start}
      assert Map.take(start, [:instance, :function, :timeout]) == meta
      context = assert_span_start(m, start)
      assert_receive {:event, [:wasmex, :call, :stop], m, stop}
      assert_span_end(m, stop, context)

      assert Map.take(stop, [:instance, :function, :timeout, :result]) ==
               Map.put(meta, :result, {:ok, [3]})
    end

    test "a trap ends the span with the error and emits [:wasmex, :call, :trap]" do
      pid = start_instance()
      {:ok, store} = Wasmex.store(pid)
      assert {:error, message} = Wasmex.call_function(pid, "boom", [])

      assert_receive {:event, [:wasmex, :call, :stop], _, %{function: "boom", result: result}}
      assert result == {:error, message}
      assert_receive {:event, [:wasmex, :call, :trap], m, %{host: host, message: ^message}}
      assert host == store.host
      assert Map.keys(m) |> Enum.sort() == [:monotonic_time, :system_time]
    end

    test "a call stopped at its timeout emits [:wasmex, :call, :timeout]" do
      pid = start_instance()
      {:ok, store} = Wasmex.store(pid)
      assert {:error, "timed out" <> _ = message} = Wasmex.call_function(pid, "spin", [], 50)
      assert_receive {:event, [:wasmex, :call, :timeout], m, %{host: host, message: ^message}}
      assert host == store.host
      assert is_integer(m.system_time)
      assert_receive {:event, [:wasmex, :call, :stop], _, %{result: {:error, ^message}}}
    end

    test "a call past its timeout while queued emits [:wasmex, :call, :timeout] too" do
      pid = start_instance()
      spin = Task.async(fn -> Wasmex.call_function(pid, "spin", [], 2_000) end)
      {:ok, store} = Wasmex.store(pid)
      :ok = TestHelper.wait_until_pending(store.host, 1)

      assert {:error, "timed out" <> _ = message} = Wasmex.call_function(pid, "sum", [1, 2], 50)
      assert_receive {:event, [:wasmex, :call, :timeout], _, %{message: ^message}}
      assert {:error, "timed out" <> _} = Task.await(spin)
    end

    test "an instantiation stopped at its timeout emits [:wasmex, :call, :timeout] too" do
      endless_start = "(module (func $start (loop (br 0))) (start $start))"
      assert {:error, "timed out" <> _ = message} = Wasmex.start_link(%{bytes: endless_start})
      assert_receive {:event, [:wasmex, :call, :timeout], _, %{message: ^message}}
    end
  end

  describe "Wasmex.Components.call_function/4" do
    @boom_component ~s{(component
      (core module $m (func (export "boom") unreachable))
      (core instance $i (instantiate $m))
      (func (export "boom") (canon lift (core func $i "boom"))))}

    test "is a [:wasmex, :component, :call] span with the server, function, timeout and result" do
      {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/types.wasm")
      path = {"wasmex:types/roundtrip@0.1.0", "echo-point"}

      assert {:ok, %{x: 1, y: 2}} =
               Wasmex.Components.call_function(pid, path, [%{x: 1, y: 2}], 900)

      meta = %{instance: pid, function: path, timeout: 900}
      assert_receive {:event, [:wasmex, :component, :call, :start], m, start}
      assert Map.take(start, [:instance, :function, :timeout]) == meta
      context = assert_span_start(m, start)
      assert_receive {:event, [:wasmex, :component, :call, :stop], m, stop}
      assert_span_end(m, stop, context)
      assert stop.result == {:ok, %{x: 1, y: 2}}
      # Component calls are not core calls.
      refute_received {:event, [:wasmex, :call, :start], _, _}
    end

    test "a trap ends the span with the error and emits [:wasmex, :call, :trap]" do
      {:ok, pid} = Wasmex.Components.start_link(bytes: @boom_component)
      host = Wasmex.Components.instance(pid).host
      assert {:error, message} = Wasmex.Components.call_function(pid, "boom", [])
      assert message =~ "unreachable"

      assert_receive {:event, [:wasmex, :component, :call, :stop], _, %{result: result}}
      assert result == {:error, message}
      assert_receive {:event, [:wasmex, :call, :trap], _, %{host: ^host, message: ^message}}
    end

    test "a call stopped at its timeout ends the span with the error and emits [:wasmex, :call, :timeout]" do
      {:ok, pid} = Wasmex.Components.start_link(path: "test/fixtures/components/spin.wasm")
      host = Wasmex.Components.instance(pid).host

      assert {:error, "timed out" <> _ = message} =
               Wasmex.Components.call_function(pid, "spin-forever", [], 50)

      assert_receive {:event, [:wasmex, :call, :timeout], _, %{host: ^host, message: ^message}}

      assert_receive {:event, [:wasmex, :component, :call, :stop], _,
                      %{function: "spin-forever", timeout: 50, result: {:error, ^message}}}
    end

    test "a server that is not running ends the span with the error" do
      assert {:error, "the component is not running: :noproc"} =
               Wasmex.Components.call_function(:telemetry_test_nobody, "f", [])

      assert_receive {:event, [:wasmex, :component, :call, :stop], _,
                      %{instance: :telemetry_test_nobody, result: {:error, _}}}
    end
  end

  describe "Wasmex.Components.Instance.new/3" do
    test "is a [:wasmex, :component, :instantiate] span with the store, component and result" do
      {:ok, store} = Wasmex.Components.Store.new()
      bytes = File.read!("test/fixtures/components/types.wasm")
      {:ok, component} = Wasmex.Components.Component.new(store, bytes)
      assert {:ok, instance} = Wasmex.Components.Instance.new(store, component)

      assert_receive {:event, [:wasmex, :component, :instantiate, :start], m, start}
      context = assert_span_start(m, start)
      assert %{store: ^store, component: ^component} = start
      assert_receive {:event, [:wasmex, :component, :instantiate, :stop], m, stop}
      assert_span_end(m, stop, context)
      assert stop.result == {:ok, instance}
    end

    test "a failed instantiation ends the span with the error" do
      {:ok, store} = Wasmex.Components.Store.new()
      bytes = File.read!("test/fixtures/components/imports.wasm")
      {:ok, component} = Wasmex.Components.Component.new(store, bytes)
      assert {:error, reason} = Wasmex.Components.Instance.new(store, component)

      assert_receive {:event, [:wasmex, :component, :instantiate, :stop], _,
                      %{result: {:error, ^reason}}}
    end
  end

  describe "Wasmex.Module.compile/2" do
    test "is a [:wasmex, :module, :compile] span with the host, source kind and size" do
      {:ok, store} = Store.new()
      assert {:ok, module} = Module.compile(store, @wat)
      meta = %{host: store.host, source: :wasm, byte_size: byte_size(@wat)}

      assert_receive {:event, [:wasmex, :module, :compile, :start], m, start}
      context = assert_span_start(m, start)
      assert Map.delete(start, :telemetry_span_context) == meta
      assert_receive {:event, [:wasmex, :module, :compile, :stop], m, stop}
      assert_span_end(m, stop, context)
      assert stop.result == {:ok, module}
    end

    test "a failed compile ends the span with the error" do
      {:ok, store} = Store.new()
      assert {:error, reason} = Module.compile(store, "(module (func (export")
      assert_receive {:event, [:wasmex, :module, :compile, :stop], _, %{result: result}}
      assert result == {:error, reason}
    end
  end

  describe "Wasmex.Instance.new/4 and Wasmex.start_link/1" do
    test "Instance.new/4 is a [:wasmex, :instantiate] span with the store and module" do
      {:ok, store} = Store.new()
      {:ok, module} = Module.compile(store, @wat)
      assert {:ok, instance} = Instance.new(store, module, imports())

      assert_receive {:event, [:wasmex, :instantiate, :start], m, start}
      context = assert_span_start(m, start)
      assert %{store: ^store, module: ^module} = start
      assert_receive {:event, [:wasmex, :instantiate, :stop], m, stop}
      assert_span_end(m, stop, context)
      assert stop.result == {:ok, instance}
    end

    test "start_link/1 instantiates inside the span, with the server's instance as result" do
      pid = start_instance()
      {:ok, instance} = Wasmex.instance(pid)
      assert_receive {:event, [:wasmex, :instantiate, :stop], _, %{result: {:ok, ^instance}}}
    end

    test "a failed instantiation ends the span with the error" do
      assert {:error, reason} = Wasmex.start_link(%{bytes: @wat})
      assert_receive {:event, [:wasmex, :instantiate, :stop], _, %{result: {:error, ^reason}}}
    end
  end

  describe "import callbacks" do
    test "each is a [:wasmex, :callback] span with namespace, name, instance and result" do
      pid = start_instance()
      {:ok, instance} = Wasmex.instance(pid)
      assert {:ok, [42]} = Wasmex.call_function(pid, "via_import", [41])

      assert_receive {:event, [:wasmex, :callback, :start], m, start}
      context = assert_span_start(m, start)
      assert %{namespace: "env", name: "add_one", instance: ^instance} = start
      assert_receive {:event, [:wasmex, :callback, :stop], m, stop}
      assert_span_end(m, stop, context)
      assert stop.result == {:ok, [42]}
    end

    test "a callback that raises emits [:wasmex, :callback, :exception]" do
      pid = start_instance(imports(fn _context, _x -> raise "callback failed" end))
      assert {:error, message} = Wasmex.call_function(pid, "via_import", [1])
      assert message =~ "callback failed"

      assert_receive {:event, [:wasmex, :callback, :exception], m, meta}
      assert is_integer(m.duration)
      assert %{kind: :error, reason: %RuntimeError{}, name: "add_one"} = meta
    end
  end

  describe "hosts" do
    test "a host's start emits [:wasmex, :host, :start] with its pid and OS pid" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      os_pid = Wasmex.Host.os_pid(engine.host)
      host = engine.host
      assert_receive {:event, [:wasmex, :host, :start], m, %{host: ^host, os_pid: ^os_pid}}
      assert is_integer(m.system_time) and is_integer(m.monotonic_time)
    end

    @tag :capture_log
    test "a port that exits emits [:wasmex, :host, :exit] with the reason" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      host = engine.host
      os_pid = Wasmex.Host.os_pid(host)
      ref = Process.monitor(host)
      {_, 0} = System.cmd("kill", ["-KILL", "#{os_pid}"])

      assert_receive {:event, [:wasmex, :host, :exit], m, %{host: ^host, os_pid: ^os_pid} = meta},
                     5_000

      assert meta.reason =~ "signal"
      assert is_integer(m.system_time)
      assert_receive {:DOWN, ^ref, :process, ^host, _}
    end
  end
end
