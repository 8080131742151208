defmodule Wasmex.Components.Imports do
  @moduledoc false
  # Host imports of a component: `%{"name" => {:fn, fun}}` for world-level functions and
  # `%{"ns:pkg/iface@ver" => %{"name" => {:fn, fun}}}` for functions of an interface.
  # Normalized to `%{interface | "" => %{name => {:fn, fun}}}`, the shape
  # `Wasmex.Callback` looks callbacks up in.

  @doc "The imports keyed by interface (`\"\"` for world-level ones), or what is wrong."
  @spec normalize(map()) :: {:ok, map()} | {:error, String.t()}
  def normalize(imports) when is_map(imports) do
    Enum.reduce_while(imports, {:ok, %{}}, fn
      {name, {:fn, fun}}, {:ok, acc} when is_function(fun) ->
        {:cont, {:ok, put_in_ns(acc, "", to_string(name), fun)}}

      {iface, fns}, {:ok, acc} when is_map(fns) ->
        case interface(to_string(iface), fns) do
          {:ok, fns} ->
            {:cont, {:ok, Map.update(acc, to_string(iface), fns, &Map.merge(&1, fns))}}

          error ->
            {:halt, error}
        end

      {name, other}, _acc ->
        {:halt,
         {:error,
          "import #{name} must be {:fn, fun} or a map of an interface's functions, got: " <>
            inspect(other, limit: 10)}}
    end)
  end

  def normalize(other),
    do: {:error, "imports must be a map, got: #{inspect(other, limit: 10)}"}

  defp interface(iface, fns) do
    Enum.reduce_while(fns, {:ok, %{}}, fn
      {name, {:fn, fun}}, {:ok, acc} when is_function(fun) ->
        {:cont, {:ok, Map.put(acc, to_string(name), {:fn, fun})}}

      {name, other}, _acc ->
        {:halt,
         {:error, "import #{iface}##{name} must be {:fn, fun}, got: #{inspect(other, limit: 10)}"}}
    end)
  end

  defp put_in_ns(acc, ns, name, fun),
    do: Map.update(acc, ns, %{name => {:fn, fun}}, &Map.put(&1, name, {:fn, fun}))

  @doc "The imports as the port takes them: `[{interface | nil, name}]`."
  @spec to_wire(map()) :: [{String.t() | nil, String.t()}]
  def to_wire(normalized) do
    for {ns, fns} <- normalized, {name, _} <- fns, do: {if(ns == "", do: nil, else: ns), name}
  end
end
