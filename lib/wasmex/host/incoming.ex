defmodule Wasmex.Host.Incoming do
  @moduledoc """
  Checks a term the port sent before the host acts on it: the port is untrusted (a guest
  that escaped wasmtime could write anything), so every field is checked, handlers are
  decoded safely and must name a process (never a registered name, which `send/2` would
  fail on), and anything else becomes `{:invalid, reason}` for the host to log.

      iex> alias Wasmex.Host.Incoming
      iex> Incoming.check({:reply, 3, {:ok, [42]}})
      {:reply, 3, {:ok, [42]}}
      iex> Incoming.check({:stdio, 1, :erlang.term_to_binary({:pipe, :some_name}), "x"})
      {:invalid, "stdio frame with a bad handler: {:pipe, :some_name}"}
  """

  @typedoc "A frame the host may act on, with its handlers decoded."
  @type event ::
          {:reply, non_neg_integer(), {:ok, term()} | {:error, term()}}
          | {:reply_part, non_neg_integer(), binary()}
          | {:callback, non_neg_integer(), non_neg_integer(), pid(), String.t(), String.t(),
             list()}
          | {:callback_abandoned, non_neg_integer(), non_neg_integer(), pid()}
          | {:stdio, non_neg_integer(), {:pipe, pid()} | {:messages, pid(), atom()}, binary()}
          | {:stdin_read, non_neg_integer(), pid()}
          | {:fatal, String.t()}
          | {:log, String.t()}
          | {:invalid, String.t()}

  defguardp id?(x) when is_integer(x) and x >= 0

  @doc "The event a decoded frame stands for, or `{:invalid, reason}`."
  @spec check(term()) :: event()
  def check({:reply, id, {tag, _} = result}) when id?(id) and tag in [:ok, :error],
    do: {:reply, id, result}

  def check({:reply, id, result}) when id?(id),
    do: {:reply, id, {:error, "malformed reply from the Wasm host: #{show(result)}"}}

  def check({:reply_part, id, bytes}) when id?(id) and is_binary(bytes),
    do: {:reply_part, id, bytes}

  def check({:callback, store_id, callback_id, handler, ns, name, params} = frame)
      when id?(store_id) and id?(callback_id) and is_binary(ns) and is_binary(name) and
             is_list(params) do
    case handler(handler) do
      pid when is_pid(pid) -> {:callback, store_id, callback_id, pid, ns, name, params}
      _ -> invalid("callback frame with a bad handler", frame)
    end
  end

  def check({:callback_abandoned, store_id, callback_id, handler} = frame)
      when id?(store_id) and id?(callback_id) do
    case handler(handler) do
      pid when is_pid(pid) -> {:callback_abandoned, store_id, callback_id, pid}
      _ -> invalid("callback_abandoned frame with a bad handler", frame)
    end
  end

  def check({:stdio, store_id, handler, bytes}) when id?(store_id) and is_binary(bytes) do
    case handler(handler) do
      {:pipe, pid} = h when is_pid(pid) ->
        {:stdio, store_id, h, bytes}

      {:messages, pid, tag} = h when is_pid(pid) and tag in [:wasmex_stdout, :wasmex_stderr] ->
        {:stdio, store_id, h, bytes}

      other ->
        {:invalid, "stdio frame with a bad handler: #{show(other)}"}
    end
  end

  def check({:stdin_read, store_id, handler}) when id?(store_id) do
    case handler(handler) do
      {:pipe, pid} when is_pid(pid) -> {:stdin_read, store_id, pid}
      other -> {:invalid, "stdin_read frame with a bad handler: #{show(other)}"}
    end
  end

  def check({:fatal, message}) when is_binary(message), do: {:fatal, message}
  def check({:log, message}) when is_binary(message), do: {:log, message}
  def check(other), do: invalid("unexpected frame", other)

  # A handler is a term the BEAM encoded; decoded without creating atoms.
  defp handler(binary) when is_binary(binary) do
    :erlang.binary_to_term(binary, [:safe])
  rescue
    ArgumentError -> {:undecodable, byte_size(binary)}
  end

  defp handler(other), do: {:not_a_binary, other}

  defp invalid(what, frame), do: {:invalid, "#{what}: #{show(frame)}"}

  defp show(term), do: inspect(term, limit: 10, printable_limit: 200)
end
