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

  alias Wasmex.{EngineConfig, Host, Wire}

  @enforce_keys [:host, :config]
  # `resource` (the engine's host process) and `reference` (made with the engine) are the
  # fields of Wasmex's struct; the others are internal.
  defstruct [:resource, :reference, :host, :config]

  @type t :: %__MODULE__{
          resource: pid(),
          reference: reference(),
          host: pid(),
          config: EngineConfig.t()
        }

  @doc """
  Starts a new engine (a new port process) with the given configuration.

  `options` may cap the OS process with `os_limits:` (a keyword list or map; each cap
  optional). Hitting a cap ends this engine's process only; its callers get
  `{:error, reason}` naming the cap and its instance servers exit.

    * `resident_memory: bytes` - resident memory of the process, checked every 10 ms by a
      watchdog thread (costs one wake-up per 10 ms);
    * `address_space: bytes` - `RLIMIT_AS`; linear memories then reserve only what they
      use instead of gigabytes each, so Wasm code checks bounds explicitly (slower memory
      access);
    * `cpu_seconds: n` - CPU time of the process over its whole life (`RLIMIT_CPU`,
      ended with SIGXCPU).

  `compile_timeout: ms | :infinity` (default 60,000) limits each compilation. Compiling runs
  in a child process of the port, killed at the timeout or when the caller goes away:
  hostile code (deeply nested blocks) can otherwise keep a compiler busy for minutes. The
  timeout counts from when the port has read the request: checking the source's digest and
  handing it to the child count, sending the source to the port does not (for an 83 MB
  text module, about 0.3 s on a 2-vCPU VM).

  `instance_slots: n | false` (default: the application environment's `:instance_slots`,
  else 1000) reserves slots for instances (wasmtime's pooling allocator): up to `n`
  instances, `n` linear memories and `n` tables live at once in this engine. Slots are
  reserved once and reused, so instantiating costs about 3 µs in the port instead of
  10 - 19 µs. What does not fit is refused with `{:error, reason}` naming
  `:instance_slots`: a module with more than 16 memories or 16 tables, a table of more
  than 10 million elements or more than 4 MiB of instance state when compiled, an
  instantiation past `n` instances, memories or tables when instantiated (after waiting
  up to a second for stores being dropped to free theirs). `false` allocates every
  instance on its own, without these limits, as Wasmex does. Each slot reserves 4 GiB of
  address space, not memory; with `address_space` capped, or when the kernel refuses the
  reservation (`ulimit -v`, strict overcommit), instances are allocated on their own. The
  default engine and a host started for one store (a store made without an engine) have
  no slots: the first keeps Wasmex's behaviour for code that does not choose an engine,
  the second usually holds a few instances, and reserving slots adds about 1 ms to the
  start of its process.

  An option other than these three, an option or an `os_limits` key given twice, a cap of
  0 and a `Wasmex.EngineConfig` setting given as `nil` are refused with `{:error, reason}`
  naming them: a mistyped cap must not start an engine without it. A cap given as `nil`
  is no cap.

  Hosts started for stores without an engine take `os_limits` and `compile_timeout` from
  the application environment (`config :wasmex, os_limits: [...], compile_timeout: ...`).

      iex> {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, instance_slots: 1)
      iex> {:ok, store} = Wasmex.Store.new(nil, engine)
      iex> {:ok, module} = Wasmex.Module.compile(store, "(module (memory 1))")
      iex> {:ok, _first} = Wasmex.Instance.new(store, module, %{})
      iex> {:error, reason} = Wasmex.Instance.new(store, module, %{})
      iex> reason =~ ":instance_slots"
      true

      iex> {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, os_limits: [cpu_seconds: 600])
      iex> {:ok, store} = Wasmex.Store.new(nil, engine)
      iex> {:ok, pid} = Wasmex.start_link(%{store: store, module: elem(Wasmex.Module.compile(store, "(module)"), 1)})
      iex> is_pid(pid)
      true
  """
  @spec new(EngineConfig.t(), keyword()) :: {:ok, t()} | {:error, term()}
  def new(%EngineConfig{} = config, options \\ []) do
    with :ok <- check_options(options),
         {:ok, host} <-
           Host.start(
             config,
             self(),
             Keyword.put_new_lazy(options, :instance_slots, &instance_slots/0)
           ) do
      {:ok, handle(host, config, make_ref())}
    end
  end

  @options [:os_limits, :compile_timeout, :instance_slots]

  # A mistyped option must not start an engine without what it asked for.
  defp check_options(options) do
    cond do
      not Keyword.keyword?(options) ->
        {:error, "Wasmex.Engine.new/2 options must be a keyword list, got: #{inspect(options)}"}

      unknown = Enum.find(Keyword.keys(options), &(&1 not in @options)) ->
        {:error,
         "unknown option #{inspect(unknown)} for Wasmex.Engine.new/2 " <>
           "(known: #{Enum.map_join(@options, ", ", &inspect/1)})"}

      duplicate = Enum.find(@options, &(length(Keyword.get_values(options, &1)) > 1)) ->
        {:error, "option #{inspect(duplicate)} given more than once"}

      true ->
        :ok
    end
  end

  @doc "The default engine, shared by everything that asks for it; started on first use."
  @spec default() :: t()
  def default do
    config = %EngineConfig{}

    host =
      case Process.whereis(Wasmex.Engine.Default) do
        nil ->
          case Host.start(config, :forever, name: Wasmex.Engine.Default) do
            {:ok, host} -> host
            {:error, {:already_started, host}} -> host
            {:error, reason} -> raise "cannot start the default Wasmex engine: #{inspect(reason)}"
          end

        host ->
          host
      end

    # Every call returns the same struct: one reference for the default engine.
    handle(host, config, default_reference())
  end

  defp default_reference do
    case :persistent_term.get({__MODULE__, :default_reference}, nil) do
      nil ->
        ref = make_ref()
        :persistent_term.put({__MODULE__, :default_reference}, ref)
        ref

      ref ->
        ref
    end
  end

  defp handle(host, config, ref),
    do: %__MODULE__{resource: host, reference: ref, host: host, config: config}

  # Engines made with new/2 reserve instance slots unless told otherwise.
  defp instance_slots, do: Application.get_env(:wasmex, :instance_slots, 1000)

  @doc """
  Compiles Wasm (or WAT) bytes with this engine's settings and returns the serialized
  artifact, sealed under this node's artifact key (`Wasmex.Module.Seal`), loadable with
  `Wasmex.Module.unsafe_deserialize/2` into an engine of the same configuration.
  """
  @spec precompile_module(t(), binary()) :: {:ok, binary()} | {:error, String.t()}
  def precompile_module(%__MODULE__{host: host}, bytes) when is_binary(bytes) do
    Wasmex.Module.Seal.sealed(Host.request(host, Wire.precompile(bytes)))
  end

  @doc """
  Runs a module's initialization export once and returns a new module, the *snapshot*,
  whose instances start where that export left off: an interpreter's start-up runs once,
  not in every instance. Built on wasmtime-wizer.

  Options:

    * `init:` the export to run, a function of no arguments returning nothing or an `i32`
      status (default `"wizer-initialize"`). A status other than 0 fails the
      pre-initialization with an error giving it (as C's `int init(void)`, e.g. QuickJS's
      `qjs_init`); an export of any other shape is refused before it runs. A reactor's
      `_initialize` runs before it;
    * `wasi:` a `Wasmex.Wasi.WasiOptions` whose `args` and `env` the export sees (default:
      none). It gets no files, no preopened directories and no stdin, and what it writes to
      stdout and stderr is discarded: options asking for more are refused.

  The module may import functions from outside WASI (an interpreter's host hooks, say):
  the host that will serve them is not there during pre-initialization, so each traps if
  the export calls it, and the pre-initialization fails with an error naming the import.
  The snapshot still imports them all (WASI's too); its instances are given them as usual.
  The module must not import memories, tables or globals.

  The snapshot keeps the memories and globals as the export left them. It does not keep
  what lives outside the instance: open files, preopened directories (instances must be
  given what the program expects to find), or the clock; and whatever the export drew from
  WASI's randomness (a hash seed, a PRNG state) is frozen into every instance.

  The export runs in a child process of the engine's, bounded by the engine's
  `compile_timeout` and its `resident_memory` cap, and stopped when the caller stops
  waiting.

      iex> {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      iex> wat = ~s{(module (global $n (mut i32) (i32.const 0))
      ...>   (func (export "wizer-initialize") (global.set $n (i32.const 42)))
      ...>   (func (export "n") (result i32) global.get $n))}
      iex> {:ok, snapshot} = Wasmex.Engine.preinitialize_module(engine, wat)
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: snapshot})
      iex> Wasmex.call_function(pid, "n", [])
      {:ok, [42]}

  An init returning a status, in a module importing a host function it does not call
  while initializing:

      iex> wat = ~s{(module (import "env" "tick" (func $tick (result i32)))
      ...>   (global $n (mut i32) (i32.const 0))
      ...>   (func (export "init") (result i32) (global.set $n (i32.const 7)) (i32.const 0))
      ...>   (func (export "n") (result i32) (i32.add (global.get $n) (call $tick)))
      ...>   (func (export "bad_init") (result i32) (call $tick)))}
      iex> {:ok, snapshot} = Wasmex.Engine.preinitialize_module(Wasmex.Engine.default(), wat, init: "init")
      iex> imports = %{env: %{tick: {:fn, [], [:i32], fn _context -> 1 end}}}
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: snapshot, imports: imports})
      iex> Wasmex.call_function(pid, "n", [])
      {:ok, [8]}
      iex> {:error, reason} = Wasmex.Engine.preinitialize_module(Wasmex.Engine.default(), wat, init: "bad_init")
      iex> reason =~ "the import `env::tick` was called"
      true
  """
  @spec preinitialize_module(t(), binary(), keyword()) :: {:ok, binary()} | {:error, String.t()}
  def preinitialize_module(%__MODULE__{host: host}, bytes, options \\ [])
      when is_binary(bytes) and is_list(options) do
    with {:ok, init} <- preinit_options(options) do
      Host.request(host, Wasmex.Wire.preinitialize(bytes, init))
    end
  end

  defp preinit_options(options) do
    case Keyword.split(options, [:init, :wasi]) do
      {taken, []} ->
        preinit_options(Keyword.get(taken, :init, "wizer-initialize"), taken[:wasi])

      {_, other} ->
        {:error, "unknown pre-initialization options: #{inspect(Keyword.keys(other))}"}
    end
  end

  defp preinit_options(init, _wasi) when not is_binary(init) or init == "",
    do: {:error, "init: must name an export, got: #{inspect(init)}"}

  defp preinit_options(init, nil), do: {:ok, %{init: init, args: [], env: []}}

  defp preinit_options(init, %Wasmex.Wasi.WasiOptions{} = wasi) do
    with :ok <- only_args_and_env(wasi),
         {:ok, args} <- Wasmex.Wasi.Check.args(wasi.args),
         {:ok, env} <- Wasmex.Wasi.Check.env(wasi.env) do
      {:ok, %{init: init, args: args, env: Enum.sort(env)}}
    end
  end

  defp preinit_options(_init, wasi),
    do: {:error, "wasi: must be a %Wasmex.Wasi.WasiOptions{}, got: #{inspect(wasi)}"}

  defp only_args_and_env(wasi) do
    given =
      for field <- [:stdin, :stdout, :stderr, :preopen],
          Map.get(wasi, field) not in [nil, [], %{}],
          do: field

    if given == [],
      do: :ok,
      else:
        {:error,
         "pre-initialization gives WASI only args and env, not #{Enum.map_join(given, ", ", &inspect/1)}"}
  end
end
