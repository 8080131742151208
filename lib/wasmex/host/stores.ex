defmodule Wasmex.Host.Stores do
  @moduledoc false
  # The host server's side of stores, on its state (`%Wasmex.Host{}`): numbering and
  # opening them, their holders retaining and releasing them, freeing them. What goes to
  # the port goes through Wasmex.Host.Requests (store_open with the next write, drops
  # ahead of it).

  alias Wasmex.Host.{Holders, Requests}

  import Bitwise, only: [<<<: 2]

  @doc """
  A new store, held by `holder`: `{:reply, {:ok, id}, state}` at once for a store without
  WASI whose limits are plain counts, else `{:noreply, state}` and the answer goes to
  `from` once the port has made the store (see `Wasmex.Host.new_store/4`).
  """
  @spec new(struct(), term(), term(), pid(), GenServer.from()) ::
          {:reply, {:ok, pos_integer()}, struct()} | {:noreply, struct()}
  def new(state, limits, wasi, holder, from) do
    id = state.next_store_id
    state = %{state | next_store_id: id + 1}

    if wasi == nil and plain_limits?(limits),
      do: {:reply, {:ok, id}, Requests.open_store(state, id, limits, nil, holder, nil)},
      else: {:noreply, Requests.open_store(state, id, limits, wasi, holder, from)}
  end

  # Limits the port takes as they are (each nil or a count that fits 64 bits): a store
  # with them is not waited for. Others are, so that their creator gets the port's reason.
  defp plain_limits?(nil), do: true

  defp plain_limits?(limits) when is_map(limits) do
    Enum.all?(limits, fn {_key, n} -> n == nil or (is_integer(n) and n >= 0 and n < 1 <<< 64) end)
  end

  defp plain_limits?(_limits), do: false

  @doc "`pid` holds the store too: `{:ok, state}`, or `{{:error, reason}, state}` for an unknown store."
  @spec retain(struct(), non_neg_integer(), pid()) :: {:ok | {:error, String.t()}, struct()}
  def retain(state, store_id, pid) do
    if Holders.holds?(state.holders, store_id),
      do: {:ok, %{state | holders: Holders.hold(state.holders, store_id, pid)}},
      else: {{:error, "unknown store #{store_id}"}, state}
  end

  @doc "`pid` lets go of the store: `{:dropped, state}` if it was the last holder."
  @spec release(struct(), non_neg_integer(), pid()) :: {:dropped | :kept, struct()}
  def release(state, store_id, pid) do
    case Holders.release(state.holders, store_id, pid) do
      {:drop, holders} -> {:dropped, Requests.drop_store(state, holders, store_id)}
      {:keep, holders} -> {:kept, %{state | holders: holders}}
    end
  end

  @doc "Drops the store whoever holds it: `{:ok, state}` or `{:error, reason}`."
  @spec free(struct(), non_neg_integer()) :: {:ok, struct()} | {:error, String.t()}
  def free(state, store_id) do
    case Holders.free(state.holders, store_id) do
      {:drop, holders} -> {:ok, Requests.drop_store(state, holders, store_id)}
      :unknown -> {:error, "unknown store #{store_id}"}
    end
  end
end
