defmodule Wasmex.Host.KnownModules do
  @moduledoc false
  # Module sources travel only to a host that has not loaded them yet; once a request
  # that carried a source succeeds, the host knows the module by its key.

  @doc """
  The arguments to send for `op` and `{learn, stripped}`: the keys whose source goes
  along (known once the request succeeds) and those whose source was left out.
  """
  @spec strip(atom(), tuple(), MapSet.t()) :: {tuple(), {list(), list()}}
  def strip(
        :instantiate,
        {ctx, key, source, handler, imports, links, timeout},
        known
      ) do
    {source, acc} = strip_source(key, source, known, {[], []})

    {links, acc} =
      Enum.map_reduce(links, acc, fn {name, k, s}, acc ->
        {s, acc} = strip_source(k, s, known, acc)
        {{name, k, s}, acc}
      end)

    {{ctx, key, source, handler, imports, links, timeout}, acc}
  end

  def strip(:module_serialize, {key, source}, known) do
    {source, acc} = strip_source(key, source, known, {[], []})
    {{key, source}, acc}
  end

  def strip(:module_compile, {key, _source} = args, _known),
    do: {args, {[key], []}}

  def strip(_op, args, _known), do: {args, {[], []}}

  defp strip_source(key, source, known, {learn, stripped}) do
    if MapSet.member?(known, key),
      do: {nil, {learn, [key | stripped]}},
      else: {source, {[key | learn], stripped}}
  end
end
