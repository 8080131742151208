defmodule Wasmex.Host.TuningTest do
  @moduledoc """
  The port's tuning for small virtual machines (port/tuning/, docs/tuning.md) is off
  unless the port starts with `WASMEX_PORT_TUNING=1` in its environment (set it in the
  BEAM's environment). Both settings serve calls and callbacks alike, and with either,
  every thread of the port ends up with every CPU it may use: a worker moved to the
  BEAM's CPU before it parks is only moved, never held there.
  """
  use ExUnit.Case, async: true

  alias Wasmex.Host

  @sum ~s{(module (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}

  @callback_loop """
  (module (import "env" "cb" (func $cb (param i32) (result i32)))
    (func (export "run") (param $n i32) (result i32) (local $acc i32)
      (loop $l
        (local.set $acc (i32.add (local.get $acc) (call $cb (local.get $n))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br_if $l (local.get $n)))
      (local.get $acc)))
  """

  setup_all do
    dir = Path.join(System.tmp_dir!(), "wasmex_tuning_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)

    scripts =
      for {name, value} <- [off: "", on: "1"], into: %{} do
        script = Path.join(dir, "wasmex_port_tuning_#{name}")
        env = "WASMEX_PORT_TUNING='#{value}'"
        File.write!(script, "#!/bin/sh\n#{env} exec '#{Host.executable()}' \"$@\"\n")
        File.chmod!(script, 0o755)
        {name, script}
      end

    on_exit(fn -> File.rm_rf!(dir) end)
    %{scripts: scripts}
  end

  defp engine(executable) do
    {:ok, host} = Host.start(%Wasmex.EngineConfig{}, self(), executable: executable)
    %Wasmex.Engine{host: host, config: %Wasmex.EngineConfig{}}
  end

  defp cpus_allowed(os_pid) do
    # A thread may end between the listing and the read (compile threads do).
    for tid <- File.ls!("/proc/#{os_pid}/task"),
        {:ok, status} <- [File.read("/proc/#{os_pid}/task/#{tid}/status")],
        into: MapSet.new() do
      [_, cpus] = Regex.run(~r/Cpus_allowed_list:\s+(\S+)/, status)
      cpus
    end
  end

  # Whether, within 5 s, one look finds every thread with the same CPUs. A worker is moved
  # by narrowing its CPUs to one and widening them again at once (port/tuning/affinity.rs);
  # a look between the two (on a loaded machine, the thread may be preempted there) sees
  # it on one CPU. Nothing announces the widening, so the look is repeated.
  defp every_thread_has_every_cpu(os_pid, tries \\ 500) do
    cond do
      MapSet.size(cpus_allowed(os_pid)) == 1 ->
        true

      tries == 0 ->
        false

      true ->
        Process.sleep(10)
        every_thread_has_every_cpu(os_pid, tries - 1)
    end
  end

  defp environ(os_pid), do: File.read!("/proc/#{os_pid}/environ") |> String.split(<<0>>)

  for setting <- [:off, :on] do
    describe "with the tuning #{setting}" do
      test "calls and callbacks are served and every thread keeps every CPU", %{
        scripts: scripts
      } do
        engine = engine(scripts[unquote(setting)])
        os_pid = Host.os_pid(engine.host)
        switch = if unquote(setting) == :on, do: "1", else: ""
        assert "WASMEX_PORT_TUNING=#{switch}" in environ(os_pid)

        {:ok, store} = Wasmex.Store.new(nil, engine)
        {:ok, sum} = Wasmex.start_link(%{store: store, bytes: @sum})
        for n <- 1..200, do: assert(Wasmex.call_function(sum, "sum", [n, 1]) == {:ok, [n + 1]})

        imports = %{env: %{cb: {:fn, [:i32], [:i32], fn _context, x -> x end}}}
        {:ok, store} = Wasmex.Store.new(nil, engine)

        {:ok, looping} =
          Wasmex.start_link(%{store: store, bytes: @callback_loop, imports: imports})

        # 200 + 199 + ... + 1
        assert Wasmex.call_function(looping, "run", [200], 60_000) == {:ok, [20_100]}

        assert every_thread_has_every_cpu(os_pid)
      end
    end
  end
end
