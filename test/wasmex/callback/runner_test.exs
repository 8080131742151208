defmodule Wasmex.Callback.RunnerTest do
  @moduledoc "The processes that run an instance's import callbacks."
  use ExUnit.Case, async: true

  alias Wasmex.Instance

  # A module whose `run` calls `env.cb` with its argument and returns the result.
  @calling """
  (module
    (import "env" "cb" (func $cb (param i32) (result i32)))
    (func (export "run") (param i32) (result i32) local.get 0 call $cb))
  """

  # An instance whose callback tells the test which process ran it, then answers `x`.
  defp reporting_instance do
    test = self()

    fun = fn _ctx, x ->
      send(test, {:ran_in, self()})
      x
    end

    {:ok, pid} =
      Wasmex.start_link(%{bytes: @calling, imports: %{env: %{cb: {:fn, [:i32], [:i32], fun}}}})

    pid
  end

  describe "dispatch/6" do
    test "runs an instance's callbacks one after another in one process" do
      pid = reporting_instance()
      {:ok, [1]} = Wasmex.call_function(pid, "run", [1])
      assert_receive {:ran_in, first}
      {:ok, [2]} = Wasmex.call_function(pid, "run", [2])
      assert_receive {:ran_in, ^first}
    end

    test "gives a callback nested in a running one a process of its own" do
      test = self()

      fun = fn %{caller: caller, instance: instance}, depth ->
        send(test, {:ran_in, depth, self()})

        if depth == 0 do
          0
        else
          :ok = Instance.call_exported_function(caller, instance, "run", [0], :nested)

          receive do
            {:returned_function_call, {:ok, [inner]}, :nested} -> inner + depth
          end
        end
      end

      {:ok, pid} =
        Wasmex.start_link(%{bytes: @calling, imports: %{env: %{cb: {:fn, [:i32], [:i32], fun}}}})

      {:ok, [1]} = Wasmex.call_function(pid, "run", [1])
      assert_receive {:ran_in, 1, outer}
      assert_receive {:ran_in, 0, inner}
      assert inner != outer
    end

    test "a runner killed while idle is replaced: the next callback is answered" do
      pid = reporting_instance()
      {:ok, [1]} = Wasmex.call_function(pid, "run", [1])
      assert_receive {:ran_in, runner}
      ref = Process.monitor(runner)
      Process.exit(runner, :kill)
      assert_receive {:DOWN, ^ref, :process, ^runner, :killed}
      assert Wasmex.call_function(pid, "run", [5]) == {:ok, [5]}
    end

    test "a runner taken down while idle by a process its callback linked is replaced" do
      test = self()

      fun = fn _ctx, x ->
        # Crashes once the callback has answered.
        linked = spawn_link(fn -> receive do: (:crash -> exit(:boom)) end)
        send(test, {:ran_in, self(), linked})
        x
      end

      {:ok, pid} =
        Wasmex.start_link(%{bytes: @calling, imports: %{env: %{cb: {:fn, [:i32], [:i32], fun}}}})

      {:ok, [1]} = Wasmex.call_function(pid, "run", [1])
      assert_receive {:ran_in, runner, linked}
      ref = Process.monitor(runner)
      send(linked, :crash)
      assert_receive {:DOWN, ^ref, :process, ^runner, :boom}
      assert Wasmex.call_function(pid, "run", [4]) == {:ok, [4]}
    end

    test "runs a callback for a server already gone, then ends" do
      test = self()
      ran = fn _ctx -> send(test, {:ran_in, self()}) end

      server =
        spawn(fn ->
          Wasmex.Callback.register(self(), %{env: %{f: {:fn, [], [], ran}}}, nil)
          send(test, :registered)
          receive do: (:never -> :ok)
        end)

      assert_receive :registered
      on_exit(fn -> Wasmex.Callback.unregister(server) end)
      ref = Process.monitor(server)
      Process.exit(server, :kill)
      assert_receive {:DOWN, ^ref, :process, ^server, :killed}

      # A host that is this test, with no port: the answer goes nowhere.
      :ok = Wasmex.Callback.start(self(), nil, server, 1, 1, "env", "f", [])
      assert_receive {:ran_in, runner}
      runner_ref = Process.monitor(runner)
      assert_receive {:DOWN, ^runner_ref, :process, ^runner, :normal}
    end

    test "collects what a callback left on its heap before it waits again" do
      test = self()

      fun = fn _ctx, x ->
        # A large term, garbage from here on, made before the test watches.
        _ = Enum.to_list(1..200_000)
        send(test, {:ran_in, self()})
        receive do: (:go -> x)
      end

      {:ok, pid} =
        Wasmex.start_link(%{bytes: @calling, imports: %{env: %{cb: {:fn, [:i32], [:i32], fun}}}})

      call = Task.async(fn -> Wasmex.call_function(pid, "run", [1]) end)
      assert_receive {:ran_in, runner}
      :erlang.trace(runner, true, [:garbage_collection])
      send(runner, :go)
      assert Task.await(call) == {:ok, [1]}
      assert_receive {:trace, ^runner, :gc_major_end, info}
      assert info[:heap_size] < 32_768
    end

    test "a runner ends when its instance server stops" do
      pid = reporting_instance()
      {:ok, [1]} = Wasmex.call_function(pid, "run", [1])
      assert_receive {:ran_in, runner}
      ref = Process.monitor(runner)
      GenServer.stop(pid)
      assert_receive {:DOWN, ^ref, :process, ^runner, :normal}
    end
  end
end
