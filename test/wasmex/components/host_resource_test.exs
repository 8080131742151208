defmodule Wasmex.Components.HostResourceTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.HostResource
  doctest Wasmex.Components.HostResource.Handles

  alias Wasmex.Components.HostResource
  alias Wasmex.Components.HostResource.{Handles, Table}

  @wasm "test/fixtures/components/host_resources.wasm"
  @iface "wasmex:host-resources/counters@0.1.0"
  # Tests of one module run one after another: the running test listens under this name.
  @listener :host_resource_test_listener

  defmodule CounterHost do
    use Wasmex.Components.HostResource,
      wit_path: "test/fixtures/components/host_resources.wit",
      resource: "counter"

    def new(13), do: raise("unlucky")
    def new(666), do: {:error, :no}
    def new(initial), do: start(initial)
    def with_value(value), do: start(value)
    def try_make(0), do: {:error, "zero"}
    def try_make(1), do: :bogus
    def try_make(value), do: {:ok, start(value)}

    def increment(counter) do
      if Agent.get(counter, & &1) == 12, do: raise("twelve")
      Agent.get_and_update(counter, &{&1 + 1, &1 + 1})
    end

    def take_other(counter, other) do
      value = Agent.get(counter, & &1) + Agent.get(other, & &1)
      notify({:taken, Agent.get(other, & &1)})
      Agent.stop(other)
      value
    end

    def peek(_counter, other), do: Agent.get(other, & &1)

    def drop(counter) do
      notify({:dropped, Agent.get(counter, & &1)})
      Agent.stop(counter)
    end

    defp notify(message) do
      if pid = Process.whereis(:host_resource_test_listener), do: send(pid, message)
    end

    defp start(initial) do
      {:ok, counter} = Agent.start(fn -> initial end)
      counter
    end
  end

  # The same resource from WIT source, with the default drop/1.
  defmodule PlainHost do
    use Wasmex.Components.HostResource,
      wit: File.read!("test/fixtures/components/host_resources.wit"),
      resource: "counter",
      interface: "wasmex:host-resources/counters@0.1.0",
      world: "host-resources"

    def new(initial), do: {:plain, initial}
    def with_value(value), do: {:plain, value}
    def try_make(value), do: {:ok, {:plain, value}}
    def increment({:plain, value}), do: value + 1
    def take_other({:plain, a}, {:plain, b}), do: a + b
    def peek(_counter, {:plain, b}), do: b
  end

  setup do
    Process.register(self(), @listener)
    {:ok, pid} = Wasmex.Components.start_link(path: @wasm, imports: CounterHost.imports())
    %{pid: pid}
  end

  defp call(pid, name, params), do: Wasmex.Components.call_function(pid, name, params)

  describe "imports/0" do
    test "maps the resource's functions to the module's", %{pid: pid} do
      imports = CounterHost.imports()[@iface]
      assert imports["counter"] == {:resource, CounterHost}

      assert {:resource_fn, CounterHost, :new, :constructor, :handle} =
               imports["[constructor]counter"]

      assert {:resource_fn, CounterHost, :try_make, :static, {:result, :handle, nil}} =
               imports["[static]counter.try-make"]

      assert {:ok, 7} = call(pid, "run", [5])
      assert_receive {:dropped, 7}
      assert Table.count(pid) == 0
    end

    test "a static function's result and a resource in a result", %{pid: pid} do
      assert {:ok, 6} = call(pid, "make-and-keep", [5])
      assert Table.count(pid) == 1, "the guest keeps the handle"
      assert {:ok, {:ok, 4}} = call(pid, "try-make", [3])
      assert_receive {:dropped, 4}
      assert {:ok, {:error, "zero"}} = call(pid, "try-make", [0])
      assert {:ok, []} = call(pid, "drop-kept", [])
      assert_receive {:dropped, 6}
      assert Table.count(pid) == 0
    end

    test "an owned param moves to the callback; a borrowed one stays the guest's", %{pid: pid} do
      assert {:ok, 7} = call(pid, "take", [3, 4])
      assert_receive {:taken, 4}
      assert_receive {:dropped, 3}
      refute_received {:dropped, 4}, "no drop/1 for the moved counter"

      assert {:ok, 4} = call(pid, "peek", [3, 4])
      assert_receive {:dropped, 3}
      assert_receive {:dropped, 4}
      assert Table.count(pid) == 0
    end

    test "works from WIT source, with the default drop/1" do
      {:ok, pid} = Wasmex.Components.start_link(path: @wasm, imports: PlainHost.imports())
      # PlainHost's counters do not change: increment answers the value plus one.
      assert {:ok, 6} = call(pid, "run", [5])
      assert {:ok, 7} = call(pid, "take", [3, 4])
      assert Table.count(pid) == 0
    end

    test "an exception traps the call and the server stays alive", %{pid: pid} do
      assert {:error, message} = call(pid, "run", [13])
      assert message =~ "the import #{@iface}#[constructor]counter raised: unlucky"
      assert Process.alive?(pid)

      assert {:error, "the component instance stopped after an earlier failure" <> _} =
               call(pid, "run", [1])
    end

    test "an exception in a method traps the call; the term is released with the instance",
         %{pid: pid} do
      assert {:error, message} = call(pid, "run", [12])
      assert message =~ "the import #{@iface}#[method]counter.increment raised: twelve"
      assert Process.alive?(pid)
      assert Table.count(pid) == 1, "the guest never dropped its counter"
      GenServer.stop(pid)
      # Released by the table's process once it saw the server go.
      assert_receive {:dropped, 12}, 2_000
    end

    test "a constructor returning {:error, reason} traps the call", %{pid: pid} do
      assert {:error, message} = call(pid, "run", [666])
      assert message =~ "the constructor returned {:error, :no}, not a resource"
      assert Process.alive?(pid)
      assert Table.count(pid) == 0
    end

    test "a result that does not fit traps the call", %{pid: pid} do
      assert {:error, message} = call(pid, "try-make", [1])

      assert message =~
               "CounterHost.try_make returned a wrong value: expected {:ok, value} or {:error, value}, got: :bogus"

      assert Process.alive?(pid)
    end

    test "when the instance goes, its rows go and drop/1 runs for what the guest held", %{
      pid: pid
    } do
      assert {:ok, 10} = call(pid, "make-and-keep", [9])
      assert Table.count(pid) == 1
      ref = Process.monitor(pid)
      GenServer.stop(pid)
      assert_receive {:DOWN, ^ref, :process, ^pid, _}
      assert_receive {:dropped, 10}, 2_000
      assert Table.count(pid) == 0
    end
  end

  describe "drop/1" do
    test "defaults to doing nothing" do
      assert PlainHost.drop({:plain, 1}) == :ok
    end
  end

  describe "merge_imports/1" do
    test "merges modules and maps interface by interface" do
      log = {:fn, &IO.puts/1}

      merged =
        HostResource.merge_imports([CounterHost, %{@iface => %{"extra" => log}, "log" => log}])

      assert merged[@iface]["extra"] == log
      assert merged[@iface]["counter"] == {:resource, CounterHost}
      assert merged["log"] == log
    end
  end

  describe "__using__/1" do
    test "refuses an unknown resource and a missing source" do
      assert_raise CompileError, ~r/imports no resource gauge/, fn ->
        Code.compile_quoted(
          quote do
            defmodule Gauge do
              use Wasmex.Components.HostResource,
                wit_path: "test/fixtures/components/host_resources.wit",
                resource: "gauge"
            end
          end
        )
      end

      assert_raise CompileError, ~r/give :wit or :wit_path/, fn ->
        Code.compile_quoted(
          quote do
            defmodule NoSource do
              use Wasmex.Components.HostResource, resource: "counter"
            end
          end
        )
      end
    end
  end

  describe "Handles.put/4" do
    test "makes a row for each term where the shape has a handle" do
      owner = self()
      shape = {:tuple, [nil, {:list, :handle}]}

      assert {:ok, {"x", [{:wasmex_resource, _}, {:wasmex_resource, _}]}} =
               Handles.put(owner, PlainHost, shape, {"x", [:a, :b]})

      record = {:record, [{"main", :handle}]}

      assert {:ok, %{main: {:wasmex_resource, _}, n: 1}} =
               Handles.put(owner, PlainHost, record, %{main: :c, n: 1})

      variant = {:variant, [{"one", :handle}, {"none", nil}]}

      assert {:ok, {:one, {:wasmex_resource, _}}} =
               Handles.put(owner, PlainHost, variant, {:one, :d})

      assert {:ok, :none} = Handles.put(owner, PlainHost, variant, :none)
      assert Table.count(owner) == 4
    end

    test "a result that does not fit its shape leaves no rows" do
      owner = self()
      shape = {:tuple, [:handle, {:option, :handle}]}

      assert {:error, "expected :none or {:some, value}, got: :bad"} =
               Handles.put(owner, PlainHost, shape, {:made, :bad})

      assert {:error, "expected a tuple of 2 elements, got: :bad"} =
               Handles.put(owner, PlainHost, shape, :bad)

      assert {:error, "a label handle cannot be returned here: label is implemented elsewhere"} =
               Handles.put(owner, PlainHost, {:foreign, "label"}, :x)

      assert Table.count(owner) == 0
    end
  end

  describe "Handles.terms/2" do
    test "refuses ids the owner has no row for, and puts back what it took" do
      {:ok, id} = Table.put(self(), PlainHost, :kept)

      assert {:error, "unknown host resource handle 999999"} =
               Handles.terms(self(), [
                 {:wasmex_resource, :own, id},
                 {:wasmex_resource, :own, 999_999}
               ])

      assert {:ok, [:kept]} = Handles.terms(self(), [{:wasmex_resource, :borrow, id}])
      assert {:error, _} = Handles.terms(spawn(fn -> :ok end), [{:wasmex_resource, :borrow, id}])
    end
  end
end
