defmodule Wasmex.Telemetry do
  @moduledoc """
  Emits `:telemetry` events when the `:telemetry` library is present (it is not a
  dependency: add `{:telemetry, "~> 1.0"}` to your project, as Phoenix, Ecto and Oban
  already do, and the events start). Without it every function here returns at once.

  Whether `:telemetry` is present is checked once, on the first event, and kept in a
  `:persistent_term`: afterwards each event site costs one `:persistent_term` read when
  `:telemetry` is absent.

  The events (all names start with `:wasmex`) and their measurements and metadata are
  listed in `docs/telemetry.md`. Spans follow `:telemetry.span/3`: `:start` has
  `system_time` and `monotonic_time`, `:stop` and `:exception` have `duration` and
  `monotonic_time` (native time units; `System.convert_time_unit/3` converts them), and
  each carries `telemetry_span_context`.

      iex> Wasmex.Telemetry.available?(:no_such_telemetry_module)
      false
      iex> Wasmex.Telemetry.span([:doc, :example], %{}, fn -> {:ok, 42} end)
      {:ok, 42}
  """

  # :telemetry is optional: present in the applications that use it, absent here.
  @compile {:no_warn_undefined, :telemetry}

  @key {__MODULE__, :enabled}

  @doc "Whether `module` is loadable and has the `:telemetry` API this module uses."
  @spec available?(module()) :: boolean()
  def available?(module) do
    Code.ensure_loaded?(module) and function_exported?(module, :execute, 3) and
      function_exported?(module, :span, 3)
  end

  @doc "Whether events are emitted (`:telemetry` is present); checked once."
  @spec enabled?() :: boolean()
  def enabled? do
    case :persistent_term.get(@key, nil) do
      nil ->
        enabled = available?(:telemetry)
        :persistent_term.put(@key, enabled)
        enabled

      enabled ->
        enabled
    end
  end

  @doc """
  Runs `fun` inside the span `[:wasmex | name]`: `:start` with `metadata`, `:stop` with
  `metadata` and `result: fun's result`, `:exception` if `fun` raises, throws or exits
  (which then goes on). Returns `fun`'s result.
  """
  @spec span([atom()], map(), (() -> result)) :: result when result: term()
  def span(name, metadata, fun) do
    if enabled?() do
      :telemetry.span([:wasmex | name], metadata, fn ->
        result = fun.()
        {result, Map.put(metadata, :result, result)}
      end)
    else
      fun.()
    end
  end

  @doc """
  Emits the event `[:wasmex | name]` with `system_time` and `monotonic_time` as its
  measurements.
  """
  @spec event([atom()], map()) :: :ok
  def event(name, metadata) do
    if enabled?() do
      measurements = %{system_time: System.system_time(), monotonic_time: System.monotonic_time()}
      :telemetry.execute([:wasmex | name], measurements, metadata)
    end

    :ok
  end
end
