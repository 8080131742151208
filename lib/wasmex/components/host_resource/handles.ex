defmodule Wasmex.Components.HostResource.Handles do
  @moduledoc """
  Host resource handles in the values of a host resource's callbacks.

  In params the port sends a handle as `{:wasmex_resource, :own | :borrow, id}`; it
  becomes the term kept under that id (an owned handle takes the row: the callback owns
  the term now). In a result the callback gives terms where the WIT type has an owned
  handle of the resource (the shape `Wasmex.Components.Wit.resource/5` gives); each
  becomes a new row, sent as `{:wasmex_resource, id}`.

      iex> alias Wasmex.Components.HostResource.{Handles, Table}
      iex> {:ok, value} = Handles.put(self(), MyHost, {:option, :handle}, {:some, :my_term})
      iex> {:some, {:wasmex_resource, id}} = value
      iex> Handles.terms(self(), [{:wasmex_resource, :borrow, id}])
      {:ok, [:my_term]}
      iex> Handles.terms(self(), [{:wasmex_resource, :own, id}])
      {:ok, [:my_term]}
      iex> Table.count(self())
      0
      iex> Handles.put(self(), MyHost, {:option, :handle}, :nothing)
      {:error, "expected :none or {:some, value}, got: :nothing"}
  """

  alias Wasmex.Components.HostResource.Table

  @doc """
  The params with each handle replaced by its term; `{:error, message}` for an id the
  owner has no row for (the rows taken so far go back).
  """
  @spec terms(pid(), list()) :: {:ok, list()} | {:error, String.t()}
  def terms(owner, params) do
    {params, taken} = replace(params, owner, [])

    case Enum.find(taken, &match?({:error, _}, &1)) do
      nil ->
        {:ok, params}

      {:error, message} ->
        for {:taken, id, module, term} <- taken, do: Table.restore(owner, id, module, term)
        {:error, message}
    end
  end

  defp replace({:wasmex_resource, :own, id}, owner, acc) do
    case Table.take(owner, id) do
      {:ok, module, term} -> {term, [{:taken, id, module, term} | acc]}
      error -> {nil, [error | acc]}
    end
  end

  defp replace({:wasmex_resource, :borrow, id}, owner, acc) do
    case Table.fetch(owner, id) do
      {:ok, term} -> {term, acc}
      error -> {nil, [error | acc]}
    end
  end

  defp replace(list, owner, acc) when is_list(list) do
    {items, acc} = Enum.map_reduce(list, acc, &replace(&1, owner, &2))
    {items, acc}
  end

  defp replace(tuple, owner, acc) when is_tuple(tuple) do
    {items, acc} = replace(Tuple.to_list(tuple), owner, acc)
    {List.to_tuple(items), acc}
  end

  defp replace(map, owner, acc) when is_map(map) do
    {pairs, acc} = Enum.map_reduce(map, acc, fn {k, v}, acc -> pair(k, v, owner, acc) end)
    {Map.new(pairs), acc}
  end

  defp replace(other, _owner, acc), do: {other, acc}

  defp pair(k, v, owner, acc) do
    {v, acc} = replace(v, owner, acc)
    {{k, v}, acc}
  end

  @doc """
  The result with each term at a handle position of `shape` kept as a new row of `owner`
  (implemented by `module`), or `{:error, message}` when the result does not have the
  shape (the rows made for it go again).
  """
  @spec put(pid(), module(), Wasmex.Components.Wit.shape(), term()) ::
          {:ok, term()} | {:error, String.t()}
  def put(owner, module, shape, value) do
    {value, _made} = walk(shape, value, {owner, module}, [])
    {:ok, value}
  catch
    {:bad_result, message, made} ->
      for id <- made, do: Table.take(owner, id)
      {:error, message}
  end

  defp walk(nil, value, _ctx, made), do: {value, made}

  defp walk(:handle, term, {owner, module}, made) do
    case Table.put(owner, module, term) do
      {:ok, id} -> {{:wasmex_resource, id}, [id | made]}
      {:error, message} -> throw({:bad_result, message, made})
    end
  end

  defp walk({:list, shape}, list, ctx, made) when is_list(list),
    do: Enum.map_reduce(list, made, &walk(shape, &1, ctx, &2))

  defp walk({:option, _}, :none, _ctx, made), do: {:none, made}

  defp walk({:option, shape}, {:some, v}, ctx, made) do
    {v, made} = walk(shape, v, ctx, made)
    {{:some, v}, made}
  end

  defp walk({:result, _, _}, tag, _ctx, made) when tag in [:ok, :error], do: {tag, made}

  defp walk({:result, ok, err}, {tag, v}, ctx, made) when tag in [:ok, :error] do
    {v, made} = walk(if(tag == :ok, do: ok, else: err), v, ctx, made)
    {{tag, v}, made}
  end

  defp walk({:tuple, shapes}, tuple, ctx, made)
       when is_tuple(tuple) and tuple_size(tuple) == length(shapes) do
    {items, made} =
      Enum.zip(shapes, Tuple.to_list(tuple))
      |> Enum.map_reduce(made, fn {s, v}, made -> walk(s, v, ctx, made) end)

    {List.to_tuple(items), made}
  end

  defp walk({:record, fields}, map, ctx, made) when is_map(map) do
    Enum.reduce(fields, {map, made}, fn {name, shape}, {map, made} ->
      key =
        Enum.find(Map.keys(map), &(&1 == name or (is_atom(&1) and Atom.to_string(&1) == name)))

      if key == nil do
        {map, made}
      else
        {v, made} = walk(shape, Map.fetch!(map, key), ctx, made)
        {Map.put(map, key, v), made}
      end
    end)
  end

  defp walk({:variant, cases}, {tag, v}, ctx, made) when is_atom(tag) do
    case List.keyfind(cases, Atom.to_string(tag), 0) do
      {_, shape} ->
        {v, made} = walk(shape, v, ctx, made)
        {{tag, v}, made}

      nil ->
        {{tag, v}, made}
    end
  end

  defp walk({:variant, _}, tag, _ctx, made) when is_atom(tag), do: {tag, made}

  defp walk({:foreign, name}, _value, _ctx, made),
    do:
      throw(
        {:bad_result,
         "a #{name} handle cannot be returned here: #{name} is implemented elsewhere", made}
      )

  defp walk(shape, value, _ctx, made),
    do:
      throw({:bad_result, "expected #{expected(shape)}, got: #{inspect(value, limit: 10)}", made})

  defp expected({:list, _}), do: "a list"
  defp expected({:option, _}), do: ":none or {:some, value}"
  defp expected({:result, _, _}), do: "{:ok, value} or {:error, value}"
  defp expected({:tuple, shapes}), do: "a tuple of #{length(shapes)} elements"
  defp expected({:record, _}), do: "a record (a map)"
  defp expected({:variant, _}), do: "a variant (an atom or {case, value})"
end
