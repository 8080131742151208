defmodule Wasmex.System.StoppedPortTest do
  @moduledoc """
  A port process that stops answering (here: stopped with SIGSTOP) holds nobody forever:
  every request waits a bounded time (`Wasmex.Host.Client`) and returns
  `{:error, reason}`; once the process runs again, so does everything.
  """
  # Sets the application's :request_timeout, which every host reads.
  use ExUnit.Case, async: false

  alias Wasmex.{Memory, Module, Pipe, Pool, Store}

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
    :stopped = stopped(os_pid, System.monotonic_time(:millisecond) + 5_000)

    on_exit(fn ->
      System.cmd("kill", ["-CONT", "#{os_pid}"], stderr_to_stdout: true)

      if previous,
        do: Application.put_env(:wasmex, :request_timeout, previous),
        else: Application.delete_env(:wasmex, :request_timeout)
    end)

    %{engine: engine, store: store, pid: pid, memory: memory, os_pid: os_pid}
  end

  # A signal is delivered when one of the process's threads next runs: on a loaded
  # machine the port may still serve a request after `kill` returned. Waits (polling, as
  # there is nothing to wait on) until the kernel shows it stopped, or `until`.
  defp stopped(os_pid, until) do
    state = File.read!("/proc/#{os_pid}/status")

    cond do
      state =~ ~r/State:\s+T/ ->
        :stopped

      System.monotonic_time(:millisecond) > until ->
        :still_running

      true ->
        receive do
        after
          1 -> stopped(os_pid, until)
        end
    end
  end

  # Runs `fun`, asserting it returns `{:error, _}` within `bound` ms; returns the error.
  defp bounded(bound, fun) do
    {micros, result} = :timer.tc(fun)
    assert {:error, reason} = result
    assert div(micros, 1000) < bound, "took #{div(micros, 1000)} ms"
    reason
  end

  test "Store.new/2 answers without the port; the store's first request returns an error after request_timeout",
       %{engine: engine} do
    {micros, {:ok, store}} = :timer.tc(fn -> Store.new(nil, engine) end)
    assert div(micros, 1000) < @request_timeout
    reason = bounded(@request_timeout + 500, fn -> Wasmex.StoreOrCaller.get_fuel(store) end)
    assert reason =~ "did not answer within #{@request_timeout} ms"
  end

  test "Store.new_wasi/3 returns an error after request_timeout", %{engine: engine} do
    wasi = %Wasmex.Wasi.WasiOptions{args: ["a"]}
    reason = bounded(@request_timeout + 500, fn -> Store.new_wasi(wasi, nil, engine) end)
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

  describe "functions an instance server answers itself" do
    test "answer at once while the port is stopped", %{pid: pid} do
      {micros, results} =
        :timer.tc(fn ->
          [
            Wasmex.memory(pid),
            Wasmex.memory(pid, :uint8, 0),
            Wasmex.store(pid),
            Wasmex.module(pid),
            Wasmex.instance(pid),
            {:ok, Wasmex.function_exists(pid, "f")}
          ]
        end)

      assert [
               {:ok, %Memory{}},
               {:ok, %Memory{}},
               {:ok, %Wasmex.StoreOrCaller{}},
               {:ok, %Module{}},
               {:ok, %Wasmex.Instance{}},
               {:ok, true}
             ] = results

      assert div(micros, 1000) < @request_timeout
    end

    test "return {:error, reason} after request_timeout when the server does not answer",
         %{pid: pid} do
      :ok = :sys.suspend(pid)

      for fun <- [
            &Wasmex.memory/1,
            &Wasmex.memory(&1, :uint8, 0),
            &Wasmex.store/1,
            &Wasmex.module/1,
            &Wasmex.instance/1
          ] do
        reason = bounded(@request_timeout + 500, fn -> fun.(pid) end)
        assert reason =~ "did not answer within #{@request_timeout} ms"
      end

      :ok = :sys.resume(pid)
      assert {:ok, %Memory{}} = Wasmex.memory(pid)
    end

    test "return {:error, reason} at once when the server is gone", %{pid: pid} do
      Process.unlink(pid)
      :ok = GenServer.stop(pid)

      for fun <- [&Wasmex.memory/1, &Wasmex.store/1, &Wasmex.module/1, &Wasmex.instance/1] do
        assert bounded(100, fn -> fun.(pid) end) =~ "is not running: :noproc"
      end
    end

    test "function_exists/2 exits with :timeout after request_timeout", %{pid: pid} do
      :ok = :sys.suspend(pid)
      {micros, caught} = :timer.tc(fn -> catch_exit(Wasmex.function_exists(pid, "f")) end)
      assert {:timeout, {GenServer, :call, _}} = caught
      assert div(micros, 1000) < @request_timeout + 500
      :ok = :sys.resume(pid)
    end
  end

  describe "Wasmex.Pipe" do
    test "answers while the port is stopped" do
      {:ok, pipe} = Pipe.new()
      assert Pipe.write(pipe, "abc") == {:ok, 3}
      assert Pipe.seek(pipe, 1) == :ok
      assert Pipe.read(pipe) == "bc"
      assert Pipe.set_len(pipe, 1) == :ok
      assert Pipe.size(pipe) == 1
    end

    test "write/2 and set_len/2 return :error after request_timeout when the pipe does not answer" do
      {:ok, pipe} = Pipe.new()
      :ok = :sys.suspend(pipe.pid)
      {micros, results} = :timer.tc(fn -> [Pipe.write(pipe, "x"), Pipe.set_len(pipe, 0)] end)
      assert results == [:error, :error]
      assert div(micros, 1000) < 2 * @request_timeout + 500
      :ok = :sys.resume(pipe.pid)
    end

    test "size/1, read/1 and seek/2 exit with :timeout after request_timeout" do
      {:ok, pipe} = Pipe.new()
      :ok = :sys.suspend(pipe.pid)

      for fun <- [&Pipe.size/1, &Pipe.read/1, &Pipe.seek(&1, 0)] do
        {micros, caught} = :timer.tc(fn -> catch_exit(fun.(pipe)) end)
        assert {:timeout, {GenServer, :call, _}} = caught
        assert div(micros, 1000) < @request_timeout + 500
      end

      :ok = :sys.resume(pipe.pid)
    end
  end

  describe "Wasmex.Pool" do
    setup do
      name = :stopped_port_pool
      start_supervised!({Pool, name: name, size: 1, bytes: @wat})
      {:ok, %{engine: engine}} = Pool.Engine.get(name)
      os_pid = Wasmex.Host.os_pid(engine.host)
      {_, 0} = System.cmd("kill", ["-STOP", "#{os_pid}"])
      on_exit(fn -> System.cmd("kill", ["-CONT", "#{os_pid}"], stderr_to_stdout: true) end)
      :stopped = stopped(os_pid, System.monotonic_time(:millisecond) + 5_000)
      %{pool: name}
    end

    test "call_function/5 returns an error after its timeout plus 2 s", %{pool: pool} do
      assert bounded(100 + 2_000 + 500, fn -> Pool.call_function(pool, "f", [], 100) end) =~
               "timed out"
    end

    test "Pool.Engine.get/1 returns {:error, reason} when the engine's owner does not answer",
         %{pool: pool} do
      owner = Process.whereis(Pool.Engine.engine_name(pool))
      :ok = :sys.suspend(owner)
      reason = bounded(@request_timeout + 500, fn -> Pool.Engine.get(pool) end)
      assert reason =~ "did not answer within #{@request_timeout} ms"
      :ok = :sys.resume(owner)
    end

    test "Pool.Engine.get/1 returns {:error, reason} for a pool that is not running" do
      assert bounded(100, fn -> Pool.Engine.get(:no_such_pool) end) =~ "is not running"
    end
  end
end
