defmodule Wasmex.Host.Startup do
  @moduledoc false
  # Starts a host's port program: opens it (as a `:stream`, framed by Wasmex.Host.Frames),
  # checks its greeting, and sends `init` with the engine's settings and the OS caps. Runs
  # in the host server's `init/1`, before it serves anyone; every step is bounded (10 s).

  require Logger

  alias Wasmex.Host.Frames
  alias Wasmex.Wire

  @doc """
  Opens the port program at `executable` and initialises it:
  `{:ok, port, bulk, frames}` (the shared buffer, if any, and the framing state for what
  follows) or `{:error, reason}` with the port closed.
  """
  @spec start_port(Path.t(), Wasmex.EngineConfig.t(), map()) ::
          {:ok, port(), {integer(), integer()} | nil, Frames.t()} | {:error, term()}
  def start_port(executable, config, host_options) do
    with {:ok, port} <- open_port(executable),
         {:ok, start} <- await_hello(port),
         {:ok, bulk, frames} <- init_engine(port, start, config, host_options) do
      {:ok, port, bulk, frames}
    end
  end

  @doc """
  The host's options from `Wasmex.Host.start/3`'s: `:os_limits`, `:compile_timeout` (both
  defaulting to the application environment) and `:instance_slots` (default `false`).
  """
  @spec host_options(keyword()) :: map()
  def host_options(opts) do
    %{
      os_limits:
        Keyword.get_lazy(opts, :os_limits, fn -> Application.get_env(:wasmex, :os_limits) end),
      compile_timeout:
        Keyword.get_lazy(opts, :compile_timeout, fn ->
          Application.get_env(:wasmex, :compile_timeout, 60_000)
        end),
      instance_slots: Keyword.get(opts, :instance_slots, false)
    }
  end

  @doc "A payload with its 4-byte length in front (the port is a `:stream`)."
  @spec frame(iodata()) :: iodata()
  def frame(payload), do: frame(payload, IO.iodata_length(payload))

  @doc "A payload of `size` bytes with its length in front."
  @spec frame(iodata(), non_neg_integer()) :: iodata()
  def frame(payload, size), do: [<<size::32>> | payload]

  @doc """
  An exit status, in words; the signals a port is usually ended by are named.

      iex> Wasmex.Host.Startup.describe_status(152)
      "killed by signal 24 (SIGXCPU: its cpu_seconds cap was reached) (exit status 152)"
      iex> Wasmex.Host.Startup.describe_status(3)
      "exit status 3"
  """
  @spec describe_status(non_neg_integer()) :: String.t()
  def describe_status(status) when status > 128,
    do: "killed by signal #{status - 128}#{signal_name(status - 128)} (exit status #{status})"

  def describe_status(status), do: "exit status #{status}"

  defp signal_name(6), do: " (SIGABRT)"
  defp signal_name(9), do: " (SIGKILL)"
  defp signal_name(11), do: " (SIGSEGV)"
  defp signal_name(15), do: " (SIGTERM)"
  defp signal_name(24), do: " (SIGXCPU: its cpu_seconds cap was reached)"
  defp signal_name(_), do: ""

  defp open_port(path) do
    if File.exists?(path) do
      port =
        Port.open({:spawn_executable, path}, [
          :binary,
          # Framed here (Wasmex.Host.Frames), where a frame's length is checked before
          # its bytes are gathered: `{:packet, 4}` would take any length the port names.
          :stream,
          :exit_status,
          :use_stdio,
          {:env, [{~c"RUST_LIB_BACKTRACE", ~c"0"}, {~c"RUST_BACKTRACE", ~c"0"}]}
        ])

      {:ok, port}
    else
      {:error, "wasmex_port not found at #{path}: build it with `mix compile`"}
    end
  end

  defp await_hello(port) do
    expected = Wire.version()

    case receive_frame(port, {Frames.new(Wire.max_incoming_frame()), []}, "start") do
      {:ok, {:hello, ^expected, _wasmtime}, start} ->
        {:ok, start}

      {:ok, {:hello, version, _}, _} ->
        Port.close(port)

        {:error,
         "wasmex_port speaks protocol version #{inspect(version)} but this library needs " <>
           "#{expected}: rebuild it with `mix compile`"}

      {:ok, _other, _} ->
        Port.close(port)

        {:error,
         "wasmex_port did not greet with a protocol version: rebuild it with `mix compile`"}

      {:error, _} = error ->
        error
    end
  end

  defp init_engine(port, start, config, %{os_limits: os_limits} = o) do
    with {:ok, os_limits} <- os_limits(os_limits) do
      send_init(port, start, config, os_limits, o.compile_timeout, o)
    end
  end

  # The port checks the keys and values (port/os_limits.rs); the shape is checked here.
  defp os_limits(nil), do: {:ok, nil}
  defp os_limits(%{} = limits), do: {:ok, limits}

  defp os_limits(limits) when is_list(limits) do
    cond do
      not Keyword.keyword?(limits) ->
        {:error, "os_limits must be a keyword list or a map, got: #{inspect(limits)}"}

      length(Enum.uniq(Keyword.keys(limits))) < length(limits) ->
        {:error, "os_limits gives a key more than once: #{inspect(limits)}"}

      true ->
        {:ok, Map.new(limits)}
    end
  end

  defp os_limits(other),
    do: {:error, "os_limits must be a keyword list or a map, got: #{inspect(other)}"}

  defp send_init(port, start, config, os_limits, compile_timeout, o) do
    options =
      engine_options(config)
      |> Map.put(:os_limits, os_limits)
      |> Map.put(:instance_slots, o.instance_slots)
      |> Map.put(
        :compile_timeout_ms,
        if(compile_timeout == :infinity, do: nil, else: compile_timeout)
      )

    Port.command(port, frame(Wire.encode_request(1, Wire.init(options))))
    await_init(port, start)
  end

  defp await_init(port, start) do
    case receive_frame(port, start, "initialise") do
      {:ok, {:reply, 1, {:ok, bulk}}, {frames, []}} ->
        {:ok, bulk, frames}

      {:ok, {:reply, 1, {:error, _} = error}, _} ->
        error

      # Said while initialising (an engine made without its instance slots).
      {:ok, {:log, message}, start} when is_binary(message) ->
        Logger.warning("wasmex_port: #{message}")
        await_init(port, start)

      {:ok, other, _} ->
        {:error, "unexpected answer to init: #{inspect(other, limit: 20)}"}

      {:error, _} = error ->
        error
    end
  end

  # The next frame of a port that is starting (before this server serves anyone), from
  # `{frames, payloads}`: what is buffered and the payloads cut but not yet read.
  defp receive_frame(_port, {frames, [payload | payloads]}, _step) do
    with {:ok, term} <- Wire.decode(payload), do: {:ok, term, {frames, payloads}}
  end

  defp receive_frame(port, {frames, []}, step) do
    receive do
      {^port, {:data, data}} ->
        case Frames.push(frames, data) do
          {:ok, payloads, frames} -> receive_frame(port, {frames, payloads}, step)
          {:error, _} = error -> close_with(port, error)
        end

      {^port, {:exit_status, status}} ->
        {:error, "wasmex_port exited at start: #{describe_status(status)}"}
    after
      10_000 -> close_with(port, {:error, "wasmex_port did not #{step} within 10 s"})
    end
  end

  defp close_with(port, error) do
    close(port)
    error
  end

  defp engine_options(%Wasmex.EngineConfig{} = c) do
    %{
      consume_fuel: c.consume_fuel,
      cranelift_opt_level: c.cranelift_opt_level,
      wasm_backtrace_details: c.wasm_backtrace_details,
      memory64: c.memory64,
      debug_info: c.debug_info,
      wasm_component_model: c.wasm_component_model,
      cache_dir: cache_dir(),
      spin_us: Application.get_env(:wasmex, :spin_us, 100),
      # Compiling runs in a child process that is killed at this timeout or when the
      # caller goes away (hostile code can make compilation take minutes).
      isolate_compilation: Application.get_env(:wasmex, :isolate_compilation, true)
    }
  end

  # wasmtime's compiled-code cache: compiled code is loaded from it without validation, so
  # it must not be writable by others. Default: the user's cache directory (XDG), not /tmp.
  # `config :wasmex, cache_dir: nil` turns it off.
  defp cache_dir do
    case Application.get_env(:wasmex, :cache_dir, :default) do
      :default -> :filename.basedir(:user_cache, ~c"wasmex_port") |> to_string()
      nil -> nil
      dir -> Path.expand(dir)
    end
  end

  @doc "Closes a host's port (the OS process ends as its stdin closes); a closed one is left."
  @spec close(port()) :: :ok
  def close(port) do
    Port.close(port)
    :ok
  rescue
    ArgumentError -> :ok
  end
end
