defmodule Wasmex.System.DistributionTest do
  @moduledoc "Instances, modules and pools across real nodes started with :peer on loopback."
  use ExUnit.Case, async: false

  @moduletag timeout: 120_000

  @wasm File.read!(TestHelper.wasm_test_file_path())
  @counter """
  (module (global $n (mut i32) (i32.const 0))
    (func (export "bump") (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
    (func (export "count") (result i32) (global.get $n)))
  """

  # Code run on the peers. Test modules are compiled in memory, so their closures do not
  # exist on another node; this module is compiled here and its binary loaded there.
  @remote """
  defmodule WasmexDistributionRemote do
    def start_instance(bytes), do: keep(Wasmex.start_link(%{bytes: bytes}))
    def start_pool(opts), do: keep(Wasmex.Pool.start_link(opts))

    def instantiate_and_call(module, name, params) do
      {:ok, store} = Wasmex.Store.new()
      {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
      {node(store.host), Wasmex.call_function(pid, name, params)}
    end

    defp keep({:ok, pid}) do
      Process.unlink(pid)
      {:ok, pid}
    end
  end
  """

  setup_all do
    unless Node.alive?() do
      {_, 0} = System.cmd("epmd", ["-daemon", "-address", "127.0.0.1"])

      {:ok, _} =
        :net_kernel.start([
          :"wasmex_test_#{System.unique_integer([:positive])}@127.0.0.1",
          :longnames
        ])
    end

    %{remote: Code.compile_string(@remote)}
  end

  defp start_peer(remote) do
    paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    name = :"peer_#{System.unique_integer([:positive])}"

    {:ok, peer, node} =
      :peer.start_link(%{name: name, host: ~c"127.0.0.1", longnames: true, args: paths})

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:wasmex])

    for {module, binary} <- remote do
      {:module, _} = :erpc.call(node, :code, :load_binary, [module, ~c"remote.ex", binary])
    end

    {peer, node}
  end

  defp on(node, function, args), do: :erpc.call(node, WasmexDistributionRemote, function, args)

  test "an instance started on another node is called from this one", %{remote: remote} do
    {peer, node} = start_peer(remote)
    {:ok, pid} = on(node, :start_instance, [@wasm])
    assert node(pid) == node
    assert Wasmex.call_function(pid, "sum", [40, 2]) == {:ok, [42]}
    :peer.stop(peer)
  end

  test "a module compiled here is sent to another node and instantiated there", %{remote: remote} do
    {peer, node} = start_peer(remote)
    {:ok, store} = Wasmex.Store.new()
    {:ok, module} = Wasmex.Module.compile(store, @wasm)

    assert on(node, :instantiate_and_call, [module, "sum", [1, 2]]) == {node, {:ok, [3]}}
    :peer.stop(peer)
  end

  test "a pool spans the nodes of its :pg group and keeps serving when a node goes away", %{
    remote: remote
  } do
    {peer, node} = start_peer(remote)
    pool = :"dist_pool_#{System.unique_integer([:positive])}"
    start_supervised!({Wasmex.Pool, name: pool, size: 2, bytes: @counter})
    {:ok, _} = on(node, :start_pool, [[name: pool, size: 2, bytes: @counter]])
    await_global_members(pool, 4)

    for _ <- 1..40,
        do: {:ok, [_]} = Wasmex.Pool.call_function(pool, "bump", [], 5_000, scope: :global)

    by_node = Enum.group_by(Wasmex.Pool.members(pool, :global), &node/1)

    served = fn pids ->
      Enum.sum(for pid <- pids, do: elem(Wasmex.call_function(pid, "count", []), 1) |> hd())
    end

    assert served.(by_node[node()]) > 0 and served.(by_node[node]) > 0

    # Calls in flight while the other node goes away: each gets an answer or an error.
    calls =
      for _ <- 1..200,
          do:
            Task.async(fn ->
              Wasmex.Pool.call_function(pool, "bump", [], 5_000, scope: :global)
            end)

    :peer.stop(peer)
    results = Task.await_many(calls, 15_000)
    assert Enum.all?(results, &(match?({:ok, [_]}, &1) or match?({:error, _}, &1)))

    await_global_members(pool, 2)

    for _ <- 1..20,
        do:
          assert({:ok, [_]} = Wasmex.Pool.call_function(pool, "bump", [], 5_000, scope: :global))
  end

  defp await_global_members(pool, n) do
    {ref, members} = :pg.monitor(Wasmex.Pool.pg_scope(), pool)
    wait_for(pool, n, ref, length(members))
  end

  defp wait_for(_pool, n, ref, count) when count == n,
    do: :pg.demonitor(Wasmex.Pool.pg_scope(), ref)

  defp wait_for(pool, n, ref, _count) do
    receive do
      {^ref, _, ^pool, _} -> wait_for(pool, n, ref, length(Wasmex.Pool.members(pool, :global)))
    after
      10_000 -> flunk("expected #{n} members, have #{length(Wasmex.Pool.members(pool, :global))}")
    end
  end
end
