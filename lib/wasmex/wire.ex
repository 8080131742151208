defmodule Wasmex.Wire do
  @moduledoc """
  The wire protocol between the BEAM and the `wasmex_port` program, the Elixir twin of
  `port/protocol.rs`. `docs/protocol.md` describes it in full.

  Frames are 4-byte big-endian length-prefixed; each holds one term in
  External Term Format.

    * BEAM -> port: `{id, op, args}` where `id` is a positive integer, `op` an atom and
      `args` a tuple. Each request gets exactly one `{:reply, id, result}`, except the
      notifications (`:callback_return`, `:store_open`, `:store_drop`, `:module_drop`,
      `:stdin_data` (also a request), `:stdin_eof`, `:cancel`, `:instance_stop`,
      `:component_instance_stop`, `:output_ack`). Each request has one constructor here,
      which gives its `{op, args}`:

          iex> Wasmex.Wire.call(3, 1, "sum", [1, 2], 5_000)
          {:call, {3, 1, "sum", [1, 2], 5_000}}
          iex> Wasmex.Wire.cancel(3, 17)
          {:cancel, {3, 17}}

    * port -> BEAM: `{:hello, version, wasmtime}` once at start, `{:reply, id, {:ok, value} |
      {:error, reason}}` (for a large memory read, after `{:reply_part, id, bytes}`
      frames), `{:callback, store_id, callback_id, handler, namespace, name, params}`,
      `{:callback_abandoned, store_id, callback_id, handler}`, `{:stdio, store_id,
      handler, bytes}`, `{:stdin_read, store_id, handler}`, `{:log, message}` and
      `{:fatal, message}` (`port/protocol.rs` lists them with their meaning).
  """

  import Bitwise

  @version 4

  # Every atom the port may send. `decode/1` uses `binary_to_term/2` with `:safe`, which
  # refuses atoms that do not exist yet; naming them here makes them exist.
  @port_atoms ~w(hello reply reply_part ok error callback log nil true false stdio stdin_read exit callback_abandoned fatal
                 pipe messages wasmex_stdout wasmex_stderr
                 fn global memory table tag type mutability const var minimum maximum
                 shared memory64 i32 i64 f32 f64 v128 extern_ref reference trap
                 nan infinity neg_infinity
                 wasmex_resource own borrow constructor method static async_method async_static
                 handle list option result tuple record variant foreign)a

  @doc false
  @spec port_atoms() :: [atom()]
  def port_atoms, do: @port_atoms

  @typedoc "What a request addresses: a store, or the caller of a running import callback."
  @type context :: non_neg_integer() | {:caller, non_neg_integer(), non_neg_integer()}

  @doc "The largest frame payload the port reads (`frame::MAX_FRAME` in the port): 1 GiB."
  @spec max_frame() :: pos_integer()
  def max_frame, do: 1 <<< 30

  @doc """
  The largest frame payload the BEAM reads from the port: 257 MiB, room for the largest
  frame the port sends (a 256 MiB part of a memory read, see `Wasmex.Memory`) with 1 MiB
  to spare. A port announcing a larger frame is stopped (see `Wasmex.Host.Frames`).
  """
  @spec max_incoming_frame() :: pos_integer()
  def max_incoming_frame, do: (256 <<< 20) + (1 <<< 20)

  @doc """
  The request id whose answer nobody waits for: the port sends none. A callback's process
  sends its writes into memory known to fit under it (`Wasmex.Callback.Writes`); request
  ids the host numbers stay far below it.
  """
  @spec unanswered_id() :: pos_integer()
  def unanswered_id, do: 1 <<< 62

  @doc "The protocol version this library speaks; the port must announce the same."
  @spec version() :: pos_integer()
  def version, do: @version

  # Binaries at least this large are not copied into the frame (see encode_request/3).
  @large_binary 65_536

  @doc """
  Encodes a request frame's payload, as iodata. When the last argument is a large binary
  (memory writes, module bytes), the frame is built around it instead of copying it: the
  rest is encoded with an empty binary in its place, whose 4-byte length ends the encoding.
  """
  @spec encode_request(non_neg_integer(), request()) :: iodata()
  def encode_request(id, {op, args}), do: encode_request(id, op, args)

  @doc false
  @spec encode_request(non_neg_integer(), atom(), tuple()) :: iodata()
  def encode_request(id, op, args) when is_atom(op) and is_tuple(args) do
    last = tuple_size(args) - 1

    case args do
      {} ->
        :erlang.term_to_binary({id, op, args})

      _ when is_binary(elem(args, last)) and byte_size(elem(args, last)) >= @large_binary ->
        data = elem(args, last)
        head = :erlang.term_to_binary({id, op, put_elem(args, last, <<>>)})
        [binary_part(head, 0, byte_size(head) - 4), <<byte_size(data)::32>>, data]

      _ ->
        :erlang.term_to_binary({id, op, args})
    end
  end

  # Requests: one constructor each, the only place their shapes are written on this side
  # (the port decodes them in port/request.rs and port/store/request.rs; docs/protocol.md has
  # the table).

  @typedoc "A request or notification to the port: its op and its arguments."
  @type request :: {atom(), tuple()}

  @typedoc "A module's source, as `Wasmex.Module` keeps it; `nil` when the port has it."
  @type source :: {:wasm, binary()} | {:precompiled, binary()} | nil

  @doc "Builds the engine (the first request, before any other)."
  @spec init(map()) :: request()
  def init(options) when is_map(options), do: {:init, {options}}

  @doc "Compiles a module and registers it under `key`."
  @spec module_compile(binary(), source()) :: request()
  def module_compile(key, source), do: {:module_compile, {key, source}}

  @doc "The serialized compiled code of the module `key`."
  @spec module_serialize(binary(), source()) :: request()
  def module_serialize(key, source), do: {:module_serialize, {key, source}}

  @doc "Compiles `bytes` and returns the serialized code, registering nothing."
  @spec precompile(binary()) :: request()
  def precompile(bytes), do: {:precompile, {bytes}}

  @doc """
  Runs the init export of `bytes` and returns the snapshot (`options`: `%{init:, args:,
  env:}`, see `Wasmex.Engine.preinitialize_module/3`).
  """
  @spec preinitialize(binary(), map()) :: request()
  def preinitialize(bytes, options), do: {:preinitialize, {bytes, options}}

  @doc "Compiles the component `key` from `source` (`nil` once the host has it)."
  @spec component_compile(binary(), {:component, binary()} | nil) :: request()
  def component_compile(key, source), do: {:component_compile, {key, source}}

  @doc "The exports of a WIT `world` (`nil`: the package's only world) of `wit` text."
  @spec wit_exports(binary(), binary() | nil) :: request()
  def wit_exports(wit, world), do: {:wit_exports, {wit, world}}

  @doc "The binary encoding of WebAssembly text."
  @spec wat_to_wasm(binary()) :: request()
  def wat_to_wasm(text), do: {:wat_to_wasm, {text}}

  @doc "A new store, with its limits and WASI options (`nil`: none)."
  @spec store_new(term(), term()) :: request()
  def store_new(limits, wasi), do: {:store_new, {limits, wasi}}

  @doc """
  Notification: a new store under `store_id`, an id the host server chose, with its
  limits and WASI options. Nothing answers it: if the store cannot be made, its requests
  are refused with the reason until it is dropped (`store_ready/1` asks).
  """
  @spec store_open(pos_integer(), term(), term()) :: request()
  def store_open(store_id, limits, wasi), do: {:store_open, {store_id, limits, wasi}}

  @doc "`:ok` once the store is made; its reason if it could not be."
  @spec store_ready(pos_integer()) :: request()
  def store_ready(store_id), do: {:store_ready, {store_id}}

  @doc """
  Instantiates the module `key` in a store: `handler` is the encoded pid that gets its
  import callbacks, `imports` `{namespace, name, params, results}` tuples, `links`
  `{name, key, source}` tuples in dependency order.
  """
  @spec instantiate(context(), binary(), source(), binary(), list(), list(), timeout()) ::
          request()
  def instantiate(ctx, key, source, handler, imports, links, timeout),
    do: {:instantiate, {ctx, key, source, handler, imports, links, timeout}}

  @doc "Calls the exported function `name` of an instance."
  @spec call(context(), non_neg_integer(), binary(), list(), timeout()) :: request()
  def call(ctx, instance_id, name, params, timeout),
    do: {:call, {ctx, instance_id, name, params, timeout}}

  @doc "The size in bytes of an instance's memory."
  @spec memory_size(context(), non_neg_integer(), binary() | nil) :: request()
  def memory_size(ctx, instance_id, memory), do: {:memory_size, {ctx, instance_id, memory}}

  @doc "Grows an instance's memory by `pages`."
  @spec memory_grow(context(), non_neg_integer(), binary() | nil, non_neg_integer()) ::
          request()
  def memory_grow(ctx, instance_id, memory, pages),
    do: {:memory_grow, {ctx, instance_id, memory, pages}}

  @doc "Reads `length` bytes at `offset` of an instance's memory."
  @spec memory_read(
          context(),
          non_neg_integer(),
          binary() | nil,
          non_neg_integer(),
          non_neg_integer()
        ) ::
          request()
  def memory_read(ctx, instance_id, memory, offset, length),
    do: {:memory_read, {ctx, instance_id, memory, offset, length}}

  @doc "Writes `binary` at `offset` of an instance's memory."
  @spec memory_write(context(), non_neg_integer(), binary() | nil, non_neg_integer(), binary()) ::
          request()
  def memory_write(ctx, instance_id, memory, offset, binary),
    do: {:memory_write, {ctx, instance_id, memory, offset, binary}}

  @doc "Copies `length` bytes of the host's shared buffer to `offset` of an instance's memory."
  @spec memory_write_bulk(
          context(),
          non_neg_integer(),
          binary() | nil,
          non_neg_integer(),
          non_neg_integer()
        ) ::
          request()
  def memory_write_bulk(ctx, instance_id, memory, offset, length),
    do: {:memory_write_bulk, {ctx, instance_id, memory, offset, length}}

  @doc "Copies `length` bytes at `offset` of an instance's memory to the host's shared buffer."
  @spec memory_read_bulk(
          context(),
          non_neg_integer(),
          binary() | nil,
          non_neg_integer(),
          non_neg_integer()
        ) ::
          request()
  def memory_read_bulk(ctx, instance_id, memory, offset, length),
    do: {:memory_read_bulk, {ctx, instance_id, memory, offset, length}}

  @doc """
  Appends `part` to the store's staged memory write `write` (an id the caller chose), to
  be written in one step by `memory_write_staged/5`.
  """
  @spec memory_stage(context(), pos_integer(), binary()) :: request()
  def memory_stage(ctx, write, part), do: {:memory_stage, {ctx, write, part}}

  @doc "The same with the first `length` bytes of the host's shared buffer."
  @spec memory_stage_bulk(context(), pos_integer(), non_neg_integer()) :: request()
  def memory_stage_bulk(ctx, write, length), do: {:memory_stage_bulk, {ctx, write, length}}

  @doc "Writes what is staged for `write` at `offset` of an instance's memory, in one step."
  @spec memory_write_staged(
          context(),
          non_neg_integer(),
          binary() | nil,
          non_neg_integer(),
          pos_integer()
        ) :: request()
  def memory_write_staged(ctx, instance_id, memory, offset, write),
    do: {:memory_write_staged, {ctx, instance_id, memory, offset, write}}

  @doc "Reads an exported global."
  @spec global_get(context(), non_neg_integer(), binary()) :: request()
  def global_get(ctx, instance_id, name), do: {:global_get, {ctx, instance_id, name}}

  @doc "Writes a mutable exported global."
  @spec global_set(context(), non_neg_integer(), binary(), number()) :: request()
  def global_set(ctx, instance_id, name, value),
    do: {:global_set, {ctx, instance_id, name, value}}

  @doc "The fuel left in a store."
  @spec fuel_get(context()) :: request()
  def fuel_get(ctx), do: {:fuel_get, {ctx}}

  @doc "Instantiates the component `key` in a store; `imports` as `Wasmex.Components` sends them."
  @spec component_instantiate(context(), binary(), term(), binary(), list(), timeout()) ::
          request()
  def component_instantiate(ctx, key, source, handler, imports, timeout),
    do: {:component_instantiate, {ctx, key, source, handler, imports, timeout}}

  @doc "Calls the function at `path` of a component instance."
  @spec component_call(context(), non_neg_integer(), [String.t()], list(), timeout()) ::
          request()
  def component_call(ctx, instance_id, path, params, timeout),
    do: {:component_call, {ctx, instance_id, path, params, timeout}}

  @doc "Drops the guest resource handle `handle_id` of a component instance."
  @spec component_resource_drop(context(), non_neg_integer(), non_neg_integer(), timeout()) ::
          request()
  def component_resource_drop(ctx, instance_id, handle_id, timeout),
    do: {:component_resource_drop, {ctx, instance_id, handle_id, timeout}}

  @doc """
  What a WIT resource offers: `source` is `{:text, wit}` or `{:path, file_or_dir}`,
  `direction` `:export` (a guest resource) or `:import` (a host resource).
  """
  @spec wit_resource(
          {:text | :path, String.t()},
          String.t() | nil,
          String.t(),
          String.t() | nil,
          :export | :import
        ) :: request()
  def wit_resource(source, world, resource, interface, direction),
    do: {:wit_resource, {source, world, resource, interface, direction}}

  @doc "Sets the fuel of a store."
  @spec fuel_set(context(), non_neg_integer()) :: request()
  def fuel_set(ctx, fuel), do: {:fuel_set, {ctx, fuel}}

  @doc "Notification: drop a store."
  @spec store_drop(non_neg_integer()) :: request()
  def store_drop(store_id), do: {:store_drop, {store_id}}

  @doc "Notification: forget the module `key`."
  @spec module_drop(binary()) :: request()
  def module_drop(key), do: {:module_drop, {key}}

  @doc "Notification: the answer to an import callback."
  @spec callback_return(non_neg_integer(), non_neg_integer(), {:ok, list()} | {:error, term()}) ::
          request()
  def callback_return(store_id, callback_id, result),
    do: {:callback_return, {store_id, callback_id, result}}

  @doc "Notification: input for a WASI program reading its stdin pipe (empty: its end)."
  @spec stdin_data(non_neg_integer(), binary()) :: request()
  def stdin_data(store_id, bytes), do: {:stdin_data, {store_id, bytes}}

  @doc "Notification: the end of a WASI program's stdin."
  @spec stdin_eof(non_neg_integer()) :: request()
  def stdin_eof(store_id), do: {:stdin_eof, {store_id}}

  @doc """
  Notification: the receiver of a store's WASI output stream `handler` consumed `bytes`
  (`room`: a pipe's room left, `:closed` for a receiver gone, `nil` for messages).
  """
  @spec output_ack(non_neg_integer(), binary(), non_neg_integer(), term()) :: request()
  def output_ack(store_id, handler, bytes, room),
    do: {:output_ack, {store_id, handler, bytes, room}}

  @doc """
  Notification: the server of instance `instance_id` of a store stopped; a call running on
  the instance stops, and later ones are refused.
  """
  @spec instance_stop(non_neg_integer(), non_neg_integer()) :: request()
  def instance_stop(store_id, instance_id), do: {:instance_stop, {store_id, instance_id}}

  @doc """
  Notification: the server of component instance `instance_id` of a store stopped; a call
  running on the instance stops, and later ones are refused.
  """
  @spec component_instance_stop(non_neg_integer(), non_neg_integer()) :: request()
  def component_instance_stop(store_id, instance_id),
    do: {:component_instance_stop, {store_id, instance_id}}

  @doc "Notification: stop request `request_id` in a store (`nil`: a compilation of the host)."
  @spec cancel(non_neg_integer() | nil, pos_integer()) :: request()
  def cancel(store_id, request_id), do: {:cancel, {store_id, request_id}}

  @doc """
  Decodes a frame from the port. The `:safe` option keeps a misbehaving port from
  creating atoms.
  """
  @spec decode(binary()) :: {:ok, term()} | {:error, String.t()}
  def decode(payload) do
    {:ok, :erlang.binary_to_term(payload, [:safe])}
  rescue
    ArgumentError -> {:error, "undecodable frame from the port (#{byte_size(payload)} bytes)"}
  end
end
