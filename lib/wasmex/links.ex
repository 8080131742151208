defmodule Wasmex.Links do
  @moduledoc false
  # The `links:` option of `Wasmex.start_link/1`: modules whose exports the main module
  # imports under their names.

  alias Wasmex.Module

  @doc """
  Compiles the links in `store` (`module_of` turns a link's spec into a module) and
  returns them in dependency order, as `Wasmex.Instance.new/4` takes them: nested links
  are flattened (each name once) and every link comes after the links whose exports it
  imports.
  """
  @spec compile(Wasmex.StoreOrCaller.t(), map(), (map() -> {:ok, Module.t()} | {:error, term()})) ::
          {:ok, [Wasmex.Instance.link()]} | {:error, term()}
  def compile(store, links, module_of) do
    links
    |> flatten_links()
    |> Enum.uniq_by(fn {name, _} -> name end)
    |> Enum.reduce_while({:ok, %{}}, fn {name, spec}, {:ok, acc} ->
      case module_of.(Map.put(spec, :store, store)) do
        {:ok, module} -> {:cont, {:ok, Map.put(acc, to_string(name), module)}}
        {:error, reason} -> {:halt, {:error, "link #{name}: #{reason}"}}
      end
    end)
    |> case do
      {:ok, modules} -> {:ok, dependency_order(modules)}
      error -> error
    end
  end

  defp flatten_links(links) do
    Enum.flat_map(links, fn {name, spec} ->
      [{name, Map.delete(spec, :links)} | flatten_links(Map.get(spec, :links, %{}))]
    end)
  end

  defp dependency_order(modules) do
    {order, _seen} =
      modules
      |> Map.keys()
      |> Enum.sort()
      |> Enum.reduce({[], MapSet.new()}, &visit_link(&1, modules, &2))

    order |> Enum.reverse() |> Enum.map(&%{name: &1, module: modules[&1]})
  end

  defp visit_link(name, modules, {order, seen}) do
    if MapSet.member?(seen, name) or not Map.has_key?(modules, name) do
      {order, seen}
    else
      deps = modules[name] |> Module.imports() |> Map.keys() |> Enum.sort()

      {order, seen} =
        Enum.reduce(deps, {order, MapSet.put(seen, name)}, &visit_link(&1, modules, &2))

      {[name | order], seen}
    end
  end
end
