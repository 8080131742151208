defmodule Wasmex.Components.Callbacks do
  @moduledoc false
  # Runs a component's import function for `Wasmex.Callback`, in the callback's own
  # process: the params as the port sent them (already in the Elixir shapes of the value
  # mapping), and the function's value as the one result, which the port converts to the
  # import's result type and checks.

  alias Wasmex.Components.HostResource.{Handles, Table}

  @doc "`{:ok, value}` or `{:error, message}`."
  @spec run(function(), String.t(), String.t(), list()) :: {:ok, term()} | {:error, String.t()}
  def run(fun, ns, name, params) do
    guarded(ns, name, fn -> {:ok, apply(fun, params)} end)
  end

  @doc """
  Runs a host resource's function (`Wasmex.Components.HostResource`) for the instance
  whose callbacks `owner` runs: handles in the params become the owner's terms, and terms
  the result holds where its type has handles become new rows. `{:ok, value}` or
  `{:error, message}` (which traps the component's call).
  """
  @spec run_resource(tuple(), pid(), String.t(), String.t(), list()) ::
          {:ok, term()} | {:error, String.t()}
  def run_resource({:resource_fn, module, fun, kind, shape}, owner, ns, name, params) do
    guarded(ns, name, fn -> resource_call(module, fun, kind, shape, owner, params) end)
  end

  # The guest dropped an owned handle: its row goes, and the module releases the term.
  defp resource_call(_module, :drop, :drop, _shape, owner, [id]) do
    with {:ok, module, term} <- Table.take(owner, id) do
      module.drop(term)
      {:ok, :ok}
    end
  end

  defp resource_call(module, fun, kind, shape, owner, params) do
    with {:ok, args} <- Handles.terms(owner, params) do
      case {kind, apply(module, fun, args)} do
        {:constructor, {:error, _} = error} ->
          {:error, "the constructor returned #{inspect(error, limit: 10)}, not a resource"}

        {_kind, value} ->
          case Handles.put(owner, module, shape, value) do
            {:ok, value} ->
              {:ok, value}

            {:error, message} ->
              {:error, "#{inspect(module)}.#{fun} returned a wrong value: #{message}"}
          end
      end
    end
  end

  defp guarded(ns, name, fun) do
    import = if ns == "", do: name, else: "#{ns}##{name}"

    try do
      Wasmex.Telemetry.span([:callback], %{namespace: ns, name: name, instance: nil}, fun)
    rescue
      e -> {:error, "the import #{import} raised: #{Exception.message(e)}"}
    catch
      kind, reason ->
        {:error, "the import #{import} failed: #{inspect({kind, reason}, limit: 10)}"}
    end
  end
end
