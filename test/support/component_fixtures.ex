defmodule Wasmex.Test.ComponentFixtures do
  @moduledoc false
  # What the tests of Wasmex.Components share: a supervised server, and imports for the
  # imports fixture (test/fixtures/components/imports.wasm) that report to the test process.

  import ExUnit.Callbacks, only: [start_supervised!: 1]

  alias Wasmex.Components

  @kv "wasmex:host/kv@0.1.0"

  @doc "A component server under the test's supervisor."
  def start(opts),
    do: start_supervised!(Supervisor.child_spec({Components, opts}, id: make_ref()))

  # An import that tells the test process it runs (with its process), then never returns.
  def blocking_import do
    test = self()

    {:fn,
     fn _ ->
       send(test, {:in_import, self()})
       Process.sleep(:infinity)
     end}
  end

  # Imports for the imports fixture that report to the test process.
  def imports(overrides \\ %{}) do
    test = self()

    Map.merge(
      %{
        "log" => {:fn, fn message -> send(test, {:logged, message, self()}) end},
        "add" => {:fn, fn a, b -> a + b end},
        @kv => %{
          "get" => {:fn, fn key -> {:some, "value of " <> key} end},
          "set" => {:fn, fn key, value -> send(test, {:set, key, value}) end}
        }
      },
      overrides
    )
  end
end
