defmodule Wasmex.DocTest do
  use ExUnit.Case, async: true

  doctest Wasmex
  doctest Wasmex.Engine
  doctest Wasmex.EngineConfig
  doctest Wasmex.Instance
  doctest Wasmex.Memory
  doctest Wasmex.Module
  doctest Wasmex.Store
  doctest Wasmex.StoreLimits
  doctest Wasmex.StoreOrCaller
  doctest Wasmex.Pipe
  doctest Wasmex.Wasi
  doctest Wasmex.Wasi.WasiOptions
  doctest Wasmex.Wasi.PreopenOptions
  doctest Wasmex.Pool
  doctest Wasmex.Stats
  doctest Wasmex.Wat
end
