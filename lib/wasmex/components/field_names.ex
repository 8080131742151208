defmodule Wasmex.Components.FieldNames do
  @moduledoc """
  Converts record field names between Elixir's snake_case and WIT's kebab-case, for the
  functions `Wasmex.Components.ComponentServer` generates (`convert_field_names: true`).
  Only map keys change; everything else is left as it is.

      iex> Wasmex.Components.FieldNames.to_wit(%{full_name: "Ada", tags: [%{is_main: true}]})
      %{"full-name": "Ada", tags: [%{"is-main": true}]}
      iex> Wasmex.Components.FieldNames.from_wit({:ok, %{"full-name": "Ada", home: {:some, %{x: 1}}}})
      {:ok, %{full_name: "Ada", home: {:some, %{x: 1}}}}
  """

  @doc "Map keys from snake_case to kebab-case, all through the term."
  @spec to_wit(term()) :: term()
  def to_wit(term), do: convert(term, &String.replace(&1, "_", "-"))

  @doc "Map keys from kebab-case to snake_case, all through the term."
  @spec from_wit(term()) :: term()
  def from_wit(term), do: convert(term, &String.replace(&1, "-", "_"))

  defp convert(%{} = map, f) when not is_struct(map),
    do: Map.new(map, fn {k, v} -> {key(k, f), convert(v, f)} end)

  defp convert(list, f) when is_list(list), do: Enum.map(list, &convert(&1, f))

  defp convert(tuple, f) when is_tuple(tuple),
    do: tuple |> Tuple.to_list() |> Enum.map(&convert(&1, f)) |> List.to_tuple()

  defp convert(other, _f), do: other

  # The names come from the component's own types (see Wasmex.Components.Component).
  defp key(k, f) when is_atom(k) and not is_boolean(k) and not is_nil(k),
    do: k |> Atom.to_string() |> f.() |> String.to_atom()

  defp key(k, f) when is_binary(k), do: f.(k)
  defp key(k, _f), do: k
end
