defmodule TestHelper do
  @moduledoc "Paths of the Wasm fixtures in `test/fixtures` (sources and README there)."

  @fixtures Path.expand("fixtures", __DIR__)

  def fixture_path(name), do: Path.join(@fixtures, name)

  def wasm_test_file_path, do: fixture_path("wasmex_test.wasm")
  def wasm_import_test_file_path, do: fixture_path("wasmex_import_test.wasm")
  def wasm_link_test_file_path, do: fixture_path("wasmex_link_test.wasm")
  def wasm_link_dep_test_file_path, do: fixture_path("wasmex_link_dep_test.wasm")
  def wasi_test_file_path, do: fixture_path("wasi_test.wasm")

  @doc "`count` bytes of `byte`, made a MiB at a time (byte by byte, a GiB takes seconds)."
  def filled(byte, count) do
    mib = :binary.copy(<<byte>>, 1024 * 1024)
    tail = binary_part(mib, 0, rem(count, 1024 * 1024))
    IO.iodata_to_binary([List.duplicate(mib, div(count, 1024 * 1024)), tail])
  end

  @doc "A fresh store with the main fixture compiled in it."
  def wasm_module do
    {:ok, store} = Wasmex.Store.new()
    {:ok, module} = Wasmex.Module.compile(store, File.read!(wasm_test_file_path()))
    %{store: store, module: module}
  end

  @doc "An instance server of the main fixture, in a fresh store on a host of its own."
  def start_instance do
    %{store: store, module: module} = wasm_module()
    {:ok, pid} = Wasmex.start_link(%{store: store, module: module})
    {pid, store}
  end

  @doc """
  Returns once `host` has at least `n` requests in flight (a call is then running or
  queued in the port), polling its state.
  """
  def wait_until_pending(host, n \\ 1) do
    if Wasmex.Host.Pending.size(:sys.get_state(host).pending) < n,
      do: wait_until_pending(host, n),
      else: :ok
  end

  @doc """
  Returns once the OS process `os_pid` is gone (`tail --pid` waits for it, checking every
  50 ms); fails the test after `timeout` ms.
  """
  def await_os_exit(os_pid, timeout) do
    import ExUnit.Assertions

    watcher =
      Port.open({:spawn_executable, System.find_executable("tail")}, [
        :exit_status,
        args: ["--pid=#{os_pid}", "-s", "0.05", "-f", "/dev/null"]
      ])

    assert_receive {^watcher, {:exit_status, 0}}, timeout
  end

  def default_imported_functions_env do
    %{
      imported_sum3: {:fn, [:i32, :i32, :i32], [:i32], fn _context, a, b, c -> a + b + c end},
      imported_sumf: {:fn, [:f32, :f32], [:f32], fn _context, a, b -> a + b end},
      imported_void: {:fn, [], [], fn _context -> nil end}
    }
  end
end

# Starting a port process can take longer than the 100 ms default on a busy machine.
ExUnit.start(assert_receive_timeout: 2_000)
