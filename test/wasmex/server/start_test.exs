defmodule Wasmex.Server.StartTest do
  @moduledoc """
  How an instance server starts: spawned first, handed the instance its caller made for
  it, registered under its name before anything else; abandoned, leaving nothing behind,
  when any step fails.
  """
  use ExUnit.Case, async: true

  alias Wasmex.Server.Start

  @sum ~s{(module (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  defp args(wat \\ @sum) do
    {:ok, store} = Wasmex.Store.new()
    {:ok, module} = Wasmex.Module.compile(store, wat)
    %{store: store, module: module, imports: %{}, links: []}
  end

  defp forward_to(pid) do
    receive do
      message -> send(pid, message)
    end

    forward_to(pid)
  end

  defp links, do: Process.info(self(), :links) |> elem(1) |> Enum.sort()

  describe "start_link/2" do
    test "starts a server linked to the caller that serves the instance made for it" do
      {:ok, pid} = Start.start_link(args(), nil)
      assert pid in links()
      assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
    end

    test "the server is an OTP process: its state can be read with :sys" do
      {:ok, pid} = Start.start_link(args(), nil)
      assert %{instance: %Wasmex.Instance{}} = :sys.get_state(pid)
    end

    test "the server is named for tools as a Wasmex.Server" do
      {:ok, pid} = Start.start_link(args(), nil)
      # Once it answers a system message, the server has its state and serves.
      _ = :sys.get_state(pid)
      {:dictionary, dictionary} = Process.info(pid, :dictionary)
      assert dictionary[:"$initial_call"] == {Wasmex.Server, :init, 1}
    end

    test "a name taken by a failed start is free again when it returns" do
      name = :"wasmex_start_test_#{System.unique_integer([:positive])}"
      assert {:error, _} = Start.start_link(args(~s{(module (import "env" "f" (func)))}), name)
      assert Process.whereis(name) == nil
    end

    test "registers a {:global, name}" do
      name = {:global, {__MODULE__, make_ref()}}
      {:ok, pid} = Start.start_link(args(), name)
      assert GenServer.whereis(name) == pid
      assert Wasmex.call_function(name, "sum", [2, 3]) == {:ok, [5]}
    end

    test "registers a {:via, Registry, key} name, once" do
      start_supervised!({Registry, keys: :unique, name: __MODULE__.Names})
      name = {:via, Registry, {__MODULE__.Names, :sum}}
      {:ok, pid} = Start.start_link(args(), name)
      assert Wasmex.call_function(name, "sum", [2, 3]) == {:ok, [5]}
      assert Start.start_link(args(), name) == {:error, {:already_started, pid}}
    end

    test "a name that is not a name raises, leaving no process behind" do
      before = links()

      assert_raise ArgumentError, ~r/expected :name to be an atom/, fn ->
        Start.start_link(args(), "sum")
      end

      assert links() == before
    end

    test "a failed instantiation returns its error and leaves no process behind" do
      before = links()

      assert {:error, message} =
               Start.start_link(args(~s{(module (import "env" "missing" (func)))}), nil)

      assert message =~ "env::missing"
      assert links() == before
    end

    test "an abandoned server ends normally" do
      args = args(~s{(module (func $s unreachable) (start $s))})
      test = self()
      tracer = spawn_link(fn -> forward_to(test) end)
      :erlang.trace(self(), true, [:procs, {:tracer, tracer}])
      {:error, _} = Start.start_link(args, nil)
      :erlang.trace(self(), false, [:procs])
      assert_receive {:trace, _, :spawn, server, {:proc_lib, :init_p, _}}
      ref = Process.monitor(server)
      assert_receive {:DOWN, ^ref, :process, ^server, reason}
      assert reason in [:normal, :noproc]
    end
  end

  describe "start_link/2 with a server killed while it starts" do
    test "returns an error and leaves nothing registered for it" do
      Process.flag(:trap_exit, true)
      test = self()

      # The start function calls the import, which kills the server it runs for.
      wat = ~s{(module (import "env" "kill" (func $kill)) (func $s call $kill) (start $s))}

      kill = fn %{pid: server} ->
        send(test, {:server, server})
        Process.exit(server, :kill)
        nil
      end

      args = %{args(wat) | imports: %{env: %{kill: {:fn, [], [], kill}}}}

      assert Start.start_link(args, nil) ==
               {:error, "the instance server exited before it started"}

      assert_received {:server, server}
      # The server's exit signal does not stay behind for a caller that traps exits.
      refute_received {:EXIT, ^server, _}
      assert :ets.lookup(Wasmex.Routes, server) == []
      assert :ets.lookup(Wasmex.Callbacks, server) == []
    end
  end

  describe "Wasmex.Server.init/1" do
    test "refuses a start through GenServer.start_link/3" do
      assert GenServer.start(Wasmex.Server, args()) ==
               {:error, "a Wasmex.Server starts through Wasmex.start_link/1"}
    end
  end
end
