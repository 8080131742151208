defmodule Wasmex.StoreOrCaller do
  @moduledoc """
  A store, or the caller of an import callback standing in for its store.

  A store holds Wasm instances and their state. Inside an import callback, the `caller`
  of the callback context must be used wherever a store is expected: requests through the
  caller are served by the Wasm frame that is waiting for the callback, while requests
  through the store itself wait until the running call ends. A caller stops being valid
  when its callback returns.
  """

  alias Wasmex.{Host, Wire}

  @enforce_keys [:host, :store_id]
  # `resource` and `reference` are the fields Wasmex's struct has: `resource` is where the
  # store lives (`{host, context}`), `reference` a reference made with the handle. Two
  # handles on the same store have the same `resource` (compare that, not the structs).
  # The other fields are internal.
  defstruct [:resource, :reference, :host, :store_id, caller_id: nil]

  @type t :: %__MODULE__{
          resource: {pid(), Wasmex.Wire.context()},
          reference: reference(),
          host: pid(),
          store_id: non_neg_integer(),
          caller_id: non_neg_integer() | nil
        }

  @doc false
  # A handle on store `store_id` of `host` or, with `caller_id`, on the caller of one of
  # its running callbacks.
  @spec new(pid(), non_neg_integer(), non_neg_integer() | nil) :: t()
  def new(host, store_id, caller_id \\ nil) do
    store = %__MODULE__{host: host, store_id: store_id, caller_id: caller_id}
    %{store | resource: {host, context(store)}, reference: make_ref()}
  end

  @doc false
  @spec context(t()) :: Wasmex.Wire.context()
  def context(%__MODULE__{store_id: id, caller_id: nil}), do: id
  def context(%__MODULE__{store_id: id, caller_id: caller}), do: {:caller, id, caller}

  @doc """
  Sets the fuel of the store. Needs an engine with `consume_fuel` enabled.

      iex> {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{consume_fuel: true})
      iex> {:ok, store} = Wasmex.Store.new(nil, engine)
      iex> Wasmex.StoreOrCaller.set_fuel(store, 10)
      :ok
      iex> Wasmex.StoreOrCaller.get_fuel(store)
      {:ok, 10}
  """
  @spec set_fuel(t(), non_neg_integer()) :: :ok | {:error, String.t()}
  def set_fuel(%__MODULE__{} = store, fuel) when is_integer(fuel) and fuel >= 0 do
    with {:ok, _} <- Host.request(store.host, Wire.fuel_set(context(store), fuel)), do: :ok
  end

  @doc "Returns the fuel left in the store."
  @spec get_fuel(t()) :: {:ok, non_neg_integer()} | {:error, String.t()}
  def get_fuel(%__MODULE__{} = store) do
    Host.request(store.host, Wire.fuel_get(context(store)))
  end

  defimpl Inspect do
    def inspect(%{caller_id: nil} = s, _opts),
      do: "#Wasmex.StoreOrCaller<store #{s.store_id} on #{inspect(s.host)}>"

    def inspect(s, _opts),
      do:
        "#Wasmex.StoreOrCaller<caller #{s.caller_id} of store #{s.store_id} on #{inspect(s.host)}>"
  end
end
