defmodule Wasmex.Components.HostResource.Table do
  @moduledoc """
  The Elixir terms behind host resource handles (`Wasmex.Components.HostResource`).

  A row belongs to the server of a component instance (its owner: the
  `Wasmex.Components` server, or the process that called `Wasmex.Components.Instance.new/3`)
  and has an id, the only thing the port and the guest see. Ids the port sends back are
  looked up under the owner, so an id cannot reach another instance's terms.

  This process watches every owner: when one stops (its instance goes with it), its rows
  go, and `drop/1` of each row's module is called, in a process of its own, for the terms
  the guest still held.
  """

  use GenServer

  @table Wasmex.Components.HostResources
  # Ids are a handle's `rep` in the port: 32 bits.
  @max_id 0xFFFF_FFFF

  @doc false
  def start_link(_opts), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc "Keeps `term` (implemented by `module`) for `owner`: `{:ok, id}`."
  @spec put(pid(), module(), term()) :: {:ok, pos_integer()} | {:error, String.t()}
  def put(owner, module, term) do
    case :ets.update_counter(@table, {owner, :next}, 1, {{owner, :next}, 0}) do
      id when id <= @max_id ->
        :ets.insert(@table, {{owner, id}, module, term})
        watch(owner)
        {:ok, id}

      _ ->
        {:error, "too many host resources made by one instance (ids are 32 bits)"}
    end
  end

  @doc "The term of row `id` of `owner`, left in place (a borrow)."
  @spec fetch(pid(), term()) :: {:ok, term()} | {:error, String.t()}
  def fetch(owner, id) do
    case :ets.lookup(@table, {owner, id}) do
      [{_, _module, term}] when is_integer(id) -> {:ok, term}
      _ -> {:error, unknown(id)}
    end
  end

  @doc "Takes row `id` of `owner` out of the table (an owned handle): `{:ok, module, term}`."
  @spec take(pid(), term()) :: {:ok, module(), term()} | {:error, String.t()}
  def take(owner, id) do
    case is_integer(id) and :ets.take(@table, {owner, id}) do
      [{_, module, term}] -> {:ok, module, term}
      _ -> {:error, unknown(id)}
    end
  end

  @doc "Puts back a row `take/2` took (the callback it was taken for never ran)."
  @spec restore(pid(), pos_integer(), module(), term()) :: :ok
  def restore(owner, id, module, term) do
    :ets.insert(@table, {{owner, id}, module, term})
    watch(owner)
  end

  @doc "How many rows `owner` has."
  @spec count(pid()) :: non_neg_integer()
  def count(owner),
    do: :ets.select_count(@table, [{{{owner, :"$1"}, :_, :_}, [{:is_integer, :"$1"}], [true]}])

  defp unknown(id), do: "unknown host resource handle #{inspect(id, limit: 5)}"

  defp watch(owner) do
    if :ets.insert_new(@table, {{owner, :watched}, true}),
      do: GenServer.call(__MODULE__, {:watch, owner})

    :ok
  end

  @impl true
  def init(nil) do
    :ets.new(@table, [:named_table, :public, :set, write_concurrency: true])
    {:ok, nil}
  end

  @impl true
  def handle_call({:watch, owner}, _from, state) do
    Process.monitor(owner)
    {:reply, :ok, state}
  end

  @impl true
  def handle_info({:DOWN, _ref, :process, owner, _reason}, state) do
    # The mark goes first: a row put from now on watches the owner again (and is taken at
    # once, the owner being gone).
    :ets.delete(@table, {owner, :watched})
    :ets.delete(@table, {owner, :next})
    ids = :ets.select(@table, [{{{owner, :"$1"}, :_, :_}, [{:is_integer, :"$1"}], [:"$1"]}])

    left =
      for id <- ids, [{_, module, term}] <- [:ets.take(@table, {owner, id})], do: {module, term}

    if left != [], do: spawn(fn -> Enum.each(left, &release/1) end)
    {:noreply, state}
  end

  defp release({module, term}) do
    module.drop(term)
  rescue
    _ -> :ok
  catch
    _, _ -> :ok
  end
end
