defmodule Wasmex.Bounded do
  @moduledoc false
  # A call to one of this library's own processes that answer without asking a port (an
  # instance server, a pipe, a pool's engine owner): it waits at most
  # `Wasmex.Host.Client.request_timeout/0` and returns `{:error, reason}` instead of
  # exiting when the process is gone or does not answer. A late answer is dropped (the
  # call's reply alias ends with it).

  alias Wasmex.Host.Client

  @spec call(GenServer.server(), term()) :: {:ok, term()} | {:error, String.t()}
  def call(server, message) do
    {:ok, GenServer.call(server, message, Client.request_timeout())}
  catch
    :exit, {:timeout, _} ->
      {:error, "#{inspect(server)} did not answer within #{Client.request_timeout()} ms"}

    :exit, {reason, _} ->
      {:error, "#{inspect(server)} is not running: #{inspect(reason)}"}
  end

  @doc false
  # The answer, or an exit like `GenServer.call/3`'s (`{reason, {GenServer, :call, _}}`),
  # for functions whose result has no error case.
  @spec call!(GenServer.server(), term()) :: term()
  def call!(server, message), do: GenServer.call(server, message, Client.request_timeout())
end
