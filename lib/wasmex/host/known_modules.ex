defmodule Wasmex.Host.KnownModules do
  @moduledoc false
  # Module sources travel only to a host that has not loaded them yet; once a request
  # that carried a source succeeds, the host knows the module by its key.
  #
  # A large `.wasm` source is not sent at first even to a host that does not know it: its
  # key goes alone, and the port maps the module's compiled artifact from the cache
  # directory when one proves to hold it. Only when the port answers that it has neither
  # the module nor its artifact is the request sent again, with the source (`probe: false`).

  # Sources up to this size go along at once: sending them costs less than the extra round
  # trip of a miss, and the port compiles them in-process without keeping an artifact.
  @probe_above 65_536

  @doc """
  The arguments to send for `op` and `{learn, stripped}`: the keys whose source goes
  along or was probed for (known once the request succeeds) and those whose source was
  left out (sent again if the port answers that it lacks the module). With `probe: false`
  the source goes along whenever the module is not known.
  """
  @spec strip(atom(), tuple(), MapSet.t(), keyword()) :: {tuple(), {list(), list()}}
  def strip(op, args, known, opts \\ [])

  def strip(:instantiate, {ctx, key, source, handler, imports, links, timeout}, known, opts) do
    probe = Keyword.get(opts, :probe, true)
    {source, acc} = strip_source(key, source, known, probe, {[], []})

    {links, acc} =
      Enum.map_reduce(links, acc, fn {name, k, s}, acc ->
        {s, acc} = strip_source(k, s, known, probe, acc)
        {{name, k, s}, acc}
      end)

    {{ctx, key, source, handler, imports, links, timeout}, acc}
  end

  def strip(:module_serialize, {key, source}, known, opts) do
    {source, acc} = strip_source(key, source, known, Keyword.get(opts, :probe, true), {[], []})
    {{key, source}, acc}
  end

  def strip(:module_compile, {key, source} = args, _known, opts) do
    if Keyword.get(opts, :probe, true) and probe?(source),
      do: {{key, nil}, {[key], [key]}},
      else: {args, {[key], []}}
  end

  def strip(_op, args, _known, _opts), do: {args, {[], []}}

  defp strip_source(key, source, known, probe, {learn, stripped}) do
    cond do
      MapSet.member?(known, key) -> {nil, {learn, [key | stripped]}}
      probe and probe?(source) -> {nil, {[key | learn], [key | stripped]}}
      true -> {source, {[key | learn], stripped}}
    end
  end

  defp probe?({:wasm, bytes}) when byte_size(bytes) > @probe_above, do: true
  defp probe?(_source), do: false
end
