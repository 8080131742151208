defmodule Wasmex.Host.Client do
  @moduledoc """
  The caller's side of a request to a host: a call that waits a bounded time and, when it stops waiting, says so, so that the
  request is cancelled the way it is for a caller that died (a queued Wasm call is
  skipped, a running one stopped, a compilation killed).

  How long a caller waits (see `docs/architecture.md`):

    * a Wasm call or an instantiation (whose start function runs): its own timeout plus
      2 s for the answer to come back (`:infinity` waits as long as the call runs);
    * a compilation: the host's compile timeout plus `request_timeout`;
    * anything else: `request_timeout`, `config :wasmex, request_timeout: ms` (default
      30,000 ms), long enough for a 1 GiB memory read on a busy machine.

  A caller that stops waiting gets `{:error, :timeout}` from `call/3`.

      iex> Wasmex.Host.Client.wait_for(Wasmex.Wire.memory_read(1, 0, nil, 0, 8)) == Wasmex.Host.Client.request_timeout()
      true
      iex> Wasmex.Host.Client.wait_for(Wasmex.Wire.call(1, 1, "f", [], 100))
      2100
  """

  # How long past its own timeout a call may take to come back before the caller stops
  # waiting (the port stops the Wasm at the timeout and answers within milliseconds).
  @reply_grace 2_000

  @doc "The bound on requests that run no Wasm and compile nothing, in milliseconds."
  @spec request_timeout() :: pos_integer()
  def request_timeout, do: Application.get_env(:wasmex, :request_timeout, 30_000)

  @doc """
  How long a caller waits for the answer to a request (a compilation's bound is added by
  `Wasmex.Host.request/2`, which knows the host's compile timeout).
  """
  @spec wait_for(Wasmex.Wire.request()) :: timeout()
  def wait_for({op, {_ctx, _instance, _name, _params, timeout}})
      when op in [:call, :component_call],
      do: with_grace(timeout)

  def wait_for({:instantiate, args}), do: with_grace(elem(args, tuple_size(args) - 1))
  def wait_for(_request), do: request_timeout()

  @doc "How long a caller waits for a call of `timeout` ms (or `:infinity`) to come back."
  @spec for_call(timeout()) :: timeout()
  def for_call(timeout), do: with_grace(timeout)

  defp with_grace(:infinity), do: :infinity
  # The longest wait `receive` takes (about 49 days); a longer call is waited for that long.
  defp with_grace(ms) when is_integer(ms) and ms >= 0, do: min(ms + @reply_grace, 0xFFFFFFFF)
  defp with_grace(_), do: request_timeout()

  @doc """
  Calls `server` (a host) with `message`, waiting at most `wait`
  ms. When the wait is over, `server` gets `{:give_up, from}` (a cast) and the answer,
  should it come later, is dropped (the reply goes to an alias that no longer exists).
  Returns the answer, `{:error, :timeout}`, or `{:error, {:down, reason}}` when `server`
  is gone.
  """
  @spec call(GenServer.server(), term(), timeout()) :: term()
  def call(server, message, wait) do
    ref = :erlang.monitor(:process, server, alias: :demonitor)
    from = {self(), [:alias | ref]}
    send_call(server, {:"$gen_call", from, message})

    receive do
      {[:alias | ^ref], answer} ->
        Process.demonitor(ref, [:flush])
        answer

      {:DOWN, ^ref, _, _, reason} ->
        {:error, {:down, reason}}
    after
      wait ->
        # The alias ends here: nothing can arrive after this but what already did.
        Process.demonitor(ref, [:flush])

        receive do
          {[:alias | ^ref], answer} -> answer
        after
          0 ->
            GenServer.cast(server, {:give_up, from})
            {:error, :timeout}
        end
    end
  end

  # A name that is not registered: the monitor reports `:noproc` at once.
  defp send_call(server, message) do
    send(server, message)
  rescue
    ArgumentError -> :ok
  end
end
