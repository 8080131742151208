defmodule Wasmex.Components.GuestResourceTest do
  use ExUnit.Case, async: true
  doctest Wasmex.Components.GuestResource

  alias Wasmex.Components.GuestResource

  @wasm "test/fixtures/components/resources.wasm"
  @iface "wasmex:resources/counters@0.1.0"
  @counter [@iface, "counter"]
  @label [@iface, "label"]

  defmodule Counter do
    use Wasmex.Components.GuestResource,
      wit: File.read!("test/fixtures/components/resources.wit"),
      resource: "counter"
  end

  defmodule Label do
    use Wasmex.Components.GuestResource,
      wit: File.read!("test/fixtures/components/resources.wit"),
      resource: "label",
      interface: "wasmex:resources/counters@0.1.0",
      world: "resources"
  end

  setup do
    {:ok, pid} = Wasmex.Components.start_link(path: @wasm)
    %{pid: pid}
  end

  defp live(pid), do: Wasmex.Components.call_function(pid, {@iface, "live-counters"}, [])

  describe "new/4" do
    test "constructs a resource in a server's instance or in an instance", %{pid: pid} do
      assert {:ok, %GuestResource{name: "counter", interface: @iface} = a} =
               GuestResource.new(pid, @counter, [7])

      assert is_binary(a.resource) and is_reference(a.reference)
      instance = Wasmex.Components.instance(pid)
      assert {:ok, b} = GuestResource.new(instance, {@iface, "counter"}, [8])
      assert b.id != a.id
      assert {:ok, 2} = live(pid)
    end

    test "refuses an unknown resource, a bad path and params of the wrong type", %{pid: pid} do
      assert {:error, "the component exports no constructor of a resource gauge in " <> _} =
               GuestResource.new(pid, [@iface, "gauge"], [1])

      assert {:error, "the component exports no constructor of a resource counter in nope:x/y"} =
               GuestResource.new(pid, ["nope:x/y", "counter"], [1])

      assert {:error, "a resource path is [interface, resource name], got: \"counter\""} =
               GuestResource.new(pid, "counter", [1])

      assert {:error, "expected a u32 (an integer), got: \"x\" at \"initial\""} =
               GuestResource.new(pid, @counter, ["x"])

      assert {:error, "expected 1 params, got 0"} = GuestResource.new(pid, @counter, [])
      assert {:ok, 0} = live(pid)
    end

    test "says when the server is not running", %{pid: pid} do
      GenServer.stop(pid)

      assert {:error, "the component server is not running: " <> _} =
               GuestResource.new(pid, @counter, [1])
    end
  end

  describe "call/5" do
    test "calls methods, which may take handles and return new ones", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      {:ok, b} = GuestResource.new(pid, @counter, [10])
      assert {:ok, 2} = GuestResource.call(a, :method, "increment")
      assert {:ok, 12} = GuestResource.call(a, :method, "add-from", [b])
      assert {:ok, 10} = GuestResource.call(b, :method, "get-value"), "a borrow leaves b live"
      assert {:ok, %GuestResource{name: "counter"} = c} = GuestResource.call(a, :method, "split")
      assert {:ok, 12} = GuestResource.call(c, :method, "get-value")
    end

    test "a handle given to an own<T> parameter moves to the guest", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      {:ok, b} = GuestResource.new(pid, @counter, [2])
      assert {:ok, 3} = GuestResource.call(a, :method, "absorb", [b])
      assert {:ok, 1} = live(pid), "the guest destroyed the moved counter"

      assert {:error, "resource handle " <> message} = GuestResource.call(b, :method, "get-value")
      assert message =~ "is no longer live: it was dropped, or moved to the guest"
      assert :ok = GuestResource.drop(b)
    end

    test "refuses a handle of another resource, and one moved and used in one call", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      {:ok, label} = GuestResource.new(pid, @label, ["x"])

      assert {:error, "resource handle " <> message} =
               GuestResource.call(a, :method, "add-from", [label])

      assert message =~ "is a label, not a counter at \"other\""

      assert {:error, message} = GuestResource.call(a, :method, "absorb", [a])
      assert message =~ "is given twice in one call, once to an own<T> parameter"
      assert {:ok, 1} = GuestResource.call(a, :method, "get-value"), "nothing moved"
    end

    test "refuses a handle of another store and an unknown method", %{pid: pid} do
      {:ok, other} = Wasmex.Components.start_link(path: @wasm)
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      {:ok, foreign} = GuestResource.new(other, @counter, [1])

      assert {:error, "the resource handle " <> message} =
               GuestResource.call(a, :method, "add-from", [foreign])

      assert message =~ "belongs to another store"

      assert {:error, "the component exports no method nope of counter"} =
               GuestResource.call(a, :method, "nope")
    end

    test "refuses params that are not a list, a wrong kind and a non-handle", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])

      assert {:error, "a method's kind is :method or :async_method, got: :static"} =
               GuestResource.call(a, :static, "get-value")

      assert {:error, "expected a resource handle, got: :nope"} =
               GuestResource.call(:nope, :method, "get-value")

      assert {:error, "a static function's kind is :static or :async_static, got: :method"} =
               GuestResource.call_static(pid, @counter, :method, "with-value", [1])

      assert {:error, "params must be a list, got: 5"} =
               GuestResource.call(a, :method, "add-from", 5)
    end

    test "refuses a forged handle id", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])

      assert {:error, "unknown resource handle 999 at \"self\""} =
               GuestResource.call(%{a | id: 999}, :method, "get-value")
    end

    test "a handle works from any process, and not after its server stopped", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      task = Task.async(fn -> GuestResource.call(a, :method, "increment") end)
      assert {:ok, 2} = Task.await(task)
      GenServer.stop(pid)
      # The server's store went with it, and the handle with the store.
      assert {:error, "unknown store " <> _} = GuestResource.call(a, :method, "increment")
      assert {:error, "unknown store " <> _} = GuestResource.drop(a)
    end

    test "handles of another instance of the store are refused by methods and by drop" do
      {:ok, store} = Wasmex.Components.Store.new()
      {:ok, component} = Wasmex.Components.Component.new(store, File.read!(@wasm))
      {:ok, first} = Wasmex.Components.Instance.new(store, component, %{})
      {:ok, second} = Wasmex.Components.Instance.new(store, component, %{})
      {:ok, a} = GuestResource.new(first, @counter, [1])
      {:ok, b} = GuestResource.new(second, @counter, [2])

      assert {:error, "resource handle " <> message} =
               GuestResource.call(b, :method, "add-from", [a])

      assert message =~ "belongs to another component instance at \"other\""

      assert {:error, "resource handle " <> message} = GuestResource.drop(%{a | instance: second})

      assert message =~ "belongs to another component instance"
      assert {:ok, 1} = GuestResource.call(a, :method, "get-value")
    end
  end

  describe "call_static/6" do
    test "calls a static function, which may return a handle", %{pid: pid} do
      assert {:ok, %GuestResource{} = c} =
               GuestResource.call_static(pid, @counter, :static, "with-value", [5])

      assert {:ok, 5} = GuestResource.call(c, :method, "get-value")

      assert {:error, "the component exports no static function nope of counter"} =
               GuestResource.call_static(pid, @counter, :static, "nope", [])

      assert {:error, "a resource path is [interface, resource name], got: [\"counter\"]"} =
               GuestResource.call_static(pid, ["counter"], :static, "with-value", [1])
    end
  end

  describe "drop/2" do
    test "runs the guest's destructor; a second drop is :ok; methods afterwards fail", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      assert {:ok, 1} = live(pid)
      assert :ok = GuestResource.drop(a)
      assert {:ok, 0} = live(pid)
      assert :ok = GuestResource.drop(a)
      assert {:error, "resource handle " <> _} = GuestResource.call(a, :method, "get-value")
    end

    test "stopped before the destructor begins, keeps the handle and the instance", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      assert {:error, "timed out" <> _} = GuestResource.drop(a, 0)
      assert {:ok, 1} = live(pid)
      assert :ok = GuestResource.drop(a)
      assert {:ok, 0} = live(pid)
    end

    test "refuses an id the port never gave", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])
      assert {:error, "unknown resource handle 999"} = GuestResource.drop(%{a | id: 999})
    end
  end

  describe "Wasmex.Components.call_function/3 with handles" do
    test "a freestanding function without handles is called as usual", %{pid: pid} do
      assert {:ok, 0} = live(pid)
    end

    test "a freestanding function with a handle in its type is refused, as in 0.15.1", %{pid: pid} do
      {:ok, a} = GuestResource.new(pid, @counter, [1])

      assert {:error,
              "functions that take or return resource handles are supported only as " <> _} =
               Wasmex.Components.call_function(pid, {@iface, "value-of"}, [
                 {:wasmex_resource, a.id}
               ])

      assert {:ok, 1} = GuestResource.call(a, :method, "get-value")
    end
  end

  describe "__using__/1" do
    test "generates new, methods, statics and drop, with a final keyword list", %{pid: pid} do
      assert {:ok, c} = Counter.new(pid, 41)
      assert {:ok, 42} = Counter.increment(c)
      assert {:ok, 42} = Counter.get_value(c, timeout: 1_000)
      assert {:ok, d} = Counter.with_value(pid, 8, timeout: 1_000)
      assert {:ok, 50} = Counter.absorb(c, d)
      assert {:ok, e} = Counter.split(c)
      assert :ok = Counter.drop(e)
      assert :ok = Counter.drop(c, timeout: 1_000)
      assert {:ok, 0} = live(pid)
      assert Counter.resource_path() == @counter
    end

    test "generated methods refuse handles of another resource", %{pid: pid} do
      {:ok, label} = Label.new(pid, "hello")
      assert {:ok, "hello"} = Label.text(label)
      assert {:error, "expected a counter handle, got a label handle"} = Counter.increment(label)
      assert {:error, "expected a label handle, got: :nope"} = Label.drop(:nope)
    end

    test "an unknown world does not compile" do
      assert_raise CompileError, ~r/no world to use in the WIT/, fn ->
        Code.compile_quoted(
          quote do
            defmodule NoWorld do
              use Wasmex.Components.GuestResource,
                wit: File.read!("test/fixtures/components/resources.wit"),
                resource: "counter",
                world: "nope"
            end
          end
        )
      end
    end

    test "an unknown resource does not compile" do
      assert_raise CompileError, ~r/the world resources exports no resource gauge/, fn ->
        Code.compile_quoted(
          quote do
            defmodule Gauge do
              use Wasmex.Components.GuestResource,
                wit: File.read!("test/fixtures/components/resources.wit"),
                resource: "gauge"
            end
          end
        )
      end
    end
  end
end
