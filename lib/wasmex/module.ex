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

  alias Wasmex.{Engine, Host, StoreOrCaller, Wire}
  alias Wasmex.Module.Seal

  @enforce_keys [:host, :key, :source]
  # `resource` (`{host, key}`: where the compiled code lives) and `reference` (made with
  # the handle) are the fields of Wasmex's struct; the others are internal.
  # `id`: an `:atomics` array freed with the last copy of the struct (a table row per
  # compiled module would never be): word 1 is set to 1 on the first instantiation, word 2
  # holds the length + 1 of a name given by `set_name/2` and the words after it its bytes.
  # `sealed`: compiled by `Wasmex.start_link/1` for its own instance, so instantiated from
  # the start.
  defstruct [
    :resource,
    :reference,
    :host,
    :key,
    :source,
    :id,
    name: nil,
    exports: %{},
    imports: %{},
    sealed: false
  ]

  # The longest name `set_name/2` takes, in bytes (it is kept in the module's atomics).
  @max_name 256
  @name_words div(@max_name, 8)

  @typedoc "Where a host that has not seen the module loads it from."
  @type source :: {:wasm, binary()} | {:precompiled, binary()}

  @type t :: %__MODULE__{
          resource: {pid(), binary()},
          reference: reference(),
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
  (earlier Wasmex API); afterwards `{:error, reason}`. A name is at most 256 bytes and
  can only be set on the node that compiled the module.

      iex> {:ok, module} = Wasmex.Module.compile("(module)")
      iex> Wasmex.Module.set_name(module, "renamed")
      :ok
      iex> Wasmex.Module.name(module)
      "renamed"
  """
  @spec set_name(t(), String.t()) :: :ok | {:error, String.t()}
  def set_name(%__MODULE__{id: id, sealed: sealed}, name) when is_binary(name) do
    cond do
      sealed or instantiated?(id) ->
        {:error, "the module was already instantiated; its name can no longer change"}

      byte_size(name) > @max_name ->
        {:error, "a module name is at most #{@max_name} bytes, got #{byte_size(name)}"}

      true ->
        store_name(id, name)
    end
  end

  # The name goes into the module's own atomics, freed with it: no table row to leak.
  defp store_name(id, name) do
    padded = name <> :binary.copy(<<0>>, rem(8 - rem(byte_size(name), 8), 8))

    for {<<word::64>>, i} <- Enum.with_index(for(<<w::binary-8 <- padded>>, do: w)),
        do: :atomics.put(id, 3 + i, word)

    :atomics.put(id, 2, byte_size(name) + 1)
    :ok
  rescue
    ArgumentError -> {:error, "a module's name can only be set on the node that compiled it"}
  end

  defp stored_name(id) do
    case :atomics.get(id, 2) do
      0 ->
        nil

      length_plus_one ->
        words = for i <- 1..@name_words, into: <<>>, do: <<:atomics.get(id, 2 + i)::64>>
        binary_part(words, 0, length_plus_one - 1)
    end
  rescue
    ArgumentError -> nil
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
    Seal.sealed(Host.request(host, Wire.module_serialize(key, source)))
  end

  @doc """
  Loads a module serialized by `serialize/1` or `Wasmex.Engine.precompile_module/2` into
  `engine` (the default engine when `nil`).

  An artifact is executable code, so it is sealed when it is made (`Wasmex.Module.Seal`):
  only artifacts sealed under this node's artifact key load, and anything else (bytes
  changed after sealing, sealed under another key, or not an artifact) is refused with an
  error before it reaches the port. To load artifacts made on another machine, set the
  same `config :wasmex, artifact_key: ...` on both. An artifact compiled with another
  engine configuration is refused too.
  """
  @spec unsafe_deserialize(binary(), Engine.t() | nil) :: {:ok, t()} | {:error, String.t()}
  def unsafe_deserialize(bytes, engine \\ nil) when is_binary(bytes) do
    %Engine{host: host} = engine || Engine.default()

    with {:ok, seal_key} <- Seal.key(),
         {:ok, artifact, digest} <- Seal.open(bytes, seal_key),
         do: load(host, {:precompiled, artifact}, digest)
  end

  @doc false
  # The name of a module source in every host: the SHA-256 of its kind and bytes, which the
  # port checks against the bytes whenever they come with it. Equal sources share it; no
  # one can make two different sources share it.
  @spec key(source()) :: binary()
  def key({kind, bytes}), do: :crypto.hash(:sha256, [Atom.to_string(kind), bytes])

  defp load(host, source, key \\ nil) do
    {kind, bytes} = source
    metadata = %{host: host, source: kind, byte_size: byte_size(bytes)}

    Wasmex.Telemetry.span([:module, :compile], metadata, fn ->
      compile_in(host, source, key || key(source))
    end)
  end

  defp compile_in(host, source, key) do
    with {:ok, {name, exports, imports}} <- Host.request(host, Wire.module_compile(key, source)) do
      {:ok,
       %__MODULE__{
         resource: {host, key},
         reference: make_ref(),
         host: host,
         key: key,
         source: source,
         name: name,
         exports: exports,
         imports: imports,
         # `key` names the code (equal bytes share it); `id` names this compiled module.
         id: :atomics.new(2 + @name_words, signed: false)
       }}
    end
  end

  @doc "The module's name from its name section, or `nil`."
  @spec name(t()) :: String.t() | nil
  def name(%__MODULE__{id: id, name: name}), do: stored_name(id) || name

  @doc """
  The module's exports: a map of name to `{:fn, params, results}`, `{:global, %{type:,
  mutability:}}`, `{:memory, %{minimum:, shared:, memory64:}}` or `{:table, %{type:,
  minimum:}}` (memories and tables add `maximum:` when they have one). A value type is
  `:i32`, `:i64`, `:f32`, `:f64`, `:v128`, or for a reference type
  `{:reference, "(ref null func)"}` (a `funcref`), `{:reference, "(ref null extern)"}` (an
  `externref`) and so on.

      iex> {:ok, module} = Wasmex.Module.compile("(module (table (export \\"t\\") 1 funcref))")
      iex> Wasmex.Module.exports(module)
      %{"t" => {:table, %{type: {:reference, "(ref null func)"}, minimum: 1}}}
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
