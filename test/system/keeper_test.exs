defmodule Wasmex.System.KeeperTest do
  @moduledoc """
  The keeper (port/keeper.rs): a child of the port that spins at the lowest priority on
  idle CPUs while requests come close together. The port starts it once such requests
  come, and starts none with one CPU.

  Not async: one test lowers this BEAM's own scheduling weight for a moment.
  """
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Wasmex.Host

  @autogroup "/proc/self/autogroup"
  @sched_idle "5"

  defp several_cpus?,
    do: :erlang.system_info(:logical_processors_available) not in [1, :unknown]

  # `/proc/<pid>/stat` after the command name: state, ppid, pgrp, session, ...
  defp stat_fields(os_pid) do
    with {:ok, stat} <- File.read("/proc/#{os_pid}/stat"),
         [_, after_name] <- String.split(stat, ") ", parts: 2) do
      String.split(after_name)
    else
      _ -> nil
    end
  end

  defp children(os_pid) do
    for entry <- File.ls!("/proc"),
        Integer.parse(entry) != :error,
        fields = stat_fields(entry),
        fields != nil and Enum.at(fields, 1) == "#{os_pid}",
        do: String.to_integer(entry)
  end

  # Calls `pid` until its port has a keeper (at most `calls` calls); its OS pid, or nil.
  defp keeper_after_calls(pid, os_pid, calls) do
    case children(os_pid) do
      [keeper] ->
        keeper

      [] when calls > 0 ->
        for _ <- 1..50, do: {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
        keeper_after_calls(pid, os_pid, calls - 50)

      [] ->
        nil
    end
  end

  # An instance on a host of its own, called until its port has a keeper.
  defp started_keeper do
    {pid, store} = TestHelper.start_instance()
    os_pid = Host.os_pid(store.host)
    keeper = keeper_after_calls(pid, os_pid, 5_000)

    if several_cpus?() do
      assert is_integer(keeper)
    else
      assert keeper == nil
    end

    %{store: store, os_pid: os_pid, keeper: keeper}
  end

  # This BEAM's autogroup nice value, or nil when it has none of its own. The file is
  # missing without autogroups, and empty for a process in the kernel's default autogroup
  # (one whose session was never set apart from init's, as under some CI runners): there
  # its weight cannot be changed.
  defp autogroup_nice do
    with {:ok, text} <- File.read(@autogroup),
         [_, nice] <- Regex.run(~r/nice (-?\d+)/, text) do
      nice
    else
      _ -> nil
    end
  end

  # Runs `fun` with this BEAM's autogroup (its session's scheduling weight) at `nice`, then
  # puts the old value back (raising a nice value, and lowering it to 0 or above, needs no
  # privilege).
  defp with_autogroup_nice(nice, fun) do
    before = autogroup_nice()
    File.write!(@autogroup, "#{nice}")

    try do
      fun.()
    after
      File.write!(@autogroup, before)
    end
  end

  describe "the keeper" do
    test "runs at idle priority" do
      %{keeper: keeper} = started_keeper()
      # The 41st field of /proc/<pid>/stat (38th after ppid's three) is the policy.
      if keeper, do: assert(Enum.at(stat_fields(keeper), 38) == @sched_idle)
    end

    test "runs in a session of its own, apart from the port's" do
      %{keeper: keeper, os_pid: os_pid} = started_keeper()

      if keeper do
        assert Enum.at(stat_fields(keeper), 3) == "#{keeper}"
        refute Enum.at(stat_fields(os_pid), 3) == "#{keeper}"
      end
    end

    test "ends with its host" do
      # The instance server stops with the host; the test must outlive it.
      Process.flag(:trap_exit, true)
      %{keeper: keeper, store: store} = started_keeper()

      if keeper do
        GenServer.stop(store.host)
        TestHelper.await_os_exit(keeper, 5_000)
      end
    end

    test "is not started beside a BEAM whose autogroup is as low as its own, and says why" do
      if autogroup_nice() != nil and several_cpus?() do
        log =
          capture_log(fn ->
            with_autogroup_nice(19, fn ->
              {pid, store} = TestHelper.start_instance()
              assert keeper_after_calls(pid, Host.os_pid(store.host), 5_000) == nil
            end)
          end)

        assert log =~ "no keeper: the BEAM's autogroup runs at nice 19"
      else
        # Without an autogroup of its own, or with one CPU, the keeper starts (or not) as it
        # always does.
        started_keeper()
      end
    end
  end
end
