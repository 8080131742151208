defmodule Wasmex.System.HostileModulesTest do
  @moduledoc """
  Hostile modules: malformed, enormous, deeply nested or slow to compile ones get an
  error or hit a limit. None of them takes its host down, let alone the BEAM; after each
  one the same host still compiles, instantiates and runs a module.
  """
  use ExUnit.Case, async: true

  import Wasmex.Test.HostileHost

  alias Wasmex.{Instance, Memory}

  @wasm_test File.read!(TestHelper.wasm_test_file_path())

  setup do
    %{host: new_host()}
  end

  describe "invalid modules" do
    test "random bytes, truncated headers and garbage sections are compile errors", %{
      host: host
    } do
      :rand.seed(:exsss, {7, 7, 7})
      header = <<0, "asm", 1, 0, 0, 0>>

      cases = [
        # Random bytes (read as text, since they do not start with the magic number).
        :rand.bytes(4096),
        <<0>> <> :rand.bytes(4095),
        # Truncated headers.
        <<0>>,
        <<0, "as">>,
        <<0, "asm">>,
        <<0, "asm", 1, 0>>,
        # A version no engine speaks.
        <<0, "asm", 99, 0, 0, 0>>,
        # Valid header, then garbage: an unknown section id, a section longer than the
        # input, a section length that overflows its LEB128, a type section claiming
        # billions of types, a code section for functions that were never declared.
        header <> <<0xEE>> <> :rand.bytes(2048),
        header <> <<1, 0xFF, 0xFF, 0x03, 1, 2, 3>>,
        header <> <<1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F>>,
        header <> <<1, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F>>,
        header <> <<10, 4, 1, 2, 0, 0x0B>>
      ]

      for bytes <- cases do
        assert {:error, message} = Wasmex.Module.compile(host.store, bytes)
        assert is_binary(message) and message != ""
      end

      assert_serving(host)
    end

    test "start_link with invalid bytes returns an error, in a fresh store and in a shared one",
         %{host: host} do
      garbage = <<0, "asm", 1, 0, 0, 0, 0xEE, 1, 2, 3>>
      assert {:error, "Could not compile module: " <> _} = Wasmex.start_link(%{bytes: garbage})

      assert {:error, "Could not compile module: " <> _} =
               Wasmex.start_link(%{bytes: garbage, store: host.store})

      assert {:error, "Error while parsing bytes: " <> _} =
               Wasmex.start_link(%{bytes: "(module (func (export \"f\") i32.const))"})

      assert_serving(host)
    end

    test "every truncation of a valid module compiles or errors; cuts inside the header error",
         %{host: host} do
      results =
        for cut <- 0..(byte_size(@wasm_test) - 1) do
          {cut, Wasmex.Module.compile(host.store, binary_part(@wasm_test, 0, cut))}
        end

      for {cut, result} <- results do
        assert match?({:ok, %Wasmex.Module{}}, result) or
                 match?({:error, m} when is_binary(m), result),
               "cut at #{cut}: #{inspect(result)}"

        if cut < 8, do: assert({:error, _} = result)
      end

      # Only a cut that happens to fall on a section boundary leaves a valid module.
      assert Enum.count(results, &match?({_, {:error, _}}, &1)) > 0.9 * length(results)
      assert_serving(host)
    end

    test "modules with random bytes flipped compile or error; those that start answer or fail",
         %{host: host} do
      :rand.seed(:exsss, {1, 2, 3})

      outcomes =
        for _ <- 1..300 do
          mutated =
            Enum.reduce(1..:rand.uniform(3), @wasm_test, fn _, bytes ->
              # Keep the header so the bytes reach the binary decoder.
              at = 8 + :rand.uniform(byte_size(bytes) - 8) - 1
              <<before::binary-size(at), _, rest::binary>> = bytes
              <<before::binary, :rand.uniform(256) - 1, rest::binary>>
            end)

          with {:ok, module} <- Wasmex.Module.compile(host.store, mutated),
               {:ok, pid} <- Wasmex.start_link(%{store: host.store, module: module}) do
            result = Wasmex.call_function(pid, "sum", [1, 2], 1_000)
            assert match?({:ok, _}, result) or match?({:error, m} when is_binary(m), result)
            GenServer.stop(pid)
            :ran
          else
            {:error, message} ->
              assert is_binary(message)
              :error
          end
        end

      assert :error in outcomes
      assert_serving(host)
    end
  end

  describe "an enormous module" do
    @tag timeout: 120_000
    test "an 8 MiB data segment compiles, instantiates and is all there", %{host: host} do
      data = String.duplicate("abcdefgh", 1024 * 1024)

      wat = """
      (module (memory (export "memory") 200)
        (data (i32.const 0) "#{data}")
        (func (export "byte") (param i32) (result i32) local.get 0 i32.load8_u))
      """

      pid = start!(host, wat)
      {:ok, memory} = Wasmex.memory(pid)
      last = 8 * 1024 * 1024 - 8
      assert Memory.read_binary(host.store, memory, last, 8) == "abcdefgh"
      assert Memory.read_binary(host.store, memory, last + 8, 8) == <<0::64>>
      assert Wasmex.call_function(pid, "byte", [last + 7]) == {:ok, [?h]}
      assert_serving(host)
    end

    @tag timeout: 120_000
    test "20,000 exported functions compile and each is callable", %{host: host} do
      n = 20_000

      wat =
        "(module #{fresh_name()} " <>
          Enum.map_join(1..n, fn i -> ~s{(func (export "f#{i}") (result i32) i32.const #{i})} end) <>
          ")"

      pid = start!(host, wat)
      assert {:ok, module} = Wasmex.module(pid)
      assert map_size(Wasmex.Module.exports(module)) == n

      for i <- [1, 12_345, n] do
        assert Wasmex.call_function(pid, "f#{i}", []) == {:ok, [i]}
      end

      assert_serving(host)
    end

    @tag timeout: 120_000
    test "a module that takes seconds to compile does not hold up calls on the same host", %{
      host: host
    } do
      # Compile time grows with the square of the loop nesting depth: on 2 vCPUs 8,000
      # nested loops took about 2 s to compile, 10,000 about 3.6 s.
      pid = start!(host, @wasm_test)

      slow =
        "(module #{fresh_name()} " <>
          "(func (export \"f\") " <> nested("loop ", "end ", 8_000) <> "))"

      compile = Task.async(fn -> Wasmex.Module.compile(host.store, slow) end)
      TestHelper.wait_until_pending(host.store.host)

      {micros, result} = :timer.tc(fn -> Wasmex.call_function(pid, "sum", [1, 2]) end)
      assert result == {:ok, [3]}
      assert Task.yield(compile, 0) == nil, "the compile finished before the call: too fast"
      assert micros < 1_000_000

      assert {:ok, module} = Task.await(compile, 110_000)
      assert {:ok, slow_pid} = Wasmex.start_link(%{store: host.store, module: module})
      assert Wasmex.call_function(slow_pid, "f", []) == {:ok, []}
      assert_serving(host)
    end
  end

  describe "deep nesting" do
    test "10,000 nested blocks, folded and flat, compile and run", %{host: host} do
      folded = "(module (func (export \"f\") " <> nested("(block ", ")", 10_000) <> "))"
      flat = "(module (func (export \"f\") " <> nested("block ", "end ", 10_000) <> "))"

      for wat <- [folded, flat] do
        pid = start!(host, wat)
        assert Wasmex.call_function(pid, "f", []) == {:ok, []}
      end

      assert_serving(host)
    end

    @tag timeout: 120_000
    test "a million nested blocks compile or error cleanly", %{host: host} do
      wat =
        "(module #{fresh_name()} (func (export \"f\") " <>
          nested("block ", "end ", 1_000_000) <> "))"

      case Wasmex.Module.compile(host.store, wat) do
        {:ok, module} ->
          assert {:ok, pid} = Wasmex.start_link(%{store: host.store, module: module})
          assert Wasmex.call_function(pid, "f", []) == {:ok, []}

        {:error, message} ->
          assert is_binary(message)
      end

      assert_serving(host)
    end

    test "unbounded recursion traps with call stack exhausted; the instance answers afterwards",
         %{host: host} do
      wat = """
      (module
        (type $t (func (param i32) (result i32)))
        (table 1 funcref)
        (elem (i32.const 0) $indirect)
        (func $direct (export "direct") (param i32) (result i32)
          local.get 0 i32.const 1 i32.add call $direct)
        (func $indirect (export "indirect") (param i32) (result i32)
          local.get 0 i32.const 1 i32.add i32.const 0 call_indirect (type $t))
        (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
      """

      pid = start!(host, wat)

      for name <- ["direct", "indirect", "direct"] do
        assert {:error,
                "Error during function excecution: `error while executing at wasm" <> _ = m} =
                 Wasmex.call_function(pid, name, [0])

        # The backtrace of a stack this deep is cut to a bounded size; the trap comes last.
        assert m =~ ~r/`\. wasm trap: call stack exhausted$/
        assert byte_size(m) < 16_384

        assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
      end

      assert_serving(host)
    end

    test "recursion through an import callback is bounded by the Wasm stack too", %{host: host} do
      # Wasm -> Elixir -> Wasm (through the caller) -> Elixir -> ... with no base case.
      wat = """
      (module
        (import "env" "reenter" (func $reenter (param i32) (result i32)))
        (func (export "down") (param i32) (result i32) local.get 0 i32.const 1 i32.add call $reenter)
        (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
      """

      test_pid = self()

      reenter = fn %{caller: caller, instance: instance}, depth ->
        send(test_pid, {:depth, depth})
        Instance.call_exported_function(caller, instance, "down", [depth], :nested, :infinity)

        receive do
          {:returned_function_call, {:ok, [result]}, :nested} -> result
          {:returned_function_call, {:error, message}, :nested} -> raise message
        end
      end

      module = compile!(host, wat)
      imports = %{env: %{reenter: {:fn, [:i32], [:i32], reenter}}}

      assert {:ok, pid} =
               Wasmex.start_link(%{store: host.store, module: module, imports: imports})

      assert {:error, message} = Wasmex.call_function(pid, "down", [0], 30_000)
      # Each level wraps the error of the level below; the innermost is the trap.
      assert message =~ "the callback env.reenter raised"
      assert message =~ "wasm trap: call stack exhausted"
      depths = collect_depths([])
      assert length(depths) > 10
      assert Enum.sort(depths) == Enum.to_list(1..length(depths))
      assert Wasmex.call_function(pid, "sum", [1, 2]) == {:ok, [3]}
      assert_serving(host)
    end
  end

  defp collect_depths(acc) do
    receive do
      {:depth, depth} -> collect_depths([depth | acc])
    after
      0 -> acc
    end
  end

  describe "compiling hostile code" do
    # Compile time grows with the square of the nesting depth: 40,000 nested loops take
    # far longer than the timeouts below.
    @slow_to_compile "(module (func " <>
                       String.duplicate("loop ", 40_000) <>
                       String.duplicate("end ", 40_000) <> "))"

    # The compile child processes of a port process.
    defp compile_children(os_pid) do
      Path.wildcard("/proc/#{os_pid}/task/*/children")
      |> Enum.flat_map(fn file ->
        # A thread may end between listing and reading.
        case File.read(file) do
          {:ok, children} -> String.split(children)
          {:error, _} -> []
        end
      end)
    end

    # Another process's children cannot be monitored from the BEAM: poll, for at most `ms`.
    defp children_gone_within?(os_pid, ms) do
      cond do
        compile_children(os_pid) == [] -> true
        ms <= 0 -> false
        true -> Process.sleep(10) && children_gone_within?(os_pid, ms - 10)
      end
    end

    test "is stopped at the compile timeout, and the engine compiles the next module" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, compile_timeout: 300)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      {micros, result} = :timer.tc(fn -> Wasmex.Module.compile(store, @slow_to_compile) end)

      assert result ==
               {:error,
                "Could not compile module: compilation did not finish within 300 ms and was stopped " <>
                  "(raise it with compile_timeout: of Wasmex.Engine.new/2, or config :wasmex, " <>
                  "compile_timeout: for stores without an engine)"}

      assert micros < 2_000_000
      assert children_gone_within?(Wasmex.Host.os_pid(engine.host), 1_000)
      assert {:ok, _} = Wasmex.Module.compile(store, "(module)")
    end

    test "is stopped when the caller goes away" do
      {:ok, engine} = Wasmex.Engine.new(%Wasmex.EngineConfig{}, compile_timeout: :infinity)
      {:ok, store} = Wasmex.Store.new(nil, engine)
      os_pid = Wasmex.Host.os_pid(engine.host)
      caller = spawn(fn -> Wasmex.Module.compile(store, @slow_to_compile) end)
      wait_until_compiling(os_pid)
      Process.exit(caller, :kill)
      assert children_gone_within?(os_pid, 1_000)
      assert {:ok, _} = Wasmex.Module.compile(store, "(module)")
    end

    defp wait_until_compiling(os_pid) do
      if compile_children(os_pid) == [], do: wait_until_compiling(os_pid), else: :ok
    end
  end
end
