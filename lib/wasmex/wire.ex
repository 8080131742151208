defmodule Wasmex.Wire do
  @moduledoc """
  The wire protocol between the BEAM and the `wasmex_port` program, the Elixir twin of
  `port/protocol.rs`. `docs/protocol.md` describes it in full.

  Frames are 4-byte big-endian length-prefixed; each holds one term in
  External Term Format.

    * BEAM -> port: `{id, op, args}` where `id` is a positive integer, `op` an atom and
      `args` a tuple. Each request gets exactly one `{:reply, id, result}`, except the
      notifications (`:callback_return`, `:store_drop`, `:module_drop`).
    * port -> BEAM: `{:hello, version, wasmtime}` once at start, `{:reply, id, {:ok, value} |
      {:error, reason}}`, `{:callback, store_id, callback_id, handler, namespace, name,
      params}` and `{:log, message}`.
  """

  import Bitwise

  @version 2

  # Every atom the port may send. `decode/1` uses `binary_to_term/2` with `:safe`, which
  # refuses atoms that do not exist yet; naming them here makes them exist.
  @port_atoms ~w(hello reply ok error callback log nil true false stdio stdin_read exit callback_abandoned fatal
                 pipe messages wasmex_stdout wasmex_stderr
                 fn global memory table tag type mutability const var minimum maximum
                 shared memory64 i32 i64 f32 f64 v128 extern_ref reference trap
                 nan infinity neg_infinity)a

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
  The request id whose answer nobody waits for: the host drops it. A callback's process
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
