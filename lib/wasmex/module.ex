defmodule Wasmex.Module do
  @moduledoc """
  A compiled Wasm module: stateless code that can be instantiated many times.

  The struct keeps the module's description (`name/1`, `exports/1`, `imports/1` need no
  round trip) and its original bytes, shared rather than copied, so that any host,
  even one on another node, can load it on first use.

      iex> {:ok, store} = Wasmex.Store.new()
      iex> {:ok, module} = Wasmex.Module.compile(store, "(module $hello (func (export \\"f\\") (result i32) i32.const 7))")
      iex> Wasmex.Module.name(module)
      "hello"
      iex> Wasmex.Module.exports(module)
      %{"f" => {:fn, [], [:i32]}}
  """

  alias Wasmex.{Engine, Host, StoreOrCaller}

  @enforce_keys [:host, :key, :source]
  # `id`: an `:atomics` array of one, set to 1 on the first instantiation, freed with the
  # last copy of the struct (a table row per compiled module would never be). `sealed`:
  # compiled by `Wasmex.start_link/1` for its own instance, so instantiated from the start.
  defstruct [:host, :key, :source, :id, name: nil, exports: %{}, imports: %{}, sealed: false]

  @typedoc "Where a host that has not seen the module loads it from."
  @type source :: {:wasm, binary()} | {:precompiled, binary()}

  @type t :: %__MODULE__{
          host: pid(),
          key: binary(),
          id: reference(),
          source: source(),
          name: String.t() | nil,
          exports: map(),
          imports: map(),
          sealed: boolean()
        }

  @doc """
  Compiles a module from `.wasm` bytes or `.wat` text in the store's host.

      iex> {:ok, store} = Wasmex.Store.new()
      iex> {:error, "Error while parsing bytes: " <> _} = Wasmex.Module.compile(store, "(modul")
      iex> :ok
      :ok
  """
  @spec compile(StoreOrCaller.t(), binary()) :: {:ok, t()} | {:error, String.t()}
  def compile(%StoreOrCaller{host: host}, bytes) when is_binary(bytes) do
    load(host, {:wasm, bytes})
  end

  @doc """
  Compiles a module that any store or host can instantiate (earlier Wasmex API); it is
  compiled in the default engine.

      iex> {:ok, module} = Wasmex.Module.compile("(module $m)")
      iex> Wasmex.Module.name(module)
      "m"
  """
  @spec compile(binary()) :: {:ok, t()} | {:error, String.t()}
  def compile(bytes) when is_binary(bytes), do: load(Engine.default().host, {:wasm, bytes})

  @doc """
  Sets the name `name/1` returns. Allowed until the module is first instantiated
  (earlier Wasmex API); afterwards `{:error, reason}`.

      iex> {:ok, module} = Wasmex.Module.compile("(module)")
      iex> Wasmex.Module.set_name(module, "renamed")
      :ok
      iex> Wasmex.Module.name(module)
      "renamed"
  """
  @spec set_name(t(), String.t()) :: :ok | {:error, String.t()}
  def set_name(%__MODULE__{id: id, sealed: sealed}, name) when is_binary(name) do
    if sealed or instantiated?(id) do
      {:error, "the module was already instantiated; its name can no longer change"}
    else
      :ets.insert(__MODULE__, {{:name, id}, name})
      :ok
    end
  end

  @doc false
  # Called on instantiation: from now on the name is fixed.
  def mark_instantiated(%__MODULE__{sealed: true}), do: true

  def mark_instantiated(%__MODULE__{id: id}) do
    :atomics.put(id, 1, 1)
    true
  rescue
    # A struct from another node: its atomics stayed there. Remembered in the table.
    ArgumentError -> :ets.insert(__MODULE__, {{:instantiated, id}, true})
  end

  defp instantiated?(id) do
    :atomics.get(id, 1) == 1
  rescue
    ArgumentError -> :ets.member(__MODULE__, {:instantiated, id})
  end

  @doc """
  Serializes the compiled module. Load it back with `unsafe_deserialize/2` in an engine
  with the same configuration.
  """
  @spec serialize(t()) :: {:ok, binary()} | {:error, String.t()}
  def serialize(%__MODULE__{host: host, key: key, source: source}) do
    Host.request(host, :module_serialize, {key, source})
  end

  @doc """
  Loads a module serialized by `serialize/1` or `Wasmex.Engine.precompile_module/2` into
  `engine` (the default engine when `nil`).

  Only pass bytes that came from `serialize/1` on this machine: a crafted artifact is
  executable code. Bytes that are not an artifact, or one compiled with another engine
  configuration, are refused with an error.
  """
  @spec unsafe_deserialize(binary(), Engine.t() | nil) :: {:ok, t()} | {:error, String.t()}
  def unsafe_deserialize(bytes, engine \\ nil) when is_binary(bytes) do
    %Engine{host: host} = engine || Engine.default()
    load(host, {:precompiled, bytes})
  end

  @doc false
  # The name of a module source in every host: the SHA-256 of its kind and bytes, which the
  # port checks against the bytes whenever they come with it. Equal sources share it; no
  # one can make two different sources share it.
  @spec key(source()) :: binary()
  def key({kind, bytes}), do: :crypto.hash(:sha256, [Atom.to_string(kind), bytes])

  defp load(host, source) do
    key = key(source)

    with {:ok, {name, exports, imports}} <- Host.request(host, :module_compile, {key, source}) do
      {:ok,
       %__MODULE__{
         host: host,
         key: key,
         source: source,
         name: name,
         exports: exports,
         imports: imports,
         # `key` names the code (equal bytes share it); `id` names this compiled module.
         id: :atomics.new(1, signed: false)
       }}
    end
  end

  @doc "The module's name from its name section, or `nil`."
  @spec name(t()) :: String.t() | nil
  def name(%__MODULE__{id: id, name: name}) do
    case :ets.lookup(__MODULE__, {:name, id}) do
      [{_, renamed}] -> renamed
      [] -> name
    end
  end

  @doc """
  The module's exports: a map of name to `{:fn, params, results}`, `{:global, %{type:,
  mutability:}}`, `{:memory, %{minimum:, shared:, memory64:}}` or `{:table, %{type:,
  minimum:}}` (memories and tables add `maximum:` when they have one).
  """
  @spec exports(t()) :: map()
  def exports(%__MODULE__{exports: exports}), do: exports

  @doc "The module's imports, grouped by namespace, with the same info tuples as `exports/1`."
  @spec imports(t()) :: map()
  def imports(%__MODULE__{imports: imports}), do: imports

  defimpl Inspect do
    def inspect(m, _opts) do
      "#Wasmex.Module<#{m.name || "unnamed"}, #{map_size(m.exports)} exports>"
    end
  end
end
