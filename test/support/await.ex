defmodule Wasmex.Test.Await do
  @moduledoc false
  # Waiting in tests for what a process does, without sleeps.

  @doc """
  Returns once `pid` waits for a host's answer (in `Wasmex.Host.Client.call/3`): its
  request is then in the host's mailbox, ahead of any sent after this returns. Raises
  when `pid` ends first, or after `ms` milliseconds.
  """
  @spec waiting_for_answer(pid(), non_neg_integer()) :: :ok
  def waiting_for_answer(pid, ms \\ 5_000),
    do: wait(pid, System.monotonic_time(:millisecond) + ms)

  defp wait(pid, deadline) do
    case Process.info(pid, [:current_function, :status]) do
      [current_function: {Wasmex.Host.Client, :call, 3}, status: :waiting] ->
        :ok

      nil ->
        raise "#{inspect(pid)} ended before it waited for an answer"

      _other ->
        if System.monotonic_time(:millisecond) > deadline,
          do: raise("#{inspect(pid)} did not wait for an answer in time")

        :erlang.yield()
        wait(pid, deadline)
    end
  end
end
