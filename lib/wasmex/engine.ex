defmodule Wasmex.Engine do
  @moduledoc """
  An engine is one `wasmex_port` OS process shared by every store created with it.

  It is the knob between density and isolation: stores made with the same engine share
  one process, its memory and its compiled code; a store made without an engine gets a
  process of its own. `default/0` is one shared engine started on first use.

      iex> {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      iex> {:ok, store} = Wasmex.Store.new(nil, engine)
      iex> store.host == engine.host
      true
  """

  alias Wasmex.{EngineConfig, Host}

  @enforce_keys [:host, :config]
  defstruct [:host, :config]

  @type t :: %__MODULE__{host: pid(), config: EngineConfig.t()}

  @doc "Starts a new engine (a new port process) with the given configuration."
  @spec new(EngineConfig.t()) :: {:ok, t()} | {:error, term()}
  def new(%EngineConfig{} = config) do
    with {:ok, host} <- Host.start(config, self()) do
      {:ok, %__MODULE__{host: host, config: config}}
    end
  end

  @doc "The default engine, shared by everything that asks for it; started on first use."
  @spec default() :: t()
  def default do
    config = %EngineConfig{}

    case Process.whereis(Wasmex.Engine.Default) do
      nil ->
        case Host.start(config, :forever, name: Wasmex.Engine.Default) do
          {:ok, host} -> %__MODULE__{host: host, config: config}
          {:error, {:already_started, host}} -> %__MODULE__{host: host, config: config}
          {:error, reason} -> raise "cannot start the default Wasmex engine: #{inspect(reason)}"
        end

      host ->
        %__MODULE__{host: host, config: config}
    end
  end

  @doc """
  Compiles Wasm (or WAT) bytes with this engine's settings and returns the serialized
  artifact, loadable with `Wasmex.Module.unsafe_deserialize/2` into an engine of the same
  configuration.
  """
  @spec precompile_module(t(), binary()) :: {:ok, binary()} | {:error, String.t()}
  def precompile_module(%__MODULE__{host: host}, bytes) when is_binary(bytes) do
    Host.request(host, :precompile, {bytes})
  end
end
