defmodule Wasmex.CallbackTest do
  @moduledoc "Import callbacks: Wasm calling Elixir, and Elixir reaching back in while Wasm waits."
  use ExUnit.Case, async: true

  alias Wasmex.{Instance, Memory, StoreOrCaller}

  @import_test File.read!(TestHelper.wasm_import_test_file_path())

  # A module whose exports call `env.cb` (with the given signature) and which exports
  # its memory and a mutable global.
  defp module_calling(params, results) do
    p = Enum.map_join(params, " ", &Atom.to_string/1)
    r = Enum.map_join(results, " ", &Atom.to_string/1)
    gets = params |> Enum.with_index() |> Enum.map_join(" ", fn {_, i} -> "local.get #{i}" end)

    """
    (module
      (import "env" "cb" (func $cb (param #{p}) (result #{r})))
      (memory (export "memory") 1)
      (global (export "counter") (mut i32) (i32.const 5))
      (func (export "run") (param #{p}) (result #{r}) #{gets} call $cb))
    """
  end

  defp start(wat, fun, params, results) do
    imports = %{env: %{cb: {:fn, params, results, fun}}}
    {:ok, pid} = Wasmex.start_link(%{bytes: wat, imports: imports})
    pid
  end

  describe "imports" do
    test "the import test fixture's functions run in Elixir" do
      {:ok, pid} =
        Wasmex.start_link(%{
          bytes: @import_test,
          imports: %{env: TestHelper.default_imported_functions_env()}
        })

      assert Wasmex.call_function(pid, "using_imported_sum3", [23, 19, 2]) == {:ok, [44]}
      assert {:ok, [sum]} = Wasmex.call_function(pid, "using_imported_sumf", [1.5, 2.25])
      assert_in_delta sum, 3.75, 0.0001
      assert Wasmex.call_function(pid, "using_imported_void", []) == {:ok, []}
    end

    test "return the floats that are no numbers as the atoms they get them as" do
      wat = ~s{(module
        (import "env" "id" (func $id (param f64) (result f64)))
        (func (export "f") (param f64) (result f64) local.get 0 call $id))}

      imports = %{env: %{id: {:fn, [:f64], [:f64], fn _ctx, x -> x end}}}
      {:ok, pid} = Wasmex.start_link(%{bytes: wat, imports: imports})

      assert for(x <- [:nan, :infinity, :neg_infinity], do: Wasmex.call_function(pid, "f", [x])) ==
               [{:ok, [:nan]}, {:ok, [:infinity]}, {:ok, [:neg_infinity]}]
    end

    test "accept string keys" do
      env =
        Map.new(TestHelper.default_imported_functions_env(), fn {k, v} ->
          {Atom.to_string(k), v}
        end)

      {:ok, pid} = Wasmex.start_link(%{bytes: @import_test, imports: %{"env" => env}})
      assert Wasmex.call_function(pid, "using_imported_sum3", [1, 2, 3]) == {:ok, [6]}
    end

    test "return several results" do
      pid =
        start(
          module_calling([:i32, :i64], [:i64, :i32]),
          fn _ctx, a, b -> [b, a] end,
          [:i32, :i64],
          [:i64, :i32]
        )

      assert Wasmex.call_function(pid, "run", [1, 2]) == {:ok, [2, 1]}
    end

    test "results are checked against the declared types" do
      pid = start(module_calling([:i32], [:i32]), fn _ctx, _x -> 2.5 end, [:i32], [:i32])
      assert {:error, message} = Wasmex.call_function(pid, "run", [1])
      assert message =~ "import env.cb returned 2.5 where a i32 was expected"
    end

    test "a callback that raises fails the call with the exception's message, and the instance goes on" do
      pid =
        start(
          module_calling([:i32], [:i32]),
          fn _ctx, x -> if x == 0, do: raise("boom #{x}"), else: x end,
          [:i32],
          [:i32]
        )

      assert {:error, message} = Wasmex.call_function(pid, "run", [0])
      assert message =~ "the callback env.cb raised: boom 0"
      assert Wasmex.call_function(pid, "run", [3]) == {:ok, [3]}
    end

    test "a signature that differs from the module's fails start_link naming the import" do
      imports = %{env: %{cb: {:fn, [:i64], [:i32], fn _ctx, x -> x end}}}

      assert {:error, message} =
               Wasmex.start_link(%{bytes: module_calling([:i32], [:i32]), imports: imports})

      assert message =~ "env::cb"
    end
  end

  describe "the caller inside a callback" do
    test "writes a large binary into the caller's memory (through the shared buffer)" do
      data = :crypto.strong_rand_bytes(512 * 1024)

      fun = fn %{caller: caller, memory: memory}, ptr ->
        :ok = Memory.write_binary(caller, memory, ptr, data)
        0
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      1 = Memory.grow(store, memory, 9)
      assert Wasmex.call_function(pid, "run", [64]) == {:ok, [0]}
      assert Memory.read_binary(store, memory, 64, byte_size(data)) == data
    end

    test "reads a large binary from the caller's memory (through the shared buffer)" do
      data = :crypto.strong_rand_bytes(512 * 1024)
      test = self()

      fun = fn %{caller: caller, memory: memory}, ptr ->
        send(test, {:read, Memory.read_binary(caller, memory, ptr, byte_size(data))})
        0
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      1 = Memory.grow(store, memory, 9)
      :ok = Memory.write_binary(store, memory, 64, data)
      {:ok, [0]} = Wasmex.call_function(pid, "run", [64])
      assert_received {:read, ^data}
    end

    test "reads and writes the caller's memory" do
      fun = fn %{caller: caller, memory: memory}, ptr ->
        <<a, b>> = Memory.read_binary(caller, memory, ptr, 2)
        :ok = Memory.write_binary(caller, memory, ptr + 2, <<a + b>>)
        a * b
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      :ok = Memory.write_binary(store, memory, 10, <<6, 7>>)
      assert Wasmex.call_function(pid, "run", [10]) == {:ok, [42]}
      assert Memory.get_byte(store, memory, 12) == 13
    end

    test "reads and writes a global" do
      fun = fn %{caller: caller, instance: instance}, x ->
        {:ok, counter} = Instance.get_global_value(caller, instance, "counter")
        :ok = Instance.set_global_value(caller, instance, "counter", counter + x)
        counter
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      assert Wasmex.call_function(pid, "run", [10]) == {:ok, [5]}
      assert Wasmex.call_function(pid, "run", [0]) == {:ok, [15]}
    end

    test "serves 10,000 memory reads during one Wasm call" do
      fun = fn %{caller: caller, memory: memory}, n ->
        Enum.reduce(1..n, 0, fn i, acc -> acc + Memory.get_byte(caller, memory, rem(i, 16)) end)
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      {:ok, store} = Wasmex.store(pid)
      {:ok, memory} = Wasmex.memory(pid)
      :ok = Memory.write_binary(store, memory, 0, :binary.copy(<<1>>, 16))
      assert Wasmex.call_function(pid, "run", [10_000], 30_000) == {:ok, [10_000]}
    end

    test "is refused after its callback returned" do
      test_pid = self()
      fun = fn %{caller: caller}, x -> send(test_pid, {:caller, caller}) && x end
      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      {:ok, [1]} = Wasmex.call_function(pid, "run", [1])
      assert_receive {:caller, caller}
      assert {:error, "the caller is no longer valid" <> _} = StoreOrCaller.get_fuel(caller)
      {:ok, memory} = Wasmex.memory(pid)

      assert {:error, "the caller is no longer valid" <> _} =
               Memory.read_binary(caller, memory, 0, 1)
    end

    test "can call back into Wasm, whose import calls Elixir again" do
      wat = """
      (module
        (import "env" "cb" (func $cb (param i32) (result i32)))
        (func (export "run") (param i32) (result i32) local.get 0 call $cb))
      """

      fun = fn %{caller: caller, instance: instance}, depth ->
        if depth == 0 do
          100
        else
          :ok =
            Instance.call_exported_function(
              caller,
              instance,
              "run",
              [depth - 1],
              {:nested, depth}
            )

          receive do
            {:returned_function_call, {:ok, [inner]}, {:nested, ^depth}} -> inner + depth
          end
        end
      end

      pid = start(wat, fun, [:i32], [:i32])
      assert Wasmex.call_function(pid, "run", [3]) == {:ok, [106]}
    end
  end

  describe "the store inside a callback" do
    test "requests through the store wait for the running call instead of deadlocking" do
      test_pid = self()

      fun = fn %{memory: memory, pid: server}, x ->
        spawn(fn ->
          {:ok, store} = Wasmex.store(server)
          send(test_pid, {:read_after_call, Memory.get_byte(store, memory, 0)})
        end)

        x
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      assert Wasmex.call_function(pid, "run", [9]) == {:ok, [9]}
      assert_receive {:read_after_call, 0}, 2_000
    end

    test "a call to its own instance server is refused at once, not left to wait out its timeout" do
      test_pid = self()

      fun = fn %{pid: server}, x ->
        send(test_pid, {:inner, Wasmex.call_function(server, "run", [1], 60_000)})
        x
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      assert Wasmex.call_function(pid, "run", [9], 5_000) == {:ok, [9]}

      assert_receive {:inner,
                      {:error,
                       "the instance's store is waiting for this callback to return: " <> _}}
    end
  end

  describe "concurrency" do
    test "two instances on one engine are inside callbacks at the same time" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{})
      test_pid = self()

      # Each callback announces itself and waits for the other: this only completes if
      # both Wasm calls are waiting in callbacks at once.
      fun = fn %{pid: server}, x ->
        send(test_pid, {:inside, server, self()})

        receive do
          :go -> x
        end
      end

      pids =
        for _ <- 1..2 do
          {:ok, store} = Wasmex.Store.new(nil, engine)
          {:ok, module} = Wasmex.Module.compile(store, module_calling([:i32], [:i32]))

          {:ok, pid} =
            Wasmex.start_link(%{
              store: store,
              module: module,
              imports: %{env: %{cb: {:fn, [:i32], [:i32], fun}}}
            })

          pid
        end

      tasks =
        Enum.map(Enum.with_index(pids), fn {pid, i} ->
          Task.async(fn -> Wasmex.call_function(pid, "run", [i]) end)
        end)

      assert_receive {:inside, _, first}, 2_000
      assert_receive {:inside, _, second}, 2_000
      send(first, :go)
      send(second, :go)
      assert Enum.map(tasks, &Task.await/1) == [{:ok, [0]}, {:ok, [1]}]
    end
  end

  # A list nested `depth` levels deep around 1: deeper than either side decodes.
  defp nested(depth), do: Enum.reduce(1..depth, 1, fn _, acc -> [acc] end)

  describe "every callback gets exactly one answer, promptly" do
    # The task's crash report is expected.
    @tag :capture_log
    test "a callback process taken down by a linked process that crashes fails the call at once" do
      fun = fn _ctx, _x ->
        Task.async(fn -> exit(:boom) end)
        receive do: (:never -> 0)
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      assert {:error, message} = Wasmex.call_function(pid, "run", [1], 30_000)
      assert message =~ "the callback env.cb exited before returning: :boom"
      assert Wasmex.call_function(pid, "run", [1], 30_000) |> elem(0) == :error
    end

    test "a callback process killed from outside fails the call at once" do
      test = self()

      fun = fn _ctx, _x ->
        send(test, {:callback, self()})
        receive do: (:never -> 0)
      end

      pid = start(module_calling([:i32], [:i32]), fun, [:i32], [:i32])
      call = Task.async(fn -> Wasmex.call_function(pid, "run", [1], :infinity) end)
      assert_receive {:callback, callback}, 5_000
      Process.exit(callback, :kill)
      assert {:error, message} = Task.await(call, 5_000)
      assert message =~ "the callback env.cb exited before returning: :killed"
    end

    test "a result that is no number, however deeply nested, fails the call saying so" do
      deep = nested(100_000)
      pid = start(module_calling([:i32], [:i32]), fn _ctx, _x -> deep end, [:i32], [:i32])
      assert {:error, message} = Wasmex.call_function(pid, "run", [1], :infinity)
      assert message =~ "the callback must return numbers, got: [[[["
    end

    test "a result the port cannot read, sent by a process handling callbacks itself, fails the call" do
      {:ok, store} = Wasmex.Store.new()
      {:ok, module} = Wasmex.Module.compile(store, module_calling([:i32], [:i32]))
      imports = %{env: %{cb: {:fn, [:i32], [:i32], fn _ctx, x -> x end}}}
      # This process gets the callbacks (it registered no imports with Wasmex.Callback).
      {:ok, instance} = Instance.new(store, module, imports)
      :ok = Instance.call_exported_function(store, instance, "run", [1], :run, :infinity)
      assert_receive {:wasmex_callback, host, store_id, callback_id, "env", "cb", [1]}, 5_000

      Wasmex.Host.notify(
        host,
        Wasmex.Wire.callback_return(store_id, callback_id, {:ok, [nested(10_000)]})
      )

      assert_receive {:returned_function_call, {:error, message}, :run}, 5_000
      assert message =~ "the callback's result could not be read: malformed frame: nested deeper"
    end

    test "params nested too deep get their error under the call's own id, at once" do
      pid = start(module_calling([:i32], [:i32]), fn _ctx, x -> x end, [:i32], [:i32])
      {:ok, store} = Wasmex.store(pid)

      {micros, result} =
        :timer.tc(fn -> Wasmex.call_function(pid, "run", [nested(10_000)], 60_000) end)

      assert {:error, "malformed frame: nested deeper than 512"} = result
      assert micros < 2_000_000
      # The host let go of the call: no entry left, nothing waits for this process.
      state = :sys.get_state(store.host)
      assert Wasmex.Host.Pending.size(state.pending) == 0
      refute Wasmex.Host.Pending.sent_by?(state.pending, self())
    end
  end

  describe "abandonment" do
    test "a callback abandoned before its process started never runs" do
      test_pid = self()
      ran = fn _ctx -> send(test_pid, :ran) end
      Wasmex.Callback.register(self(), %{env: %{f: {:fn, [], [], ran}}}, nil)
      on_exit(fn -> Wasmex.Callback.unregister(test_pid) end)
      host = spawn(fn -> :ok end)

      refute Wasmex.Callback.abandon(host, 1, 7, self())
      :ok = Wasmex.Callback.start(host, nil, self(), 1, 7, "env", "f", [])
      refute_receive :ran, 200
    end
  end
end
