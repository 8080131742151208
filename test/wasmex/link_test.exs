defmodule Wasmex.LinkTest do
  use ExUnit.Case, async: true

  @utils File.read!(TestHelper.wasm_test_file_path())
  @calculator File.read!(TestHelper.wasm_link_test_file_path())
  @main File.read!(TestHelper.wasm_link_dep_test_file_path())

  describe "links" do
    test "link a module by bytes" do
      {:ok, pid} = Wasmex.start_link(%{bytes: @calculator, links: %{utils: %{bytes: @utils}}})
      assert Wasmex.call_function(pid, "sum_range", [1, 5]) == {:ok, [15]}
    end

    test "link a compiled module, reused across instances" do
      {:ok, store} = Wasmex.Store.new()
      {:ok, utils} = Wasmex.Module.compile(store, @utils)

      for _ <- 1..2 do
        {:ok, pid} =
          Wasmex.start_link(%{bytes: @calculator, links: %{utils: %{module: utils}}, store: store})

        assert Wasmex.call_function(pid, "sum_range", [1, 5]) == {:ok, [15]}
      end
    end

    test "nested links resolve dependencies of dependencies" do
      links = %{calculator: %{bytes: @calculator, links: %{utils: %{bytes: @utils}}}}
      {:ok, pid} = Wasmex.start_link(%{bytes: @main, links: links})
      assert Wasmex.call_function(pid, "calc_seq", [1, 5]) == {:ok, [15]}
    end

    test "flat links are instantiated in dependency order, whatever their names" do
      links = %{a_calculator: %{bytes: @calculator}, utils: %{bytes: @utils}}

      main =
        String.replace(
          File.read!(TestHelper.fixture_path("wasmex_link_dep_test.wat")),
          ~s{"calculator"},
          ~s{"a_calculator"}
        )

      {:ok, pid} = Wasmex.start_link(%{bytes: main, links: links})
      assert Wasmex.call_function(pid, "calc_seq", [1, 5]) == {:ok, [15]}
    end

    test "a missing link names the missing import" do
      assert {:error, message} = Wasmex.start_link(%{bytes: @calculator})
      assert message =~ "utils::sum"
    end

    test "a link that does not compile is reported with its name" do
      assert {:error, "link utils: Error while parsing bytes" <> _} =
               Wasmex.start_link(%{bytes: @calculator, links: %{utils: %{bytes: "(nope"}}})
    end
  end
end
