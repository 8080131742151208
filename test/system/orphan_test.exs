defmodule Wasmex.System.OrphanTest do
  @moduledoc """
  No orphans: when the BEAM is killed with SIGKILL, every port process it started ends
  within a second (idle ones see stdin close; busy ones get SIGTERM from the kernel
  through PR_SET_PDEATHSIG). A separate BEAM is started and killed for real.
  """
  use ExUnit.Case, async: true

  @script """
  {:ok, _} = Application.ensure_all_started(:wasmex)
  spin = "(module (func (export \\"spin\\") (loop br 0)))"
  {:ok, busy} = Wasmex.start_link(%{bytes: spin})
  spawn(fn -> Wasmex.call_function(busy, "spin", [], :infinity) end)
  {:ok, idle} = Wasmex.start_link(%{bytes: spin})
  {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
  {:ok, shared_store} = Wasmex.Store.new(nil, engine)
  {:ok, shared} = Wasmex.start_link(%{store: shared_store, module: elem(Wasmex.Module.compile(shared_store, spin), 1)})
  spawn(fn -> Wasmex.call_function(shared, "spin", [], :infinity) end)
  hosts = for pid <- [busy, idle, shared], do: elem(Wasmex.store(pid), 1).host
  os_pids = Enum.map(hosts, &Wasmex.Host.os_pid/1)
  # Let the busy calls reach the Wasm before reporting.
  _ = Enum.map(hosts, &:sys.get_state/1)
  IO.puts("PIDS " <> Enum.join([System.pid() | Enum.map(os_pids, &to_string/1)], " "))
  Process.sleep(:infinity)
  """

  # Gone: no such process, or a zombie waiting to be reaped (it runs nothing). Another
  # BEAM's OS processes cannot be monitored from here, so this polls, for at most `ms`.
  defp gone_within?(os_pid, ms) do
    cond do
      gone?(os_pid) -> true
      ms <= 0 -> false
      true -> Process.sleep(10) && gone_within?(os_pid, ms - 10)
    end
  end

  defp gone?(os_pid) do
    case File.read("/proc/#{os_pid}/stat") do
      {:ok, stat} ->
        stat |> String.split(") ", parts: 2) |> List.last() |> String.starts_with?("Z")

      {:error, _} ->
        true
    end
  end

  test "every port process of a BEAM killed with SIGKILL is gone within one second" do
    ebin = Path.join(Mix.Project.build_path(), "lib/wasmex/ebin")

    beam =
      Port.open({:spawn_executable, System.find_executable("elixir")}, [
        :binary,
        :exit_status,
        {:line, 4096},
        args: ["-pa", ebin, "-e", @script]
      ])

    assert_receive {^beam, {:data, {:eol, "PIDS " <> pids}}}, 20_000
    [beam_pid | port_pids] = String.split(pids)
    assert length(port_pids) == 3
    assert Enum.all?(port_pids, &(not gone?(&1)))

    {_, 0} = System.cmd("kill", ["-9", beam_pid])
    assert_receive {^beam, {:exit_status, 137}}, 5_000

    orphans = Enum.reject(port_pids, &gone_within?(&1, 1_000))
    assert orphans == []
  end
end
