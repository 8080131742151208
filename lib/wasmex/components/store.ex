defmodule Wasmex.Components.Store do
  @moduledoc """
  Stores for components: the component model equivalent of `Wasmex.Store`.

  A component store is a `Wasmex.StoreOrCaller`, like a core store: core instances and
  component instances can live in the same store, and `Wasmex.StoreOrCaller.set_fuel/2`,
  store limits, timeouts and `Wasmex.Store.release/1` apply to both.

  A store made without an engine lives in the shared component engine
  (`default_engine/0`, one `wasmex_port` OS process started on first use, with
  `wasm_component_model` on), so a component is compiled once for all its stores. Pass
  an engine made with `%Wasmex.EngineConfig{wasm_component_model: true}` for a process
  of its own.

      iex> {:ok, store} = Wasmex.Components.Store.new()
      iex> {:ok, component} = Wasmex.Components.Component.new(store, File.read!("test/fixtures/components/types.wasm"))
      iex> {:ok, instance} = Wasmex.Components.Instance.new(store, component, %{})
      iex> Wasmex.Components.Instance.call(instance, "greet", ["Ada"])
      {:ok, "Hello, Ada!"}
  """

  alias Wasmex.{Engine, EngineConfig, Host, StoreLimits, StoreOrCaller}
  alias Wasmex.Wasi.WasiP2Options

  @doc "Creates a store for components, optionally with limits and in a given engine."
  @spec new(StoreLimits.t() | nil, Engine.t() | nil) ::
          {:ok, StoreOrCaller.t()} | {:error, term()}
  def new(limits \\ nil, engine \\ nil) do
    Wasmex.Store.new(limits, engine || default_engine())
  end

  @doc """
  Creates a store whose components get WASI preview 2, configured by `options` (see
  `Wasmex.Wasi.WasiP2Options`).
  """
  @spec new_wasi(WasiP2Options.t(), StoreLimits.t() | nil, Engine.t() | nil) ::
          {:ok, StoreOrCaller.t()} | {:error, term()}
  def new_wasi(%WasiP2Options{} = options, limits \\ nil, engine \\ nil) do
    with {:ok, wire} <- WasiP2Options.to_wire(options) do
      Wasmex.Store.new_wired({:p2, wire}, limits, engine || default_engine())
    end
  end

  @doc """
  The engine component stores use when none is given: one shared `wasmex_port` process
  with `wasm_component_model` on, started on first use.

      iex> Wasmex.Components.Store.default_engine().config.wasm_component_model
      true
  """
  @spec default_engine() :: Engine.t()
  def default_engine do
    config = %EngineConfig{wasm_component_model: true}

    host =
      case Process.whereis(Wasmex.Components.Engine) do
        nil ->
          case Host.start(config, :forever, name: Wasmex.Components.Engine) do
            {:ok, host} -> host
            {:error, {:already_started, host}} -> host
            {:error, reason} -> raise "cannot start the component engine: #{inspect(reason)}"
          end

        host ->
          host
      end

    %Engine{resource: host, reference: make_ref(), host: host, config: config}
  end
end
