# Runs a Wasm module out of process, end to end: `mix run examples/quickstart.exs`
wat = """
(module
  (memory (export "memory") 1)
  (func (export "sum") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add)
  (func (export "spin") (loop br 0)))
"""

{:ok, pid} = Wasmex.start_link(%{bytes: wat})
{:ok, [sum]} = Wasmex.call_function(pid, "sum", [50, -8])
IO.puts("sum(50, -8) = #{sum}")

{:ok, store} = Wasmex.store(pid)
{:ok, memory} = Wasmex.memory(pid)
:ok = Wasmex.Memory.write_binary(store, memory, 0, "hello from the BEAM")
IO.puts("memory says: " <> Wasmex.Memory.read_string(store, memory, 0, 19))

{time, {:error, reason}} = :timer.tc(fn -> Wasmex.call_function(pid, "spin", [], 200) end)
IO.puts("an endless loop with a 200 ms timeout: #{reason} (after #{div(time, 1000)} ms)")
{:ok, [again]} = Wasmex.call_function(pid, "sum", [1, 2])
IO.puts("the same instance afterwards: sum(1, 2) = #{again}")
os_pid = Wasmex.Host.os_pid(store.host)
IO.puts("all of it ran in OS process #{os_pid}, not in the BEAM (#{System.pid()})")
