defmodule Wasmex.EngineConfig do
  @moduledoc """
  Configures a `Wasmex.Engine`.

    * `consume_fuel` - when `true`, Wasm execution costs fuel and stores start with none;
      see `Wasmex.StoreOrCaller.set_fuel/2`. Default `false`.
    * `cranelift_opt_level` - how hard the compiler optimises: `:none` (default),
      `:speed` or `:speed_and_size`.
    * `wasm_backtrace_details` - when `true`, trap errors carry a Wasm backtrace with
      function names (and source locations where the module has debug info). Default `false`.

  ## Example

      iex> config =
      ...>   %Wasmex.EngineConfig{}
      ...>   |> Wasmex.EngineConfig.consume_fuel(true)
      ...>   |> Wasmex.EngineConfig.cranelift_opt_level(:speed)
      iex> config.cranelift_opt_level
      :speed
  """

  defstruct consume_fuel: false, cranelift_opt_level: :none, wasm_backtrace_details: false

  @type opt_level :: :none | :speed | :speed_and_size

  @type t :: %__MODULE__{
          consume_fuel: boolean(),
          cranelift_opt_level: opt_level(),
          wasm_backtrace_details: boolean()
        }

  @doc "Turns fuel consumption on or off."
  @spec consume_fuel(t(), boolean()) :: t()
  def consume_fuel(%__MODULE__{} = config, on) when is_boolean(on),
    do: %{config | consume_fuel: on}

  @doc "Sets the Cranelift optimisation level: `:none`, `:speed` or `:speed_and_size`."
  @spec cranelift_opt_level(t(), opt_level()) :: t()
  def cranelift_opt_level(%__MODULE__{} = config, level)
      when level in [:none, :speed, :speed_and_size],
      do: %{config | cranelift_opt_level: level}

  @doc "Turns detailed Wasm backtraces in trap errors on or off."
  @spec wasm_backtrace_details(t(), boolean()) :: t()
  def wasm_backtrace_details(%__MODULE__{} = config, on) when is_boolean(on),
    do: %{config | wasm_backtrace_details: on}
end
