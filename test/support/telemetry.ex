defmodule :telemetry do
  @moduledoc false
  # A stand-in for the `:telemetry` library (which cannot be fetched here), compiled only
  # in the test environment, with the part of its API that Wasmex and its tests use:
  # handlers are attached to event names and run in the process that emits the event; a
  # handler that fails is detached, as the library does.

  @key {__MODULE__, :handlers}

  @type handler_id :: term()
  @type event_name :: [atom()]

  @spec attach(handler_id(), event_name(), function(), term()) :: :ok | {:error, :already_exists}
  def attach(id, event, fun, config), do: attach_many(id, [event], fun, config)

  @spec attach_many(handler_id(), [event_name()], function(), term()) ::
          :ok | {:error, :already_exists}
  def attach_many(id, events, fun, config) when is_function(fun, 4) do
    handlers = handlers()

    if Enum.any?(handlers, &(elem(&1, 0) == id)) do
      {:error, :already_exists}
    else
      :persistent_term.put(@key, handlers ++ for(e <- events, do: {id, e, fun, config}))
    end
  end

  @spec detach(handler_id()) :: :ok | {:error, :not_found}
  def detach(id) do
    handlers = handlers()

    case Enum.reject(handlers, &(elem(&1, 0) == id)) do
      ^handlers -> {:error, :not_found}
      rest -> :persistent_term.put(@key, rest)
    end
  end

  @spec execute(event_name(), map(), map()) :: :ok
  def execute(event, measurements, metadata) do
    for {id, ^event, fun, config} <- handlers() do
      try do
        fun.(event, measurements, metadata, config)
      catch
        _kind, _reason -> detach(id)
      end
    end

    :ok
  end

  @spec span(event_name(), map(), (() -> {term(), map()} | {term(), map(), map()})) :: term()
  def span(prefix, start_metadata, fun) do
    start = System.monotonic_time()
    context = make_ref()
    start_metadata = Map.put(start_metadata, :telemetry_span_context, context)

    execute(
      prefix ++ [:start],
      %{monotonic_time: start, system_time: System.system_time()},
      start_metadata
    )

    try do
      {result, extra, stop_metadata} =
        case fun.() do
          {result, stop_metadata} -> {result, %{}, stop_metadata}
          {_result, _extra, _stop_metadata} = three -> three
        end

      stop = System.monotonic_time()
      measurements = Map.merge(extra, %{duration: stop - start, monotonic_time: stop})

      execute(
        prefix ++ [:stop],
        measurements,
        Map.put(stop_metadata, :telemetry_span_context, context)
      )

      result
    catch
      kind, reason ->
        stop = System.monotonic_time()

        execute(
          prefix ++ [:exception],
          %{duration: stop - start, monotonic_time: stop},
          Map.merge(start_metadata, %{kind: kind, reason: reason, stacktrace: __STACKTRACE__})
        )

        :erlang.raise(kind, reason, __STACKTRACE__)
    end
  end

  defp handlers, do: :persistent_term.get(@key, [])
end
