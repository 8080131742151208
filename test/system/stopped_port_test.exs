defmodule Wasmex.System.StoppedPortTest do
  @moduledoc """
  A port process that stops answering (here: stopped with SIGSTOP) holds nobody forever:
  every request waits a bounded time (`Wasmex.Host.Client`) and returns
  `{:error, reason}`; once the process runs again, so does everything.
  """
  # Sets the application's :request_timeout, which every host reads.
  use ExUnit.Case, async: false

  alias Wasmex.{Memory, Module, Store}

  @wat ~s{(module (memory (export "mem") 32) (func (export "f") (result i32) i32.const 7))}
  @request_timeout 300

  setup do
    previous = Application.get_env(:wasmex, :request_timeout)
    Application.put_env(:wasmex, :request_timeout, @request_timeout)

    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, compile_timeout: 200)
    {:ok, store} = Store.new(nil, engine)
    {:ok, pid} = Wasmex.start_link(%{bytes: @wat, store: store})
    {:ok, memory} = Wasmex.memory(pid)
    os_pid = Wasmex.Host.os_pid(engine.host)
    {_, 0} = System.cmd("kill", ["-STOP", "#{os_pid}"])

    on_exit(fn ->
      System.cmd("kill", ["-CONT", "#{os_pid}"], stderr_to_stdout: true)

      if previous,
        do: Application.put_env(:wasmex, :request_timeout, previous),
        else: Application.delete_env(:wasmex, :request_timeout)
    end)

    %{engine: engine, store: store, pid: pid, memory: memory, os_pid: os_pid}
  end

  # Runs `fun`, asserting it returns `{:error, _}` within `bound` ms; returns the error.
  defp bounded(bound, fun) do
    {micros, result} = :timer.tc(fun)
    assert {:error, reason} = result
    assert div(micros, 1000) < bound, "took #{div(micros, 1000)} ms"
    reason
  end

  test "Store.new/2 returns an error after request_timeout", %{engine: engine} do
    reason = bounded(@request_timeout + 500, fn -> Store.new(nil, engine) end)
    assert reason =~ "did not answer within #{@request_timeout} ms"
  end

  test "Module.compile/2 returns an error after the compile timeout plus request_timeout",
       %{store: store} do
    reason = bounded(200 + @request_timeout + 500, fn -> Module.compile(store, "(module)") end)
    assert reason =~ "did not answer within #{200 + @request_timeout} ms"
  end

  test "Memory.read_binary/4 returns an error after request_timeout", %{
    store: store,
    memory: memory
  } do
    bounded(@request_timeout + 500, fn -> Memory.read_binary(store, memory, 0, 8) end)
  end

  test "Memory.write_binary/4 of 1 MiB (through the shared buffer) returns an error too", %{
    store: store,
    memory: memory
  } do
    bytes = :binary.copy(<<7>>, 1024 * 1024)
    bounded(@request_timeout + 500, fn -> Memory.write_binary(store, memory, 0, bytes) end)
  end

  test "Wasmex.Host.os_pid/1 and Wasmex.Instance calls answer too", %{engine: engine, pid: pid} do
    assert is_integer(Wasmex.Host.os_pid(engine.host))
    {:ok, store} = Wasmex.store(pid)
    instance = :sys.get_state(pid).instance

    bounded(@request_timeout + 500, fn ->
      Wasmex.Instance.get_global_value(store, instance, "none")
    end)
  end

  test "start_link/1 on the engine returns an error", %{store: store} do
    bounded(200 + @request_timeout + 500, fn ->
      Wasmex.start_link(%{bytes: @wat, store: store})
    end)
  end

  test "call_function/4 returns an error after its timeout plus 2 s", %{pid: pid} do
    assert bounded(100 + 2_000 + 500, fn -> Wasmex.call_function(pid, "f", [], 100) end) =~
             "timed out"
  end

  test "once the process runs again, so do requests", %{pid: pid, os_pid: os_pid} do
    assert {:error, _} = Wasmex.call_function(pid, "f", [], 10)
    {_, 0} = System.cmd("kill", ["-CONT", "#{os_pid}"])
    assert Wasmex.call_function(pid, "f", []) == {:ok, [7]}
  end
end
