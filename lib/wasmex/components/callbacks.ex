defmodule Wasmex.Components.Callbacks do
  @moduledoc false
  # Runs a component's import function for `Wasmex.Callback`, in the callback's own
  # process: the params as the port sent them (already in the Elixir shapes of the value
  # mapping), and the function's value as the one result, which the port converts to the
  # import's result type and checks.

  @doc "`{:ok, value}` or `{:error, message}`."
  @spec run(function(), String.t(), String.t(), list()) :: {:ok, term()} | {:error, String.t()}
  def run(fun, ns, name, params) do
    import = if ns == "", do: name, else: "#{ns}##{name}"

    try do
      Wasmex.Telemetry.span([:callback], %{namespace: ns, name: name, instance: nil}, fn ->
        {:ok, apply(fun, params)}
      end)
    rescue
      e -> {:error, "the import #{import} raised: #{Exception.message(e)}"}
    catch
      kind, reason ->
        {:error, "the import #{import} failed: #{inspect({kind, reason}, limit: 10)}"}
    end
  end
end
