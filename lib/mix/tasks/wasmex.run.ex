defmodule Mix.Tasks.Wasmex.Run do
  @shortdoc "Runs a WASI program, or invokes an export of a Wasm module"
  @moduledoc """
  Runs a Wasm file out of process, like `wasmtime run`.

      mix wasmex.run FILE [--invoke NAME [ARGS...]] [--dir HOST[::GUEST]] [--env K=V] [-- ARGS]

  Without `--invoke`, runs the WASI program's `_start` with its stdin, stdout and stderr
  connected to the terminal, and exits with the program's exit code. With `--invoke`,
  calls the export `NAME` with `ARGS` (read as the export's parameter types) and prints
  each result on a line.

    * `--dir HOST[::GUEST]` - preopen the host directory `HOST`, seen by the program as
      `GUEST` (default: `HOST`); may be repeated;
    * `--env K=V` - set an environment variable; may be repeated;
    * `-- ARGS` - arguments for the program (its `argv[0]` is the file's name).

  Examples:

      mix wasmex.run test/fixtures/wasi_test.wasm -- args hello
      mix wasmex.run test/fixtures/wasmex_test.wasm --invoke sum 50 -8
  """
  use Mix.Task

  alias Wasmex.Wasi.{PreopenOptions, WasiOptions}

  @impl true
  def run(argv) do
    {argv, program_args} = split_at_dashes(argv)

    {opts, positional, invalid} =
      OptionParser.parse(argv, strict: [invoke: :string, dir: :keep, env: :keep])

    if invalid != [], do: Mix.raise("unknown options: #{inspect(invalid)}")

    {file, invoke_args} =
      case positional do
        [file | rest] ->
          {file, rest}

        [] ->
          Mix.raise(
            "usage: mix wasmex.run FILE [--invoke NAME [ARGS...]] [--dir HOST[::GUEST]] [--env K=V] [-- ARGS]"
          )
      end

    Mix.Task.run("app.start")
    bytes = File.read!(file)

    wasi = %WasiOptions{
      args: [Path.basename(file) | program_args],
      env: Map.new(Keyword.get_values(opts, :env), &parse_env/1),
      preopen: Enum.map(Keyword.get_values(opts, :dir), &parse_dir/1),
      stdin: :messages,
      stdout: {:messages, self()},
      stderr: {:messages, self()}
    }

    store = ok!(Wasmex.Store.new_wasi(wasi))
    module = ok!(Wasmex.Module.compile(store, bytes))
    pid = ok!(Wasmex.start_link(%{store: store, module: module}))

    case opts[:invoke] do
      nil -> run_start(pid, store)
      name -> invoke(pid, store, module, name, invoke_args)
    end
  end

  defp split_at_dashes(argv) do
    case Enum.split_while(argv, &(&1 != "--")) do
      {before, ["--" | rest]} -> {before, rest}
      {before, []} -> {before, []}
    end
  end

  defp parse_env(kv) do
    case String.split(kv, "=", parts: 2) do
      [k, v] -> {k, v}
      _ -> Mix.raise("--env takes K=V, got: #{kv}")
    end
  end

  defp parse_dir(spec) do
    case String.split(spec, "::", parts: 2) do
      [host, guest] -> %PreopenOptions{path: host, alias: guest}
      [host] -> %PreopenOptions{path: host}
    end
  end

  # The program reads its input in its own time: while the store holds as much unread
  # input as it takes, wait a little and write again. A store that is gone takes nothing
  # (the call's result says why).
  defp feed(store, data) do
    case Wasmex.Wasi.write_stdin(store, data) do
      {:error, "stdin is full" <> _} ->
        Process.sleep(10)
        feed(store, data)

      _written_or_gone ->
        :ok
    end
  end

  defp run_start(pid, store) do
    case run_relayed(pid, store, "_start", []) do
      {:ok, _} -> :ok
      {:error, {:exit, code}} -> exit({:shutdown, code})
      {:error, reason} -> Mix.raise("the program failed: #{reason}")
    end
  end

  # Calls `name` with the terminal's input fed to the program and its output relayed to
  # the terminal, as bytes; returns the call's result.
  defp run_relayed(pid, store, name, values) do
    with_byte_stdio(fn ->
      pump = spawn_link(fn -> pump_stdin(store) end)
      call = Task.async(fn -> Wasmex.call_function(pid, name, values, :infinity) end)
      result = relay_output(call)
      Process.unlink(pump)
      Process.exit(pump, :kill)
      result
    end)
  end

  # The program's input and output are bytes: while it runs, the terminal's devices pass
  # them through as they are, not as Latin-1 to re-encode in UTF-8. Mix's own messages
  # afterwards are text again.
  defp with_byte_stdio(fun) do
    :ok = :io.setopts(:standard_io, encoding: :latin1)
    :ok = :io.setopts(:standard_error, encoding: :latin1)
    fun.()
  after
    :io.setopts(:standard_io, encoding: :unicode)
    :io.setopts(:standard_error, encoding: :unicode)
  end

  defp pump_stdin(store) do
    case IO.binread(:stdio, :line) do
      data when is_binary(data) ->
        feed(store, data)
        pump_stdin(store)

      _eof_or_error ->
        Wasmex.Wasi.close_stdin(store)
    end
  end

  # Copies the program's output to the terminal until the call ends, then what is left;
  # acknowledging each piece once written lets the program write more.
  defp relay_output(%Task{ref: ref} = call) do
    receive do
      {:wasmex_stdout, store, data} ->
        IO.binwrite(:stdio, data)
        Wasmex.Wasi.ack_output(store, :stdout, byte_size(data))
        relay_output(call)

      {:wasmex_stderr, store, data} ->
        IO.binwrite(:stderr, data)
        Wasmex.Wasi.ack_output(store, :stderr, byte_size(data))
        relay_output(call)

      {^ref, result} ->
        Process.demonitor(ref, [:flush])
        flush_output()
        result
    end
  end

  defp flush_output do
    receive do
      {:wasmex_stdout, _store, data} -> IO.binwrite(:stdio, data) && flush_output()
      {:wasmex_stderr, _store, data} -> IO.binwrite(:stderr, data) && flush_output()
    after
      0 -> :ok
    end
  end

  defp invoke(pid, store, module, name, args) do
    case Wasmex.Module.exports(module)[name] do
      {:fn, params, _results} when length(params) == length(args) ->
        values = Enum.zip_with(params, args, &parse_value/2)

        case run_relayed(pid, store, name, values) do
          {:ok, results} -> Enum.each(results, &IO.puts(format_value(&1)))
          {:error, {:exit, code}} -> exit({:shutdown, code})
          {:error, reason} -> Mix.raise("#{name} failed: #{inspect(reason)}")
        end

      {:fn, params, _} ->
        Mix.raise(
          "#{name} takes #{length(params)} arguments (#{Enum.join(params, ", ")}), got #{length(args)}"
        )

      _ ->
        Mix.raise("the module exports no function named #{name}")
    end
  end

  defp parse_value(type, text) when type in [:f32, :f64] do
    case Float.parse(text) do
      {f, ""} -> f
      _ -> Mix.raise("#{inspect(text)} is not a #{type}")
    end
  end

  defp parse_value(type, text) do
    case Integer.parse(text) do
      {i, ""} -> i
      _ -> Mix.raise("#{inspect(text)} is not a #{type}")
    end
  end

  defp format_value(v) when is_float(v), do: Float.to_string(v)
  defp format_value(v), do: to_string(v)

  defp ok!({:ok, value}), do: value
  defp ok!({:error, reason}), do: Mix.raise(to_string_reason(reason))

  defp to_string_reason(reason) when is_binary(reason), do: reason
  defp to_string_reason(reason), do: inspect(reason)
end
