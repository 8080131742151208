defmodule Wasmex.Components.Component do
  @moduledoc """
  A compiled WebAssembly component, ready to be instantiated with
  `Wasmex.Components.Instance.new/3` or `Wasmex.Components.start_link/1`.

  Bytes are checked before they are compiled, and what is wrong with them is said:

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> Wasmex.Components.Component.new(store, "(module)")
      {:error, "the bytes are a core module, not a component: compile them with Wasmex.Module.compile/2"}
      iex> Wasmex.Components.Component.new(store, <<0, "asm", 13, 0>>)
      {:error, "the component is truncated: 6 bytes, shorter than the 8-byte header"}

  The component's WIT names (record fields, cases, flags) become atoms when it is
  compiled, so that values carrying them can come back from the port, which may not create
  atoms. A component may use at most 10,000 distinct names, and a component whose new
  names would take the node's atom table past half full is refused (atoms are never
  freed, and a node whose atom table is full stops).
  """

  alias Wasmex.{Host, StoreOrCaller}

  @enforce_keys [:host, :key, :source]
  # `resource` (`{host, key}`) and `reference` are the fields of Wasmex's struct; the
  # others are internal.
  defstruct [:resource, :reference, :host, :key, :source]

  @type t :: %__MODULE__{
          resource: {pid(), binary()},
          reference: reference(),
          host: pid(),
          key: binary(),
          source: {:component, binary()}
        }

  # The most names the port may announce for one component, and the longest atom.
  @max_names 10_000
  @max_atom 255

  @doc """
  Compiles component bytes (binary or text format) in the store's engine.

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> {:ok, component} = Wasmex.Components.Component.new(store, File.read!("test/fixtures/components/spin.wasm"))
      iex> match?(%Wasmex.Components.Component{}, component)
      true
  """
  @spec new(StoreOrCaller.t(), binary()) :: {:ok, t()} | {:error, String.t()}
  def new(%StoreOrCaller{host: host}, bytes) when is_binary(bytes) do
    source = {:component, bytes}
    key = :crypto.hash(:sha256, ["component", bytes])

    with {:ok, names} <- Host.request(host, Wasmex.Wire.component_compile(key, source)),
         :ok <- make_atoms(names) do
      {:ok,
       %__MODULE__{
         resource: {host, key},
         reference: make_ref(),
         host: host,
         key: key,
         source: source
       }}
    end
  end

  # The port is untrusted: only a bounded list of short strings becomes atoms. Atoms are
  # never freed, and a node whose atom table is full stops: names that are not atoms yet
  # are made only while the table stays at most half full.
  defp make_atoms(names) when is_list(names) and length(names) <= @max_names do
    if Enum.all?(names, &(is_binary(&1) and String.length(&1) <= @max_atom)) do
      new = Enum.reject(names, &atom?/1)
      count = :erlang.system_info(:atom_count)
      limit = :erlang.system_info(:atom_limit)

      if room_for_atoms?(length(new), count, limit),
        do: Enum.each(new, &String.to_atom/1),
        else: {:error, too_many_atoms(length(new), count, limit)}
    else
      {:error, "the Wasm host sent malformed component names"}
    end
  end

  defp make_atoms(_names), do: {:error, "the Wasm host sent malformed component names"}

  defp atom?(name) do
    _ = String.to_existing_atom(name)
    true
  rescue
    ArgumentError -> false
  end

  @doc false
  # Whether `new` more atoms keep a table of `limit` atoms, `count` of them taken, at most
  # half full.
  @spec room_for_atoms?(non_neg_integer(), non_neg_integer(), pos_integer()) :: boolean()
  def room_for_atoms?(new, count, limit), do: count + new <= div(limit, 2)

  defp too_many_atoms(new, count, limit) do
    "the component's WIT names would make #{new} new atoms, and the node's atom table " <>
      "(#{count} of #{limit} taken) is kept at most half full: atoms are never freed"
  end
end
