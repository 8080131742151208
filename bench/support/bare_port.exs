# The port program driven by hand, without a host server: the floor of a round trip.
# Loaded by bench/run.exs.

defmodule Bench.BarePort do
  @moduledoc false
  import Bench.Stats

  # Opens the port program and initialises it; returns the port and wasmtime's version.
  def open do
    path = Application.app_dir(:wasmex, "priv/wasmex_port")
    port = Port.open({:spawn_executable, path}, [:binary, {:packet, 4}])

    wasmtime =
      receive do
        {^port, {:data, data}} ->
          {:hello, _version, wasmtime} = :erlang.binary_to_term(data)
          wasmtime
      after
        10_000 -> raise "no hello from #{path}"
      end

    Port.command(port, :erlang.term_to_binary({1, :init, {%{}}}))

    receive do
      {^port, {:data, data}} -> {:reply, 1, {:ok, _shared_buffer}} = :erlang.binary_to_term(data)
    after
      10_000 -> raise "no answer to init"
    end

    {port, wasmtime}
  end

  @fuel_request :erlang.term_to_binary({2, :fuel_get, {999}})

  # One request on a port this process owns; returns the reply's result.
  def request(port, request \\ @fuel_request, id \\ 2) do
    Port.command(port, request)

    receive do
      {^port, {:data, data}} ->
        {:reply, ^id, result} = :erlang.binary_to_term(data)
        result
    end
  end

  # A store and an instance of `bytes` in a bare port, set up with raw requests.
  def instance(port, bytes) do
    key = Wasmex.Module.key({:wasm, bytes})
    req = fn id, op, args -> request(port, :erlang.term_to_binary({id, op, args}), id) end
    {:ok, _} = req.(3, :module_compile, {key, {:wasm, bytes}})
    {:ok, store_id} = req.(4, :store_new, {nil, nil})
    handler = :erlang.term_to_binary(self())
    {:ok, instance_id} = req.(5, :instantiate, {store_id, key, nil, handler, [], [], 5000})
    {store_id, instance_id}
  end

  # `total` requests (all the same frame `request`, whose id is ignored) with `window` in
  # flight; returns round trips per second. Every reply must be of the same kind.
  def pipelined(port, request, window, total) do
    t0 = now()
    for _ <- 1..window, do: Port.command(port, request)
    pipeline_loop(port, request, window + 1, total, 0)
    total / s(now() - t0)
  end

  defp pipeline_loop(_port, _request, _next, total, total), do: :ok

  defp pipeline_loop(port, request, next, total, done) do
    receive do
      {^port, {:data, data}} ->
        {:reply, _, _} = :erlang.binary_to_term(data)
        if next <= total, do: Port.command(port, request)
        pipeline_loop(port, request, next + 1, total, done + 1)
    end
  end
end
