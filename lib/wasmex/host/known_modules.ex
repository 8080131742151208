defmodule Wasmex.Host.KnownModules do
  @moduledoc """
  The modules a host's port has loaded, by key: a struct and functions, no process.

  Module sources travel only to a port that has not loaded them yet. A request that names
  a known module goes without its source; if the port answers that it dropped the module
  since (it keeps its most recently used ones), the request is sent again with the source.
  Once a request that carried a source succeeds, the port knows the module.

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
  The args to send for `op` (sources of known modules left out) and the `t:data/0` to
  keep with the request.
  """
  @spec prepare(t(), atom(), tuple()) :: {tuple(), data()}
  def prepare(%__MODULE__{keys: keys}, :instantiate, args) do
    {ctx, key, source, handler, imports, links, timeout} = args
    {source, acc} = strip(key, source, keys, {[], []})

    {links, acc} =
      Enum.map_reduce(links, acc, fn {name, k, s}, acc ->
        {s, acc} = strip(k, s, keys, acc)
        {{name, k, s}, acc}
      end)

    {{ctx, key, source, handler, imports, links, timeout}, data(:instantiate, args, acc)}
  end

  def prepare(%__MODULE__{keys: keys}, :module_serialize, {key, source} = args) do
    {source, acc} = strip(key, source, keys, {[], []})
    {{key, source}, data(:module_serialize, args, acc)}
  end

  def prepare(_known, :module_compile, {key, _source} = args), do: {args, {[key], nil}}
  def prepare(_known, _op, args), do: {args, nil}

  @doc """
  The answer to a request came: `{:resend, op, args, known}` when the port dropped a module
  this struct thought it had (send `op` with `args` again: the sources go along this
  time), else `{:ok, known}` with what the request taught.
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

  defp strip(key, source, keys, {learn, stripped}) do
    if MapSet.member?(keys, key),
      do: {nil, {learn, [key | stripped]}},
      else: {source, {[key | learn], stripped}}
  end
end
