# Facts about the machine and its load, printed ahead of the figures. Loaded by
# bench/run.exs.

defmodule Bench.Machine do
  @moduledoc false
  alias Bench.{BarePort, Out}

  defp autogroup do
    case File.read("/proc/self/autogroup") do
      {:ok, ""} -> "the kernel's default (init's session)"
      {:ok, group} -> String.trim(group)
      {:error, _} -> "none (no autogroups)"
    end
  end

  def loadavg,
    do: File.read!("/proc/loadavg") |> String.split() |> Enum.take(3) |> Enum.join(" ")

  @doc "Prints the facts about the machine (as `# key value` lines) ahead of the figures."
  def facts(cfg) do
    cpu =
      case Regex.run(~r/model name\s*:\s*(.*)/, File.read!("/proc/cpuinfo")) do
        [_, m] -> String.trim(m)
        _ -> "unknown"
      end

    [_, mem_kb] = Regex.run(~r/MemTotal:\s+(\d+)/, File.read!("/proc/meminfo"))
    {nproc, 0} = System.cmd("nproc", [])

    commit =
      case System.cmd("git", ["rev-parse", "--short", "HEAD"], stderr_to_stdout: true) do
        {c, 0} -> String.trim(c)
        _ -> "unknown"
      end

    {port, wasmtime} = BarePort.open()
    Port.close(port)
    exe = Application.app_dir(:wasmex, "priv/wasmex_port")

    sha =
      :crypto.hash(:sha256, File.read!(exe)) |> Base.encode16(case: :lower) |> binary_part(0, 12)

    %File.Stat{mtime: mtime, size: exe_size} = File.stat!(exe)

    Out.line("# wasmex over a port: benchmark#{if cfg.quick, do: " (--quick)", else: ""}")
    Out.fact("date", DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601())
    Out.fact("nproc", String.trim(nproc))
    Out.fact("cpu", cpu)
    Out.fact("memory", "#{Float.round(String.to_integer(mem_kb) / 1024 / 1024, 1)} GiB")

    Out.fact(
      "otp",
      "#{:erlang.system_info(:otp_release)} (erts #{:erlang.system_info(:version)})"
    )

    Out.fact("elixir", System.version())
    Out.fact("wasmtime", wasmtime)
    Out.fact("schedulers", :erlang.system_info(:schedulers_online))
    # The BEAM's session weight against the ports' (the kernel weighs each session's
    # autogroup as a whole).
    Out.fact("autogroup", autogroup())
    Out.fact("commit", "#{commit} (work tree may differ: others edit it concurrently)")

    Out.fact(
      "port_binary",
      "sha256 #{sha}, #{exe_size} bytes, built #{NaiveDateTime.from_erl!(mtime)}"
    )

    Out.fact("wasmex_env", inspect(Application.get_all_env(:wasmex) |> Enum.sort()))
    Out.fact("loadavg_start", loadavg())
    Out.fact("busy_processes_start", busy_processes())
  end

  # The processes other than this BEAM using more than 5% of a CPU over one second (other
  # engineers' builds and tests show up here: the figures are only as good as the machine
  # is quiet).
  def busy_processes do
    case System.cmd("top", ["-b", "-n", "2", "-d", "1", "-w", "200"], stderr_to_stdout: true) do
      {out, 0} ->
        out
        |> String.split("\ntop - ")
        |> List.last()
        |> String.split("\n")
        |> Enum.drop_while(&(not String.contains?(&1, "%CPU")))
        |> Enum.drop(1)
        |> Enum.map(&String.split/1)
        |> Enum.filter(&(length(&1) >= 12))
        |> Enum.reject(fn f -> hd(f) == System.pid() end)
        |> Enum.map(fn f -> {Enum.at(f, 11), parse_float(Enum.at(f, 8))} end)
        |> Enum.filter(fn {_, cpu} -> cpu > 5 end)
        |> Enum.map_join(", ", fn {cmd, cpu} -> "#{cmd} #{round(cpu)}%" end)
        |> case do
          "" -> "none"
          list -> list
        end

      _ ->
        "unknown (no top)"
    end
  end

  defp parse_float(s) do
    case Float.parse(String.replace(s, ",", ".")) do
      {f, _} -> f
      :error -> 0.0
    end
  end
end
