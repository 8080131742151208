# Context switches of an OS process's threads, shared by bench/run.exs and
# bench/programs.exs: a count of wake-ups, which moves far less than wall or CPU time when
# the machine is busy or a VM's neighbours are.

defmodule Bench.Threads do
  @moduledoc false

  @doc "Context switches of all threads of `os_pid` so far (0 when it is gone)."
  def switches(os_pid) do
    for status <- Path.wildcard("/proc/#{os_pid}/task/*/status"),
        {:ok, text} <- [File.read(status)],
        [_, n] <- Regex.scan(~r/ctxt_switches:\s+(\d+)/, text),
        reduce: 0,
        do: (sum -> sum + String.to_integer(n))
  end
end
