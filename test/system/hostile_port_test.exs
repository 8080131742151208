defmodule Wasmex.System.HostilePortTest do
  @moduledoc """
  A port program is untrusted (a guest that escaped wasmtime could write anything): a
  frame the host cannot act on is logged and skipped, and a frame over the size limit
  stops that one host before its bytes are gathered. Driven by fake port programs (shell
  scripts) that speak the frame format.
  """
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Wasmex.{Host, Wire}

  defp frame(term) do
    bin = :erlang.term_to_binary(term)
    [<<byte_size(bin)::32>>, bin]
  end

  defp octal(iodata) do
    for <<byte <- IO.iodata_to_binary(iodata)>>,
      into: "",
      do: "\\" <> String.pad_leading(Integer.to_string(byte, 8), 3, "0")
  end

  # Reads one request frame from stdin (its 4-byte length, then its payload).
  @read_request ~S"""
  set -- $(head -c 4 | od -An -tu1)
  head -c $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 )) >/dev/null
  """

  # A fake port: greets, answers init, waits for the next request, then writes `frames`
  # (and `tail`, shell commands, if any) and reads until closed.
  defp fake_port(frames, tail \\ "") do
    path = Path.join(System.tmp_dir!(), "hostile_port_#{System.unique_integer([:positive])}")

    File.write!(path, """
    #!/bin/sh
    printf '#{octal(frame({:hello, Wire.version(), "48"}))}'
    #{@read_request}
    printf '#{octal(frame({:reply, 1, {:ok, nil}}))}'
    #{@read_request}
    printf '#{octal(frames)}'
    #{tail}
    exec cat >/dev/null
    """)

    File.chmod!(path, 0o755)
    on_exit(fn -> File.rm(path) end)
    path
  end

  defp start(path) do
    {:ok, host} = Host.start(%Wasmex.EngineConfig{}, self(), executable: path)
    host
  end

  describe "frames with bad handlers or shapes" do
    test "are logged and skipped; the host serves on" do
      hostile = [
        # a stdio frame with an unknown handler
        frame({:stdio, 1, :erlang.term_to_binary({:unknown, self()}), "x"}),
        # garbage callback and callback_abandoned handlers
        frame({:callback, 1, 1, "garbage", "env", "f", []}),
        frame({:callback_abandoned, 1, 1, "garbage"}),
        # a bad stdin_read handler
        frame({:stdin_read, 1, :erlang.term_to_binary(:nope)}),
        # a send to an unregistered name
        frame({:stdio, 1, :erlang.term_to_binary({:pipe, :no_such_name}), "x"}),
        frame({:callback_abandoned, 1, 1, :erlang.term_to_binary(:no_such_name)}),
        # fields of the wrong type
        frame({:callback, 1, 1, :erlang.term_to_binary(self()), {:ns}, "f", []}),
        frame({:log, {:not, :a, :string}}),
        frame({:fatal, 1}),
        frame(:what),
        # not a term at all
        [<<3::32>>, "abc"],
        # then the answer to the request the test sends (id 2)
        frame({:reply, 2, {:ok, :alive}})
      ]

      host = start(fake_port(hostile))
      ref = Process.monitor(host)

      log = capture_log(fn -> assert Host.request(host, :ping, {}) == {:ok, :alive} end)

      assert log =~ "stdio frame with a bad handler: {:unknown, #PID<"
      assert log =~ ~S'callback frame with a bad handler: {:callback, 1, 1, "garbage"'

      assert log =~
               ~S'callback_abandoned frame with a bad handler: {:callback_abandoned, 1, 1, "garbage"}'

      assert log =~ "stdin_read frame with a bad handler: :nope"
      assert log =~ "stdio frame with a bad handler: {:pipe, :no_such_name}"
      assert log =~ "callback_abandoned frame with a bad handler"
      assert log =~ "unexpected frame: {:callback, 1, 1,"
      assert log =~ "unexpected frame: {:log, {:not, :a, :string}}"
      assert log =~ "unexpected frame: {:fatal, 1}"
      assert log =~ "unexpected frame: :what"
      assert log =~ "undecodable frame from the port (3 bytes)"
      refute_received {:DOWN, ^ref, _, _, _}
      assert Process.alive?(host)
    end

    test "a reply that is neither {:ok, _} nor {:error, _} reaches its caller as an error" do
      host = start(fake_port(frame({:reply, 2, :garbage})))

      assert Host.request(host, :ping, {}) ==
               {:error, "malformed reply from the Wasm host: :garbage"}
    end
  end

  describe "a frame over the limit" do
    test "stops that host at its header, failing what waits, before its bytes are gathered" do
      # Announces 512 MiB and starts sending them.
      size = 512 * 1024 * 1024
      path = fake_port([<<size::32>>], "head -c #{size} /dev/zero 2>/dev/null")
      host = start(path)
      ref = Process.monitor(host)

      log =
        capture_log(fn ->
          assert {:error, message} = Host.request(host, :ping, {})

          assert message ==
                   "the Wasm host exited: the Wasm host sent a frame of #{size} bytes, " <>
                     "over the limit of #{Wire.max_incoming_frame()}"
        end)

      assert_receive {:DOWN, ^ref, :process, ^host, {:shutdown, {:port_exited, reason}}}
      assert reason =~ "over the limit"
      assert log =~ "stopping this host"
      # Other hosts are untouched.
      {:ok, pid} =
        Wasmex.start_link(%{bytes: ~s{(module (func (export "f") (result i32) i32.const 1))}})

      assert Wasmex.call_function(pid, "f", []) == {:ok, [1]}
    end
  end
end
