defmodule Wasmex.Components.ComponentServerTest do
  use ExUnit.Case, async: true

  defmodule Types do
    use Wasmex.Components.ComponentServer, wit: "test/fixtures/components/types.wit"
  end

  defmodule RawTypes do
    use Wasmex.Components.ComponentServer,
      wit: "test/fixtures/components/types.wit",
      convert_field_names: false
  end

  defmodule Host do
    use Wasmex.Components.ComponentServer,
      wit: "test/fixtures/components/imports.wit",
      imports: %{
        "log" => {:fn, fn _ -> :ok end},
        "add" => {:fn, fn a, b -> a + b end},
        "wasmex:host/kv@0.1.0" => %{
          "get" => {:fn, fn _ -> :none end},
          "set" => {:fn, fn _, _ -> :ok end}
        }
      }
  end

  @types "test/fixtures/components/types.wasm"

  describe "__using__/1" do
    test "generates a function per world export, with an optional timeout" do
      {:ok, pid} = Types.start_link(path: @types)
      assert {:ok, "Hello, Ada!"} = Types.greet(pid, "Ada")
      assert {:ok, 3} = Types.add(pid, 1, 2, 1_000)
      assert {:ok, []} = Types.nothing(pid)
    end

    test "generates functions for an exported interface's functions, converting field names" do
      {:ok, pid} = Types.start_link(path: @types)
      person = %{full_name: "Ada", age: 36, tags: [], home: {:some, %{x: 1, y: 2}}}
      assert {:ok, ^person} = Types.echo_person(pid, person)
      assert {:ok, 25} = Types.distance(pid, %{x: 0, y: 0}, %{x: 3, y: 4})
    end

    test "with convert_field_names: false, keys are the WIT names" do
      {:ok, pid} = RawTypes.start_link(path: @types)
      person = %{"full-name": "Ada", age: 36, tags: [], home: :none}
      assert {:ok, ^person} = RawTypes.echo_person(pid, person)
    end

    test "imports given to use are the defaults of start_link/1; those given there win" do
      {:ok, pid} = Host.start_link(path: "test/fixtures/components/imports.wasm")
      assert {:ok, 6} = Host.add_plus_one(pid, 2, 3)
      assert {:ok, :none} = Host.store_and_fetch(pid, "k", "v")

      {:ok, pid} =
        Host.start_link(
          path: "test/fixtures/components/imports.wasm",
          imports: %{"add" => {:fn, fn a, b -> a * b end}}
        )

      assert {:ok, 7} = Host.add_plus_one(pid, 2, 3)
    end

    test "child_spec/1 starts the server under a supervisor" do
      pid = start_supervised!({Types, path: @types})
      assert {:ok, 5} = Types.add(pid, 2, 3)
    end

    test "WIT that does not parse, and clashing names, are compile errors" do
      path = Path.join(System.tmp_dir!(), "bad#{System.unique_integer([:positive])}.wit")
      File.write!(path, "package a:b;\nworld w { export f: func( }")

      assert_raise CompileError, ~r/the WIT does not parse/, fn ->
        Code.compile_quoted(
          quote do
            defmodule BadWit do
              use Wasmex.Components.ComponentServer, wit: unquote(path)
            end
          end
        )
      end

      File.write!(path, """
      package a:b;
      interface i { f-g: func(); }
      world w { export i; export f_g: func(); }
      """)

      assert_raise CompileError, fn ->
        Code.compile_quoted(
          quote do
            defmodule ClashWit do
              use Wasmex.Components.ComponentServer, wit: unquote(path)
            end
          end
        )
      end
    end
  end
end
