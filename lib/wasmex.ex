defmodule Wasmex do
  @moduledoc """
  Runs WebAssembly and WASI programs with the API of Wasmex 0.9.1, executing every Wasm
  instruction in a separate OS process (`wasmex_port`, built on wasmtime), so nothing a
  Wasm program or the native runtime does can crash the BEAM.

  A `Wasmex` process is a GenServer holding one instance of a module. Start it with
  `start_link/1` from `.wasm` or `.wat` bytes:

      iex> bytes = File.read!(TestHelper.wasm_test_file_path())
      iex> {:ok, instance_pid} = Wasmex.start_link(%{bytes: bytes})
      iex> Wasmex.call_function(instance_pid, "sum", [50, -8])
      {:ok, [42]}

  Memory of a Wasm instance can be read and written using `Wasmex.Memory`:

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, store} = Wasmex.store(pid)
      iex> {:ok, memory} = Wasmex.memory(pid)
      iex> index = 4
      iex> Wasmex.Memory.set_byte(store, memory, index, 42)
      :ok
      iex> Wasmex.Memory.get_byte(store, memory, index)
      42

  See `start_link/1` for starting and configuring an instance and `call_function/4` for
  calling Wasm functions.
  """

  alias Wasmex.{Bounded, Instance, Links, Memory, Module, Store, StoreOrCaller}
  alias Wasmex.Wasi.WasiOptions

  @bounded """
  The instance server answers without asking the Wasm host, so this returns at once even
  when the host is busy or stopped. When the server is not running or does not answer
  within `request_timeout` (`config :wasmex, request_timeout: ms`, default 30,000; see
  `Wasmex.Host.Client`), the result is `{:error, reason}`.
  """

  @doc "Returns a specification to start this module under a supervisor. See `Supervisor`."
  @spec child_spec(map()) :: Supervisor.child_spec()
  def child_spec(opts), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}

  @doc ~S'''
  Starts a GenServer which compiles and instantiates a Wasm module from the given
  `.wasm` or `.wat` bytes, or instantiates an already compiled `Wasmex.Module`.

      iex> bytes = File.read!(TestHelper.wasm_test_file_path())
      iex> {:ok, _pid} = Wasmex.start_link(%{bytes: bytes})

  Alternatively, a precompiled `Wasmex.Module` can be passed with its `Wasmex.Store`:

      iex> {:ok, store} = Wasmex.Store.new()
      iex> {:ok, module} = Wasmex.Module.compile(store, "(module)")
      iex> {:ok, _pid} = Wasmex.start_link(%{store: store, module: module})

  A module without the store it was compiled with is refused:

      iex> {:ok, store} = Wasmex.Store.new()
      iex> {:ok, module} = Wasmex.Module.compile(store, "(module)")
      iex> Wasmex.start_link(%{module: module})
      {:error, :must_specify_store_used_to_compile_module}

  ## Options

    * `:bytes` - `.wasm` or `.wat` bytes to compile;
    * `:module` and `:store` - a compiled module and the store to instantiate it in;
    * `:imports` - `%{namespace => %{name => {:fn, params, results, fun}}}`;
    * `:links` - `%{name => %{bytes: ...} | %{module: ...}}`, each may have its own `:links`;
    * `:wasi` - `true` or a `Wasmex.Wasi.WasiOptions` to give the instance WASI;
    * `:instance` (with its `:store` and `:module`) - an instance made with
      `Wasmex.Instance.new/4` to serve as it is, state included. Without both, the result is
      `{:error, :must_specify_store_and_module_used_to_instantiate_instance}`. The server
      runs its import callbacks with `:imports` when the process calling `start_link/1`
      made the instance and registered no imports of its own;
    * `:name` - registers the server under that name (as `GenServer.start_link/3` does).

  ## Imports

      iex> wat = "(module
      ...>          (import \"IO\" \"inspect\" (func $log (param i32)))
      ...>        )"
      iex> io_inspect = fn (%{_memory: %Wasmex.Memory{}, _caller: %Wasmex.StoreOrCaller{}} = _context, i) ->
      ...>                IO.inspect(i)
      ...>              end
      iex> imports = %{
      ...>   IO: %{
      ...>     inspect: {:fn, [:i32], [], io_inspect},
      ...>   }
      ...> }
      iex> {:ok, _pid} = Wasmex.start_link(%{bytes: wat, imports: imports})

  Each import is `{:fn, param_types, result_types, fun}`; `fun` receives the call
  context `%{memory: %Wasmex.Memory{}, caller: %Wasmex.StoreOrCaller{}, instance:
  %Wasmex.Instance{}, pid: pid}` and then the params. Types are `:i32`, `:i64`, `:f32`,
  `:f64` and `:v128` (an unsigned 128-bit integer). `fun` returns the result (one result),
  a list (several) or anything (none). If it raises, the Wasm call fails with an error
  that carries the exception's message.

  Inside `fun`, use the `caller` wherever a store is expected: those requests are served
  by the Wasm frame waiting for the callback. Requests through the store itself wait until
  the running call ends; a `call_function/4` to an instance server of that store, which
  could only wait for the callback's own call, is refused at once. The caller is only valid until `fun` returns. Callbacks run outside
  the instance server, in a process that runs the instance's callbacks one after another
  (a callback nested in a running one gets a process of its own), so `fun` may call back
  into Wasm through the caller (`Wasmex.Instance.call_exported_function/6` with the
  caller), however deeply.

  ## Linking multiple Wasm modules

  `links` maps names to modules whose exports the module imports under that name:

      iex> calculator_wasm = File.read!(TestHelper.wasm_link_test_file_path())
      iex> utils_wasm = File.read!(TestHelper.wasm_test_file_path())
      iex> links = %{utils: %{bytes: utils_wasm}}
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: calculator_wasm, links: links})
      iex> Wasmex.call_function(pid, "sum_range", [1, 5])
      {:ok, [15]}

  An already compiled module can be linked too, which saves compiling it again. Use the
  same store for the linked modules and the main module:

      iex> calculator_wasm = File.read!(TestHelper.wasm_link_test_file_path())
      iex> utils_wasm = File.read!(TestHelper.wasm_test_file_path())
      iex> {:ok, store} = Wasmex.Store.new()
      iex> {:ok, utils_module} = Wasmex.Module.compile(store, utils_wasm)
      iex> links = %{utils: %{module: utils_module}}
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: calculator_wasm, links: links, store: store})
      iex> Wasmex.call_function(pid, "sum_range", [1, 5])
      {:ok, [15]}

  Dependencies of dependencies nest:

      iex> main_wasm = File.read!(TestHelper.wasm_link_dep_test_file_path())
      iex> calculator_wasm = File.read!(TestHelper.wasm_link_test_file_path())
      iex> utils_wasm = File.read!(TestHelper.wasm_test_file_path())
      iex> links = %{
      ...>   calculator: %{
      ...>     bytes: calculator_wasm,
      ...>     links: %{
      ...>       utils: %{bytes: utils_wasm}
      ...>     }
      ...>   }
      ...> }
      iex> {:ok, _pid} = Wasmex.start_link(%{bytes: main_wasm, links: links})

  ## WASI

  Modules can run with WebAssembly System Interface (WASI) support:

      iex> {:ok, _pid } = Wasmex.start_link(%{bytes: "(module)", wasi: true})

  WASI functions can be overridden with Elixir functions through the imports map:

      iex> imports = %{
      ...>   wasi_snapshot_preview1: %{
      ...>     random_get: {:fn, [:i32, :i32], [:i32],
      ...>                  fn %{memory: memory, caller: caller}, address, size ->
      ...>                    Enum.each(0..size, fn index ->
      ...>                      Wasmex.Memory.set_byte(caller, memory, address + index, 0)
      ...>                    end)
      ...>                    # We chose `4` as the random number with a fair dice roll
      ...>                    Wasmex.Memory.set_byte(caller, memory, address, 4)
      ...>                    0
      ...>                  end
      ...>                 }
      ...>   }
      ...> }
      iex> {:ok, _pid} = Wasmex.start_link(%{bytes: "(module)", imports: imports})

  Arguments, environment and directories come from `Wasmex.Wasi.WasiOptions`:

      iex> wasi_options = %Wasmex.Wasi.WasiOptions{
      ...>   args: ["hello", "from elixir"],
      ...>   env: %{
      ...>     "A_NAME_MAPS" => "to a value",
      ...>     "THE_TEST_WASI_FILE" => "prints all environment variables"
      ...>   },
      ...>   preopen: [%Wasmex.Wasi.PreopenOptions{path: "lib", alias: "src"}]
      ...> }
      iex> {:ok, _pid} = Wasmex.start_link(%{bytes: "(module)", wasi: wasi_options})

  Standard streams can be captured with pipes:

      iex> {:ok, stdin} = Wasmex.Pipe.new()
      iex> {:ok, stdout} = Wasmex.Pipe.new()
      iex> wasi_options = %Wasmex.Wasi.WasiOptions{
      ...>   args: ["wasmex", "echo"],
      ...>   stdin: stdin,
      ...>   stdout: stdout
      ...> }
      iex> {:ok, pid } = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasi_test_file_path()), wasi: wasi_options})
      iex> Wasmex.Pipe.write(stdin, "Hey! It compiles! Ship it!")
      iex> Wasmex.Pipe.seek(stdin, 0)
      iex> {:ok, _} = Wasmex.call_function(pid, :_start, [])
      iex> Wasmex.Pipe.seek(stdout, 0)
      iex> Wasmex.Pipe.read(stdout)
      "Hey! It compiles! Ship it!\n"
  '''
  @spec start_link(map()) :: GenServer.on_start() | {:error, term()}
  def start_link(%{} = opts) do
    opts = opts |> Map.put_new(:imports, %{}) |> Map.put_new(:links, %{})

    with :ok <- Instance.check_imports(opts.imports), do: start_checked(opts)
  end

  defp start_checked(opts) do
    case opts do
      %{instance: %Instance{}, store: _, module: _} -> start_server(opts)
      %{instance: _} -> {:error, :must_specify_store_and_module_used_to_instantiate_instance}
      %{module: _, store: _} -> start_with_store(opts)
      %{module: _} -> {:error, :must_specify_store_used_to_compile_module}
      %{bytes: _, store: _} -> start_with_store(opts)
      %{bytes: _} -> start_with_own_store(opts)
      _ -> {:error, "start_link needs :bytes, or :module with its :store"}
    end
  end

  defp start_with_own_store(opts) do
    with {:ok, store} <- build_store(opts) do
      try do
        start_with_store(Map.put(opts, :store, store))
      after
        # The server holds the store now, if it started; this process no longer needs
        # to, and a start that failed or raised (a bad :name) leaves no host behind.
        Store.release(store, self())
      end
    end
  end

  defp build_store(%{wasi: wasi}) when wasi not in [nil, false],
    do: with({:ok, options} <- WasiOptions.cast(wasi), do: Store.new_wasi(options))

  defp build_store(_), do: Store.new()

  defp start_with_store(%{store: store} = opts) do
    with {:ok, module} <- module_of(opts),
         {:ok, links} <- links_of(store, opts.links) do
      start_server(%{opts | links: links} |> Map.put(:module, module))
    end
  end

  defp links_of(_store, links) when links == %{}, do: {:ok, []}
  defp links_of(store, links), do: Links.compile(store, links, &module_of/1)

  defp start_server(opts) do
    args = Map.take(opts, [:store, :module, :links, :imports, :instance])
    Wasmex.Server.Start.start_link(args, opts[:name])
  end

  defp module_of(%{module: %Module{} = module}), do: {:ok, module}

  defp module_of(%{module: other}),
    do: {:error, ":module must be a Wasmex.Module, got: #{inspect(other, limit: 5)}"}

  defp module_of(%{bytes: bytes}) when not is_binary(bytes),
    do: {:error, ":bytes must be a binary (Wasm or WAT), got: #{inspect(bytes, limit: 5)}"}

  defp module_of(%{bytes: bytes, store: store}) do
    with {:ok, module} <- Module.compile(store, bytes), do: {:ok, %{module | sealed: true}}
  end

  @doc ~S'''
  Calls a function with the given name and params on the Wasm instance and returns its
  results.

      iex> wat = "(module
      ...>          (func $helloWorld (result i32) (i32.const 42))
      ...>          (export \"hello_world\" (func $helloWorld))
      ...>        )"
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      iex> Wasmex.call_function(pid, "hello_world", [])
      {:ok, [42]}

  ## Strings as function parameters

  Strings travel through memory: write the bytes and pass a pointer.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, store} = Wasmex.store(pid)
      iex> {:ok, memory} = Wasmex.memory(pid)
      iex> index = 42
      iex> string = "hello, world"
      iex> Wasmex.Memory.write_binary(store, memory, index, string)
      :ok
      iex> Wasmex.call_function(pid, "string_first_byte", [index, String.length(string)])
      {:ok, [104]}

  ## Strings as function return values

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, store} = Wasmex.store(pid)
      iex> {:ok, memory} = Wasmex.memory(pid)
      iex> {:ok, [pointer]} = Wasmex.call_function(pid, "string", [])
      iex> Wasmex.Memory.read_string(store, memory, pointer, 13)
      "Hello, World!"

  ## Timeouts

  The default timeout is 5000 ms. When it passes, the Wasm is stopped (not left running)
  and `{:error, reason}` says it timed out; the instance stays usable. It counts from when
  the call is made, as a `GenServer.call/3` timeout does: a call queued behind others on
  the same store gets what is left of it, and one still queued when it passes is answered
  then and never runs. Stopping the instance's server (`GenServer.stop/1`) stops a call
  running on it (`{:error, "stopped: the instance's server stopped"}`).

  Each call is a `[:wasmex, :call]` span of `:telemetry` events when `:telemetry` is
  present (see `Wasmex.Telemetry`).

      iex> wat = "(module
      ...>          (func $helloWorld (result i32) (i32.const 42))
      ...>          (export \"hello_world\" (func $helloWorld))
      ...>        )"
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      iex> Wasmex.call_function(pid, "hello_world", [], 10_000)
      {:ok, [42]}
  '''
  @spec call_function(GenServer.server(), String.t() | atom(), [number()], timeout()) ::
          {:ok, [number()]} | {:error, any()}
  def call_function(pid, name, params, timeout \\ 5_000) do
    name = stringify(name)

    # Without :telemetry, no span (nor its metadata) is built.
    if Wasmex.Telemetry.enabled?() do
      metadata = %{instance: pid, function: name, timeout: timeout}

      Wasmex.Telemetry.span([:call], metadata, fn ->
        Wasmex.Server.call_function(pid, name, params, timeout)
      end)
    else
      Wasmex.Server.call_function(pid, name, params, timeout)
    end
  end

  @doc ~S'''
  Returns whether a function export with the given name exists in the Wasm instance.

      iex> wat = "(module
      ...>          (func $helloWorld (result i32) (i32.const 42))
      ...>          (export \"hello_world\" (func $helloWorld))
      ...>        )"
      iex> {:ok, pid} = Wasmex.start_link(%{bytes: wat})
      iex> Wasmex.function_exists(pid, "hello_world")
      true
      iex> Wasmex.function_exists(pid, "something_else")
      false

  The answer comes from the instance server without asking the Wasm host. A result of
  `true` or `false` has no room for an error: when the server is not running or does not
  answer within `request_timeout` (see `Wasmex.Host.Client`), this exits as
  `GenServer.call/3` does (`{:noproc, _}`, `{:timeout, _}`).
  '''
  @spec function_exists(GenServer.server(), String.t() | atom()) :: boolean()
  def function_exists(pid, name),
    do: Bounded.call!(pid, {:exported_function_exists, stringify(name)})

  @doc """
  Returns the exported `Wasmex.Memory` of the given Wasm instance.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, %Wasmex.Memory{}} = Wasmex.memory(pid)

  #{@bounded}
  """
  @spec memory(GenServer.server()) :: {:ok, Memory.t()} | {:error, any()}
  def memory(pid), do: server_call(pid, :memory)

  @doc """
  Returns a typed view of the instance's memory (earlier Wasmex API): elements of `type`
  (`:uint8`, `:int8`, `:uint16`, `:int16`, `:uint32`, `:int32`) starting `offset`
  elements in. See the typed-view functions of `Wasmex.Memory`.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, memory} = Wasmex.memory(pid, :uint8, 7)
      iex> Wasmex.Memory.set(memory, 4, 42)
      42
      iex> Wasmex.Memory.get(memory, 4)
      42

  #{@bounded}
  """
  @spec memory(GenServer.server(), Memory.view_type(), non_neg_integer()) ::
          {:ok, Memory.t()} | {:error, any()}
  def memory(pid, type, offset), do: server_call(pid, {:memory, type, offset})

  @doc """
  Returns the `Wasmex.Store` of the Wasm instance.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, %Wasmex.StoreOrCaller{}} = Wasmex.store(pid)

  #{@bounded}
  """
  @spec store(GenServer.server()) :: {:ok, StoreOrCaller.t()} | {:error, any()}
  def store(pid), do: server_call(pid, :store)

  @doc """
  Returns the `Wasmex.Instance` the server runs.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, %Wasmex.Instance{}} = Wasmex.instance(pid)

  #{@bounded}
  """
  @spec instance(GenServer.server()) :: {:ok, Instance.t()} | {:error, any()}
  def instance(pid), do: server_call(pid, :instance)

  @doc """
  Returns the `Wasmex.Module` of the Wasm instance.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: File.read!(TestHelper.wasm_test_file_path())})
      iex> {:ok, %Wasmex.Module{}} = Wasmex.module(pid)

  #{@bounded}
  """
  @spec module(GenServer.server()) :: {:ok, Module.t()} | {:error, any()}
  def module(pid), do: server_call(pid, :module)

  # The instance server answers these without asking the Wasm host; a server that is gone
  # or does not answer gives {:error, reason} after request_timeout.
  defp server_call(pid, message) do
    with {:ok, answer} <- Bounded.call(pid, message), do: answer
  end

  defp stringify(name) when is_atom(name), do: Atom.to_string(name)
  defp stringify(name) when is_binary(name), do: name
  # A charlist: a string as Erlang writes it ("sum").
  defp stringify(name) when is_list(name), do: List.to_string(name)

  @doc false
  # Removes what an instance server registered; see `Wasmex.Server.forget/1`.
  @spec forget_server(pid()) :: [Wasmex.Wire.request()]
  defdelegate forget_server(server), to: Wasmex.Server, as: :forget
end
