defmodule Wasmex.Host.KnownModules do
  @moduledoc """
  The modules a host's port has loaded, by key: a struct and functions, no process.

  Module sources travel only to a port that has not loaded them yet. A request that names
  a known module goes without its source; if the port answers that it dropped the module
  since (it keeps its most recently used ones), the request is sent again with the source.
  Once a request that carried a source succeeds, the port knows the module.

  A large `.wasm` source (over 64 KiB) is left out at first even for a port that has not
  loaded it: its key goes alone, and the port maps the module's compiled artifact from the
  cache directory when a file there proves to hold it. Only if the port answers that it
  has neither is the request sent again, with the source (`probe: false`).

      iex> alias Wasmex.Host.KnownModules
      iex> known = KnownModules.new()
      iex> {args, data} = KnownModules.prepare(known, :module_serialize, {"k", {:wasm, "b"}})
      iex> args
      {"k", {:wasm, "b"}}
      iex> {:ok, known} = KnownModules.answered(known, data, {:ok, "serialized"})
      iex> KnownModules.prepare(known, :module_serialize, {"k", {:wasm, "b"}}) |> elem(0)
      {"k", nil}
  """

  defstruct keys: MapSet.new()

  # Sources up to this size go along at once: sending them costs less than the extra round
  # trip of a miss, and the port compiles them in-process without keeping an artifact.
  @probe_above 65_536

  @opaque t :: %__MODULE__{keys: MapSet.t()}

  @typedoc """
  What a request keeps until its answer: the keys it teaches the port once it succeeds,
  and what to send again (op, the full args, the keys left out) if the port dropped a
  module; `nil` for the requests that name no module.
  """
  @type data :: {[term()], {atom(), tuple(), [term()]} | nil} | nil

  # What the port answers when it no longer has a module (see port/module.rs).
  @not_loaded "the module is not loaded in this host and no source was sent"

  @doc "No module known."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc """
  The args to send for `op` (sources of known modules, and of large ones, left out) and
  the `t:data/0` to keep with the request. With `probe: false`, the source of a module
  the port is not known to have goes along whatever its size.
  """
  @spec prepare(t(), atom(), tuple(), keyword()) :: {tuple(), data()}
  def prepare(known, op, args, opts \\ [])

  def prepare(%__MODULE__{keys: keys}, :instantiate, args, opts) do
    {ctx, key, source, handler, imports, links, timeout} = args
    probe = Keyword.get(opts, :probe, true)
    {source, acc} = strip(key, source, keys, probe, {[], []})

    {links, acc} =
      Enum.map_reduce(links, acc, fn {name, k, s}, acc ->
        {s, acc} = strip(k, s, keys, probe, acc)
        {{name, k, s}, acc}
      end)

    {{ctx, key, source, handler, imports, links, timeout}, data(:instantiate, args, acc)}
  end

  def prepare(%__MODULE__{keys: keys}, :module_serialize, {key, source} = args, opts) do
    {source, acc} = strip(key, source, keys, Keyword.get(opts, :probe, true), {[], []})
    {{key, source}, data(:module_serialize, args, acc)}
  end

  def prepare(_known, :module_compile, {key, source} = args, opts) do
    if Keyword.get(opts, :probe, true) and probe?(source),
      do: {{key, nil}, {[key], {:module_compile, args, [key]}}},
      else: {args, {[key], nil}}
  end

  def prepare(_known, _op, args, _opts), do: {args, nil}

  @doc """
  The answer to a request came: `{:resend, op, args, known}` when the port lacks a module
  whose source was left out (it dropped it, or has no artifact of a large one: send `op`
  with `args` again, with `probe: false`: the sources go along this time), else
  `{:ok, known}` with what the request taught.
  """
  @spec answered(t(), data(), term()) :: {:ok, t()} | {:resend, atom(), tuple(), t()}
  def answered(known, nil, _result), do: {:ok, known}

  def answered(
        %__MODULE__{keys: keys} = known,
        {_learn, {op, args, stripped}},
        {:error, @not_loaded}
      ),
      do: {:resend, op, args, %{known | keys: MapSet.difference(keys, MapSet.new(stripped))}}

  def answered(%__MODULE__{keys: keys} = known, {[_ | _] = learn, _}, {:ok, _}),
    do: {:ok, %{known | keys: Enum.into(learn, keys)}}

  def answered(known, _data, _result), do: {:ok, known}

  @doc "Whether the port is known to have the module `key`."
  @spec known?(t(), term()) :: boolean()
  def known?(%__MODULE__{keys: keys}, key), do: MapSet.member?(keys, key)

  defp data(_op, _args, {[], []}), do: nil
  defp data(_op, _args, {learn, []}), do: {learn, nil}
  defp data(op, args, {learn, stripped}), do: {learn, {op, args, stripped}}

  defp strip(key, source, keys, probe, {learn, stripped}) do
    cond do
      MapSet.member?(keys, key) -> {nil, {learn, [key | stripped]}}
      probe and probe?(source) -> {nil, {[key | learn], [key | stripped]}}
      true -> {source, {[key | learn], stripped}}
    end
  end

  defp probe?({:wasm, bytes}) when byte_size(bytes) > @probe_above, do: true
  defp probe?(_source), do: false
end
