defmodule Wasmex.System.PortProcessTest do
  @moduledoc "What happens to and around real `wasmex_port` OS processes."
  use ExUnit.Case, async: true

  alias Wasmex.Host

  # Frames for a fake port program: `sh -c 'printf ...; cat'` with octal escapes.
  defp fake_port(frames) do
    octal =
      for <<byte <- IO.iodata_to_binary(frames)>>,
        into: "",
        do: "\\" <> String.pad_leading(Integer.to_string(byte, 8), 3, "0")

    path = Path.join(System.tmp_dir!(), "fake_wasmex_port_#{System.unique_integer([:positive])}")
    File.write!(path, "#!/bin/sh\nprintf '#{octal}'\nexec cat >/dev/null\n")
    File.chmod!(path, 0o755)
    on_exit(fn -> File.rm(path) end)
    path
  end

  defp frame(term) do
    bin = :erlang.term_to_binary(term)
    [<<byte_size(bin)::32>>, bin]
  end

  describe "start" do
    test "a port speaking another protocol version is refused with a message to rebuild" do
      path = fake_port(frame({:hello, 999, "48"}))
      assert {:error, message} = Host.start(%Wasmex.EngineConfig{}, self(), executable: path)
      assert message =~ "protocol version 999"
      assert message =~ "rebuild it with `mix compile`"
    end

    test "a port that does not greet is refused" do
      path = fake_port(frame(:hi))
      assert {:error, message} = Host.start(%Wasmex.EngineConfig{}, self(), executable: path)
      assert message =~ "did not greet"
    end

    test "a missing executable is a clear error" do
      assert {:error, "wasmex_port not found at /nonexistent" <> _} =
               Host.start(%Wasmex.EngineConfig{}, self(), executable: "/nonexistent")
    end
  end

  describe "stdin closing" do
    test "ends the port process even while Wasm is running" do
      Process.flag(:trap_exit, true)
      {pid, store} = TestHelper.start_instance()
      os_pid = Host.os_pid(store.host)

      Wasmex.Instance.call_exported_function(
        store,
        :sys.get_state(pid).instance,
        "endless_loop",
        [],
        :spin,
        :infinity
      )

      # The call is running (the store thread is busy): a queued call gets no answer yet.
      Wasmex.Instance.call_exported_function(
        store,
        :sys.get_state(pid).instance,
        "arity_0",
        [],
        :queued
      )

      refute_receive {:returned_function_call, _, :queued}, 50
      GenServer.stop(store.host)
      TestHelper.await_os_exit(os_pid, 1_000)
    end
  end

  describe "the port process dying mid-call" do
    test "fails pending calls at once and stops the instance servers, not the caller" do
      Process.flag(:trap_exit, true)
      {pid, store} = TestHelper.start_instance()
      ref = Process.monitor(pid)
      instance = :sys.get_state(pid).instance
      Wasmex.Instance.call_exported_function(store, instance, "endless_loop", [], :spin, 30_000)
      # A call to the host after the cast: the request is on the wire once this returns.
      _ = :sys.get_state(store.host)
      System.cmd("kill", ["-9", "#{Host.os_pid(store.host)}"])
      assert_receive {:returned_function_call, {:error, message}, :spin}, 1_000
      assert message =~ "killed by signal 9"

      assert_receive {:DOWN, ^ref, :process, ^pid, {:shutdown, {:wasmex_host_down, reason}}},
                     1_000

      assert inspect(reason) =~ "killed by signal 9"
    end

    test "leaves other hosts serving" do
      Process.flag(:trap_exit, true)
      {victim, victim_store} = TestHelper.start_instance()
      {survivor, _} = TestHelper.start_instance()
      ref = Process.monitor(victim)
      System.cmd("kill", ["-9", "#{Host.os_pid(victim_store.host)}"])
      assert_receive {:DOWN, ^ref, :process, ^victim, _}, 1_000
      assert Wasmex.call_function(survivor, "sum", [1, 2]) == {:ok, [3]}
    end
  end

  describe "hostile frames on the wire" do
    test "each gets an error reply and the port keeps serving" do
      port =
        Port.open({:spawn_executable, Host.executable()}, [:binary, {:packet, 4}, :exit_status])

      assert_receive {^port, {:data, hello}}, 5_000
      assert {:hello, version, _} = :erlang.binary_to_term(hello)
      assert version == Wasmex.Wire.version()

      full = :erlang.term_to_binary({7, :init, {%{}}})

      for garbage <- [
            "not etf",
            binary_part(full, 0, byte_size(full) - 2),
            :erlang.term_to_binary({1, 2}),
            :erlang.term_to_binary({:x, :init, {}}),
            :erlang.term_to_binary({3, "op", {}}),
            :erlang.term_to_binary({4, :init, :not_a_tuple}),
            <<>>
          ] do
        Port.command(port, garbage)
        assert_receive {^port, {:data, reply}}, 1_000
        assert {:reply, _id, {:error, message}} = :erlang.binary_to_term(reply)
        assert is_binary(message)
      end

      Port.command(port, full)
      assert_receive {^port, {:data, reply}}, 5_000
      # Initialised: the reply describes the shared buffer for large writes.
      assert {:reply, 7, {:ok, {fd, 4_194_304}}} = :erlang.binary_to_term(reply)
      assert is_integer(fd) and fd > 2
      Port.command(port, :erlang.term_to_binary({8, :no_such_op, {1}}))
      assert_receive {^port, {:data, reply}}, 1_000
      assert {:reply, 8, {:error, "unknown store 1"}} = :erlang.binary_to_term(reply)
      Port.close(port)
    end
  end
end
