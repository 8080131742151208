defmodule Wasmex.System.TimeSliceTest do
  @moduledoc """
  The port's store workers, the threads that spin, ask the kernel for the shortest time
  slice it grants (port/time_slice.rs); the main thread keeps the default.
  """
  use ExUnit.Case, async: true

  alias Wasmex.Host

  # The kernel's time slice (`se.slice`, in nanoseconds) of each thread of `os_pid` named
  # `name`; none where the kernel does not show it.
  defp slices(os_pid, name) do
    for task <- File.ls!("/proc/#{os_pid}/task"),
        File.read("/proc/#{os_pid}/task/#{task}/comm") == {:ok, name <> "\n"},
        {:ok, sched} <- [File.read("/proc/#{os_pid}/task/#{task}/sched")],
        [_, ns] <- [Regex.run(~r/^se\.slice\s*:\s*(\d+)/m, sched)],
        do: String.to_integer(ns)
  end

  # Linux 6.12 and later grant a thread a slice of its own.
  defp own_slices? do
    [_, major, minor] = Regex.run(~r/^(\d+)\.(\d+)/, File.read!("/proc/sys/kernel/osrelease"))

    {String.to_integer(major), String.to_integer(minor)} >= {6, 12}
  end

  describe "the port's threads" do
    test "store workers run with a 100 µs slice, the main thread with the kernel's default" do
      {pid, store} = TestHelper.start_instance()
      assert {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])
      os_pid = Host.os_pid(store.host)
      main = slices(os_pid, "wasmex_port")
      workers = slices(os_pid, "store-worker")

      if own_slices?() do
        assert {[default], [_ | _]} = {main, workers}
        assert {default > 100_000, Enum.uniq(workers)} == {true, [100_000]}
      else
        # Without slices of one's own, every thread has the kernel's default.
        assert Enum.uniq(workers) -- main == []
      end
    end
  end
end
