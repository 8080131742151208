# Component figures, loaded by bench/run.exs (group `components`):
#
#     mix run bench/run.exs --only components [--quick]
#
# - a call that takes and returns a record with a string (`echo-person` of the `types`
#   fixture), beside a core `call_function` of `sum` in the same rounds, and the ratio;
# - where that call's time goes: encode (the BEAM building the request and its frame),
#   the port's steps as it counts them (`Wasmex.Components.Instance.timing/1`: finding
#   the export, params to WIT values, wasmtime's call with its lowering and lifting,
#   results to terms), and the rest (the round trip: the host server, the pipe both ways,
#   the port reading and writing frames, the reply reaching the caller);
# - CPU per call of the BEAM and the ports (from /proc) with 8 callers on 8 instances,
#   component and core alternated;
# - instantiating a compiled component, and `Wasmex.Components.start_link/1`;
# - a call whose export calls an Elixir import once (`add-plus-one` of the `imports`
#   fixture), beside a component call without one.

defmodule Bench.Components do
  @moduledoc false
  import Bench.Stats
  alias Bench.Out
  alias Wasmex.Components
  alias Wasmex.Components.{Component, Instance, Store}

  @types "test/fixtures/components/types.wasm"
  @imports "test/fixtures/components/imports.wasm"
  @echo {"wasmex:types/roundtrip@0.1.0", "echo-person"}
  @person %{"full-name": "Ada Lovelace", age: 36, tags: [], home: :none}

  defp sum_module do
    path = "test/fixtures/wasmex_test.wasm"

    if File.exists?(path),
      do: File.read!(path),
      else: ~s{(module (func (export "sum") (param i32 i32) (result i32)
                 local.get 0 local.get 1 i32.add))}
  end

  defp echo!(pid), do: {:ok, @person} = Components.call_function(pid, @echo, [@person])
  defp sum!(pid), do: {:ok, [3]} = Wasmex.call_function(pid, "sum", [1, 2])

  @doc "Prints the figures through `Bench.Out`."
  def run(cfg) do
    record_call(cfg)
    cpu_per_call(cfg)
    instantiate(cfg)
    import_roundtrip(cfg)
  end

  # Latency of the record call and of core `sum`, interleaved round by round so that
  # load from elsewhere falls on both alike; then the record call's cost split.
  defp record_call(cfg) do
    {:ok, comp} = Components.start_link(path: @types)
    {:ok, core} = Wasmex.start_link(%{bytes: sum_module()})
    instance = Components.instance(comp)
    steps = [{:component, fn -> echo!(comp) end}, {:core, fn -> sum!(core) end}]
    for {_, fun} <- steps, _ <- 1..cfg.warmup, do: fun.()
    {:ok, t0} = Instance.timing(instance)

    medians =
      for _ <- 1..cfg.rounds, {name, fun} <- steps do
        {name, median(for _ <- 1..cfg.lat_n, do: us(time(fun)))}
      end
      |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))

    {:ok, t1} = Instance.timing(instance)
    comp_us = median(medians[:component])
    core_us = median(medians[:core])
    Out.figure("component_call_record_string_median", comp_us, "us")
    Out.figure("component_call_core_sum_median", core_us, "us")
    Out.figure("component_call_record_string_ratio_to_core_sum", comp_us / core_us, "x")

    calls = t1.calls - t0.calls
    port = fn key -> (Map.fetch!(t1, key) - Map.fetch!(t0, key)) / calls / 1000 end
    port_steps = for key <- [:lookup_ns, :params_ns, :call_ns, :results_ns], do: port.(key)
    [lookup, params, call, results] = port_steps
    encode = encode_us(instance, cfg)
    Out.figure("component_call_split_encode", encode, "us")
    Out.figure("component_call_split_port_lookup", lookup, "us")
    Out.figure("component_call_split_port_params_to_wit", params, "us")
    Out.figure("component_call_split_port_wasmtime_call", call, "us")
    Out.figure("component_call_split_port_results_to_terms", results, "us")
    Out.figure("component_call_split_round_trip", comp_us - encode - Enum.sum(port_steps), "us")
    Out.figure("component_call_core_sum_encode", core_encode_us(cfg), "us")
    GenServer.stop(comp)
    GenServer.stop(core)
  end

  # The BEAM's part before the request leaves: the path, the request, its frame.
  defp encode_us(instance, cfg) do
    ctx = Wasmex.StoreOrCaller.context(instance.store)
    n = cfg.lat_n * 10

    per_call(n, fn ->
      {:ok, request} = Instance.call_request(ctx, instance.id, @echo, [@person], 5_000)
      Wasmex.Wire.encode_request(12_345, request)
    end)
  end

  defp core_encode_us(cfg) do
    per_call(cfg.lat_n * 10, fn ->
      Wasmex.Wire.encode_request(12_345, Wasmex.Wire.call(3, 1, "sum", [1, 2], 5_000))
    end)
  end

  defp per_call(n, fun) do
    for _ <- 1..100, do: fun.()
    median(for _ <- 1..5, do: us(time(fn -> Enum.each(1..n, fn _ -> fun.() end) end)) / n)
  end

  # 8 callers, each on an instance of its own (all in one host): CPU µs per call of the
  # BEAM and of the port, component and core alternated round by round.
  defp cpu_per_call(cfg) do
    n = 8
    {:ok, store0} = Store.new()
    comps = for _ <- 1..n, do: elem(Components.start_link(path: @types), 1)
    {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
    {:ok, core_store} = Wasmex.Store.new(nil, engine)
    {:ok, module} = Wasmex.Module.compile(core_store, sum_module())

    cores =
      for _ <- 1..n do
        {:ok, store} = Wasmex.Store.new(nil, engine)
        {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
        pid
      end

    comp_os = Wasmex.Host.os_pid(store0.host)
    core_os = Wasmex.Host.os_pid(engine.host)
    ms = min(cfg.duration_ms, 1_000)
    kinds = [{:component, comps, comp_os, &echo!/1}, {:core, cores, core_os, &sum!/1}]
    for {_, pids, os, fun} <- kinds, do: load(pids, fun, div(ms, 3), os)

    results =
      for _ <- 1..cfg.rounds, {name, pids, os, fun} <- kinds do
        {name, load(pids, fun, ms, os)}
      end
      |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))

    for {name, label} <- [component: "record_string", core: "core_sum"] do
      rs = results[name]

      Out.figure(
        "component_cpu_#{label}_8_callers_calls",
        median(Enum.map(rs, &elem(&1, 0))),
        "calls/s"
      )

      Out.figure(
        "component_cpu_#{label}_8_callers_beam",
        median(Enum.map(rs, &elem(&1, 1))),
        "us/call"
      )

      Out.figure(
        "component_cpu_#{label}_8_callers_port",
        median(Enum.map(rs, &elem(&1, 2))),
        "us/call"
      )
    end

    total = fn name -> median(Enum.map(results[name], &(elem(&1, 1) + elem(&1, 2)))) end

    Out.figure(
      "component_cpu_record_string_ratio_to_core_sum",
      total.(:component) / total.(:core),
      "x"
    )

    Enum.each(comps ++ cores, &GenServer.stop/1)
    Wasmex.Store.release(store0, self())
  end

  # Calls per second, and BEAM and port CPU µs per call, of one caller per pid for `ms`.
  defp load(pids, fun, ms, os_pid) do
    deadline = now() + System.convert_time_unit(ms, :millisecond, :native)
    beam0 = cpu_s([System.pid()])
    port0 = cpu_s([os_pid])
    t0 = now()

    calls =
      pids
      |> Enum.map(fn pid -> Task.async(fn -> loop(pid, fun, deadline, 0) end) end)
      |> Enum.map(&Task.await(&1, :infinity))
      |> Enum.sum()

    wall = s(now() - t0)
    beam = (cpu_s([System.pid()]) - beam0) * 1_000_000 / calls
    {calls / wall, beam, (cpu_s([os_pid]) - port0) * 1_000_000 / calls}
  end

  defp loop(pid, fun, deadline, calls) do
    if now() >= deadline do
      calls
    else
      fun.(pid)
      loop(pid, fun, deadline, calls + 1)
    end
  end

  # A fresh instance of a compiled component, each in a new store (the store is made
  # before the clock starts); and start_link/1 with the component's bytes (compiled
  # once, cached by key).
  defp instantiate(cfg) do
    bytes = File.read!(@types)
    {:ok, store} = Store.new()
    {:ok, component} = Component.new(store, bytes)
    n = cfg.start_n

    one = fn ->
      {:ok, store} = Store.new()
      t = time(fn -> {:ok, _} = Instance.new(store, component) end)
      Wasmex.Store.release(store, self())
      us(t)
    end

    for _ <- 1..div(n, 2), do: one.()
    Out.figure("component_instantiate_median", median(for _ <- 1..n, do: one.()), "us")

    start = fn ->
      t0 = now()
      {:ok, pid} = Components.start_link(bytes: bytes)
      t = now() - t0
      GenServer.stop(pid)
      us(t)
    end

    for _ <- 1..div(n, 2), do: start.()
    Out.figure("component_start_link_median", median(for _ <- 1..n, do: start.()), "us")
    Wasmex.Store.release(store, self())
  end

  # `add-plus-one` calls the Elixir `add` once; `add` of the `types` fixture calls none.
  defp import_roundtrip(cfg) do
    noop = {:fn, fn _ -> :ok end}

    imports = %{
      "log" => noop,
      "add" => {:fn, fn a, b -> a + b end},
      "wasmex:host/kv@0.1.0" => %{"get" => {:fn, fn _ -> :none end}, "set" => noop}
    }

    {:ok, with_import} = Components.start_link(path: @imports, imports: imports)
    {:ok, without} = Components.start_link(path: @types)

    steps = [
      {:import,
       fn -> {:ok, 6} = Components.call_function(with_import, "add-plus-one", [2, 3]) end},
      {:plain, fn -> {:ok, 5} = Components.call_function(without, "add", [2, 3]) end}
    ]

    for {_, fun} <- steps, _ <- 1..div(cfg.warmup, 2), do: fun.()

    medians =
      for _ <- 1..cfg.rounds, {name, fun} <- steps do
        {name, median(for _ <- 1..div(cfg.lat_n, 2), do: us(time(fun)))}
      end
      |> Enum.group_by(&elem(&1, 0), &elem(&1, 1))

    Out.figure("component_import_roundtrip_median", median(medians[:import]), "us")
    Out.figure("component_call_without_import_median", median(medians[:plain]), "us")
    GenServer.stop(with_import)
    GenServer.stop(without)
  end
end
