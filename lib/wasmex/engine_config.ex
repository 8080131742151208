defmodule Wasmex.EngineConfig do
  @moduledoc """
  Configures a `Wasmex.Engine`.

    * `consume_fuel` - when `true`, Wasm execution costs fuel and stores start with none;
      see `Wasmex.StoreOrCaller.set_fuel/2`. Default `false`.
    * `cranelift_opt_level` - how hard the compiler optimises: `:none` (default, as in
      Wasmex), `:speed` or `:speed_and_size`. For programs that compute more than they
      talk to the host (compilers, interpreters, renderers) take `:speed`: a synthesis run
      of the yosys WASI build took 267 ms at `:none` and 154 ms at `:speed`, for a
      compile a little longer, paid once per module with the artifact cache.
    * `wasm_backtrace_details` - when `true`, the backtraces of trap errors show source
      locations where the module has debug info (DWARF). Default `false`.
    * `memory64` - when `true`, modules may have 64-bit linear memories (the memory64
      proposal); give their stores `Wasmex.StoreLimits` to bound how far they grow. When
      `false` (the default) such a module is refused when compiled.
    * `debug_info` - when `true`, compiled code carries DWARF debug info for native
      debuggers (gdb, lldb) attached to the `wasmex_port` process. Default `false`.
    * `wasm_component_model` - turns the component model proposal on in the engine.
      Default `false`. Accepted for compatibility: this library runs core modules only.

  ## Example

      iex> config =
      ...>   %Wasmex.EngineConfig{}
      ...>   |> Wasmex.EngineConfig.consume_fuel(true)
      ...>   |> Wasmex.EngineConfig.cranelift_opt_level(:speed)
      iex> config.cranelift_opt_level
      :speed
  """

  defstruct consume_fuel: false,
            cranelift_opt_level: :none,
            wasm_backtrace_details: false,
            memory64: false,
            debug_info: false,
            wasm_component_model: false

  @type opt_level :: :none | :speed | :speed_and_size

  @type t :: %__MODULE__{
          consume_fuel: boolean(),
          cranelift_opt_level: opt_level(),
          wasm_backtrace_details: boolean(),
          memory64: boolean(),
          debug_info: boolean(),
          wasm_component_model: boolean()
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

  @doc "Allows or refuses modules with 64-bit linear memories."
  @spec memory64(t(), boolean()) :: t()
  def memory64(%__MODULE__{} = config, on) when is_boolean(on), do: %{config | memory64: on}

  @doc "Turns DWARF debug info in compiled code on or off."
  @spec debug_info(t(), boolean()) :: t()
  def debug_info(%__MODULE__{} = config, on) when is_boolean(on), do: %{config | debug_info: on}

  @doc "Turns the component model proposal on or off."
  @spec wasm_component_model(t(), boolean()) :: t()
  def wasm_component_model(%__MODULE__{} = config, on) when is_boolean(on),
    do: %{config | wasm_component_model: on}
end
