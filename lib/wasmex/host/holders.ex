defmodule Wasmex.Host.Holders do
  @moduledoc """
  Who holds each store of a host: a struct and functions, no process (the monitors are
  made and removed by the process that owns the struct, the host server).

  A store lives while any of its holders does (its creator, each `Wasmex` instance server
  using it). Each holder of a store is monitored once; when the last one lets go (or exits)
  the store is to be dropped in the port, which the functions here report as `:drop`.

      iex> alias Wasmex.Host.Holders
      iex> holders = Holders.new() |> Holders.hold(3, self())
      iex> Holders.holds?(holders, 3)
      true
      iex> {:drop, holders} = Holders.release(holders, 3, self())
      iex> Holders.empty?(holders)
      true
  """

  defstruct stores: %{}, monitors: %{}

  @opaque t :: %__MODULE__{
            stores: %{non_neg_integer() => %{pid() => reference()}},
            monitors: %{reference() => {non_neg_integer(), pid()}}
          }

  @doc "No store held."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc "Whether the store is known (held by anyone)."
  @spec holds?(t(), non_neg_integer()) :: boolean()
  def holds?(%__MODULE__{stores: stores}, store_id), do: Map.has_key?(stores, store_id)

  @doc "Whether no store is held."
  @spec empty?(t()) :: boolean()
  def empty?(%__MODULE__{stores: stores}), do: map_size(stores) == 0

  @doc "How many holders are monitored, over all stores."
  @spec count(t()) :: non_neg_integer()
  def count(%__MODULE__{monitors: monitors}), do: map_size(monitors)

  @doc "Adds `pid` to the holders of a store (a store not held yet starts being held)."
  @spec hold(t(), non_neg_integer(), pid()) :: t()
  def hold(%__MODULE__{} = h, store_id, pid) do
    holders = Map.get(h.stores, store_id, %{})

    if Map.has_key?(holders, pid) do
      h
    else
      ref = Process.monitor(pid)

      %{
        h
        | stores: Map.put(h.stores, store_id, Map.put(holders, pid, ref)),
          monitors: Map.put(h.monitors, ref, {store_id, pid})
      }
    end
  end

  @doc """
  `pid` lets go of a store: `{:drop, holders}` if it was the last holder (the store is
  to be dropped), `{:keep, holders}` if others hold it or `pid` did not.
  """
  @spec release(t(), non_neg_integer(), pid()) :: {:drop | :keep, t()}
  def release(%__MODULE__{} = h, store_id, pid) do
    case h.stores do
      %{^store_id => %{^pid => ref}} ->
        Process.demonitor(ref, [:flush])
        unhold(%{h | monitors: Map.delete(h.monitors, ref)}, store_id, pid)

      _ ->
        {:keep, h}
    end
  end

  @doc """
  Every holder lets go of a store (`Wasmex.Store.release/1`): `{:drop, holders}`, or
  `:unknown` for a store nobody holds.
  """
  @spec free(t(), non_neg_integer()) :: {:drop, t()} | :unknown
  def free(%__MODULE__{} = h, store_id) do
    case h.stores do
      %{^store_id => holders} ->
        Enum.each(holders, fn {_pid, ref} -> Process.demonitor(ref, [:flush]) end)
        monitors = Map.drop(h.monitors, Map.values(holders))
        {:drop, %{h | stores: Map.delete(h.stores, store_id), monitors: monitors}}

      _ ->
        :unknown
    end
  end

  @doc """
  A monitor fired: if it watched a holder, `{:drop | :keep, store_id, holders}` as for
  `release/3`; otherwise `:unknown`.
  """
  @spec down(t(), reference(), pid()) :: {:drop | :keep, non_neg_integer(), t()} | :unknown
  def down(%__MODULE__{} = h, ref, pid) do
    case Map.pop(h.monitors, ref) do
      {{store_id, ^pid}, monitors} ->
        {action, h} = unhold(%{h | monitors: monitors}, store_id, pid)
        {action, store_id, h}

      _ ->
        :unknown
    end
  end

  defp unhold(h, store_id, pid) do
    holders = h.stores |> Map.get(store_id, %{}) |> Map.delete(pid)

    if map_size(holders) == 0,
      do: {:drop, %{h | stores: Map.delete(h.stores, store_id)}},
      else: {:keep, %{h | stores: Map.put(h.stores, store_id, holders)}}
  end
end
