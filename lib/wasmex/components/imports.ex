defmodule Wasmex.Components.Imports do
  @moduledoc false
  # Host imports of a component: `%{"name" => {:fn, fun}}` for world-level functions and
  # `%{"ns:pkg/iface@ver" => %{"name" => {:fn, fun}}}` for functions of an interface.
  # Normalized to `%{interface | "" => %{name => {:fn, fun}}}`, the shape
  # `Wasmex.Callback` looks callbacks up in. An interface may also hold a host resource
  # (`Wasmex.Components.HostResource`): `name => {:resource, module}` for the type and
  # `{:resource_fn, module, fun, kind, shape}` for its functions and its drop.

  @doc "The imports keyed by interface (`\"\"` for world-level ones), or what is wrong."
  @spec normalize(map()) :: {:ok, map()} | {:error, String.t()}
  def normalize(imports) when is_map(imports) do
    Enum.reduce_while(imports, {:ok, %{}}, fn
      {name, _}, _acc when not (is_binary(name) or is_atom(name)) ->
        {:halt, not_a_name(name)}

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

  defp not_a_name(name),
    do: {:error, "import names must be strings or atoms, got: #{inspect(name, limit: 10)}"}

  defp interface(iface, fns) do
    Enum.reduce_while(fns, {:ok, %{}}, fn
      {name, _}, _acc when not (is_binary(name) or is_atom(name)) ->
        {:halt, not_a_name(name)}

      {name, {:fn, fun}}, {:ok, acc} when is_function(fun) ->
        {:cont, {:ok, Map.put(acc, to_string(name), {:fn, fun})}}

      {name, {:resource, module} = spec}, {:ok, acc} when is_atom(module) ->
        {:cont, {:ok, Map.put(acc, to_string(name), spec)}}

      {name, {:resource_fn, module, fun, kind, _shape} = spec}, {:ok, acc}
      when is_atom(module) and is_atom(fun) and
             kind in [:constructor, :method, :static, :async_method, :async_static, :drop] ->
        {:cont, {:ok, Map.put(acc, to_string(name), spec)}}

      {name, other}, _acc ->
        {:halt,
         {:error, "import #{iface}##{name} must be {:fn, fun}, got: #{inspect(other, limit: 10)}"}}
    end)
  end

  defp put_in_ns(acc, ns, name, fun),
    do: Map.update(acc, ns, %{name => {:fn, fun}}, &Map.put(&1, name, {:fn, fun}))

  @doc """
  The imports as the port takes them: `[{interface | nil, name}]`, and `{interface, name,
  :resource}` for a host resource type. A resource's drop is no import of the component.
  """
  @spec to_wire(map()) :: [{String.t() | nil, String.t()} | {String.t(), String.t(), :resource}]
  def to_wire(normalized) do
    for {ns, fns} <- normalized,
        {name, spec} <- fns,
        not match?({:resource_fn, _, _, :drop, _}, spec) do
      iface = if ns == "", do: nil, else: ns
      if match?({:resource, _}, spec), do: {iface, name, :resource}, else: {iface, name}
    end
  end
end
