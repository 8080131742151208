defmodule Wasmex.Pipe do
  @moduledoc """
  A byte buffer with a cursor, to connect a WASI program's standard streams.

  A pipe is a process of its own, independent of any store: create it first and pass it
  in `Wasmex.Wasi.WasiOptions`. A program's output is written to the pipe while the
  program runs (at the cursor, which advances); a program's input is read from the cursor
  to the end whenever the program asks for more, and an empty read is the end of input.
  One pipe can serve several programs. A pipe lives as long as the process that created it,
  or until `close/1`: a long-lived process that makes a pipe per program closes each once
  it has read it.

  ## Capacity

  A program writes at most `capacity` bytes into a pipe (`new/1`, default
  #{4 * 1024 * 1024}, 4 MiB): nothing it writes goes past that offset. A program writing
  past it keeps what fits and its write fails with `ENOSPC` ("no space left on device").
  The host's own `write/2` (a program's input, say) is kept whole, as in Wasmex: the
  capacity bounds what a guest can make the BEAM hold. Reading does not free room (the
  bytes stay, as in Wasmex, for `seek/2` to read again); what is written goes at the
  cursor, so a program's room is `capacity` minus the cursor: `seek/2` back, or
  `set_len/2` to truncate, makes room.
  While a program writes to a pipe, the port asks it before failing a write, so room
  made meanwhile counts. Several programs writing to one pipe at once each see the room
  as of the pipe's last answer to them: one may lose the part of a write that another
  filled first without an error, and its next write fails.

      iex> {:ok, pipe} = Wasmex.Pipe.new(capacity: 4)
      iex> Wasmex.Pipe.write(pipe, "hello")
      {:ok, 5}
      iex> Wasmex.Pipe.size(pipe)
      5

  A pipe answers without asking any Wasm host. When its process is gone or does not answer
  within `request_timeout` (see `Wasmex.Host.Client`), `write/2` and `set_len/2` return
  `:error`, and `size/1`, `read/1` and `seek/2`, whose results have no error case, exit as
  `GenServer.call/3` does (`{:noproc, _}`, `{:timeout, _}`).

      iex> {:ok, pipe} = Wasmex.Pipe.new()
      iex> Wasmex.Pipe.write(pipe, "hello")
      {:ok, 5}
      iex> Wasmex.Pipe.size(pipe)
      5
      iex> Wasmex.Pipe.read(pipe)
      ""
      iex> Wasmex.Pipe.seek(pipe, 1)
      :ok
      iex> Wasmex.Pipe.read(pipe)
      "ello"
  """
  use GenServer, restart: :temporary

  alias Wasmex.Bounded

  @enforce_keys [:pid]
  # `resource` (the pipe's process) and `reference` (made with the handle) are the fields
  # of Wasmex's struct; `pid` is internal.
  defstruct [:resource, :reference, :pid]

  @type t :: %__MODULE__{resource: pid(), reference: reference(), pid: pid()}

  @default_capacity 4 * 1024 * 1024

  # The most input a program is sent at once: the host's writes are not bounded by the
  # capacity, and one message to the port must stay well below a frame's limit.
  @read_chunk 1024 * 1024

  # What the port counts a pipe's room in (64 bits).
  @max_capacity 0xFFFF_FFFF_FFFF_FFFF

  @doc "The capacity of a pipe made without one: #{@default_capacity} bytes (4 MiB)."
  @spec default_capacity() :: pos_integer()
  def default_capacity, do: @default_capacity

  @doc """
  Creates an empty pipe owned by the calling process. Options: `capacity:` the most
  bytes the pipe holds, a positive integer (default `default_capacity/0`).

      iex> {:ok, pipe} = Wasmex.Pipe.new(capacity: 1024)
      iex> Wasmex.Pipe.capacity(pipe)
      1024
      iex> Wasmex.Pipe.new(capacity: 0)
      {:error, "pipe capacity must be a positive integer (bytes), got: 0"}
      iex> Wasmex.Pipe.new(size: 10)
      {:error, "unknown pipe option :size (known: :capacity)"}
  """
  @spec new(keyword()) :: {:ok, t()} | {:error, term()}
  def new(opts \\ []) do
    with {:ok, capacity} <- capacity_option(opts),
         {:ok, pid} <-
           DynamicSupervisor.start_child(Wasmex.HostSupervisor, {__MODULE__, {self(), capacity}}) do
      {:ok, %__MODULE__{resource: pid, reference: make_ref(), pid: pid}}
    end
  end

  defp capacity_option(opts) when is_list(opts) do
    case Keyword.split(opts, [:capacity]) do
      {known, []} ->
        case Keyword.get(known, :capacity, @default_capacity) do
          n when is_integer(n) and n > @max_capacity ->
            {:error, "pipe capacity must be at most #{@max_capacity} bytes, got: #{n}"}

          n when is_integer(n) and n > 0 ->
            {:ok, n}

          other ->
            {:error, "pipe capacity must be a positive integer (bytes), got: #{inspect(other)}"}
        end

      {_, [{key, _} | _]} ->
        {:error, "unknown pipe option #{inspect(key)} (known: :capacity)"}
    end
  end

  defp capacity_option(other),
    do: {:error, "pipe options must be a keyword list, got: #{inspect(other)}"}

  @doc "The offset a program's writes into the pipe stop at."
  @spec capacity(t()) :: pos_integer()
  def capacity(%__MODULE__{pid: pid}), do: Bounded.call!(pid, :capacity)

  @doc false
  # The bytes a program may still write at the cursor, or {:error, reason}.
  @spec room(t()) :: {:ok, non_neg_integer()} | {:error, String.t()}
  def room(%__MODULE__{pid: pid}), do: Bounded.call(pid, :room)

  @doc "Same as `new/0` (the name used by earlier Wasmex releases)."
  @spec create() :: {:ok, t()} | {:error, term()}
  def create, do: new()

  @doc false
  def start_link(owner_and_capacity), do: GenServer.start_link(__MODULE__, owner_and_capacity)

  @doc "The number of bytes in the pipe (the cursor does not change it)."
  @spec size(t()) :: non_neg_integer()
  def size(%__MODULE__{pid: pid}), do: Bounded.call!(pid, :size)

  @doc "Moves the cursor to byte `position` (clamped to the size)."
  @spec seek(t(), non_neg_integer()) :: :ok
  def seek(%__MODULE__{pid: pid}, position) when is_integer(position) and position >= 0,
    do: Bounded.call!(pid, {:seek, position})

  @doc "Reads from the cursor to the end and moves the cursor to the end."
  @spec read(t()) :: binary()
  def read(%__MODULE__{pid: pid}), do: Bounded.call!(pid, :read)

  @doc """
  Writes at the cursor, overwriting and extending, and moves the cursor past it; returns
  `{:ok, bytes_written}`, all of them: the capacity bounds a program's writes only.
  """
  @spec write(t(), binary()) :: {:ok, non_neg_integer()} | :error
  def write(%__MODULE__{pid: pid}, binary) when is_binary(binary),
    do: or_error(Bounded.call(pid, {:write, binary}))

  @doc """
  Truncates or extends (with zero bytes) the pipe to `length` bytes; `:error` past its
  capacity.

      iex> {:ok, pipe} = Wasmex.Pipe.create()
      iex> {:ok, 5} = Wasmex.Pipe.write(pipe, "hello")
      iex> Wasmex.Pipe.set_len(pipe, 2)
      :ok
      iex> Wasmex.Pipe.seek(pipe, 0)
      :ok
      iex> Wasmex.Pipe.read(pipe)
      "he"
  """
  @spec set_len(t(), non_neg_integer()) :: :ok | :error
  def set_len(%__MODULE__{pid: pid}, length) when is_integer(length) and length >= 0,
    do: or_error(Bounded.call(pid, {:set_len, length}))

  def set_len(%__MODULE__{}, _length), do: :error

  @doc """
  Ends the pipe and frees what it holds. Later calls on it fail as on a pipe whose
  process is gone; output a program writes to it afterwards is dropped (its writes fail
  with `EPIPE` once the port has learnt that the pipe is gone). Closing a pipe that is
  already closed is `:ok`.

      iex> {:ok, pipe} = Wasmex.Pipe.new()
      iex> Wasmex.Pipe.close(pipe)
      :ok
      iex> Wasmex.Pipe.write(pipe, "late")
      :error
  """
  @spec close(t()) :: :ok
  def close(%__MODULE__{pid: pid}) do
    GenServer.stop(pid, :normal, Wasmex.Host.Client.request_timeout())
  catch
    # Gone already, or ended while being stopped.
    :exit, _reason -> :ok
  end

  defp or_error({:ok, answer}), do: answer
  defp or_error({:error, _reason}), do: :error

  # Server

  @impl true
  def init({owner, capacity}) do
    Process.monitor(owner)
    {:ok, %{buffer: <<>>, cursor: 0, capacity: capacity}}
  end

  @impl true
  def handle_call(:size, _from, s), do: {:reply, byte_size(s.buffer), s}
  def handle_call(:capacity, _from, s), do: {:reply, s.capacity, s}
  def handle_call(:room, _from, s), do: {:reply, room_left(s), s}

  def handle_call({:seek, position}, _from, s),
    do: {:reply, :ok, %{s | cursor: min(position, byte_size(s.buffer))}}

  def handle_call(:read, _from, s), do: {:reply, take(s), %{s | cursor: byte_size(s.buffer)}}

  def handle_call({:write, data}, _from, s),
    do: {:reply, {:ok, byte_size(data)}, place(s, data)}

  def handle_call({:set_len, length}, _from, s) when length > s.capacity,
    do: {:reply, :error, s}

  def handle_call({:set_len, length}, _from, s) do
    size = byte_size(s.buffer)

    buffer =
      if length <= size,
        do: binary_part(s.buffer, 0, length),
        else: s.buffer <> :binary.copy(<<0>>, length - size)

    {:reply, :ok, %{s | buffer: buffer, cursor: min(s.cursor, length)}}
  end

  @impl true
  # Output of a WASI program (empty: the port asks for the room): acknowledged to the
  # port with the room left (see Wasmex.Wasi.Output).
  def handle_info({:wasmex_pipe_output, port, store_id, data}, s) do
    {_kept, s} = put(s, data)
    Wasmex.Wasi.Output.ack_pipe(port, store_id, self(), byte_size(data), room_left(s))
    {:noreply, s}
  end

  # A WASI program wants input: what follows the cursor, at most @read_chunk bytes of it
  # (the program asks again for more; empty means end of input).
  def handle_info({:wasmex_pipe_read, host, store_id}, s) do
    chunk = take(s, @read_chunk)
    Wasmex.Host.notify(host, Wasmex.Wire.stdin_data(store_id, chunk))
    {:noreply, %{s | cursor: s.cursor + byte_size(chunk)}}
  end

  def handle_info({:DOWN, _ref, :process, _owner, _reason}, s), do: {:stop, :normal, s}
  def handle_info(_other, s), do: {:noreply, s}

  # What follows the cursor, at most `max` bytes of it.
  defp take(%{buffer: buffer, cursor: cursor}, max \\ :all) do
    left = byte_size(buffer) - cursor
    binary_part(buffer, cursor, if(max == :all, do: left, else: min(left, max)))
  end

  defp room_left(%{capacity: capacity, cursor: cursor}), do: max(capacity - cursor, 0)

  # Writes what fits at the cursor: {bytes kept, state}.
  defp put(s, data) do
    kept = min(byte_size(data), room_left(s))
    {kept, place(s, binary_part(data, 0, kept))}
  end

  # Appending at the end is the common case (streamed output) and stays linear.
  defp place(%{buffer: buffer, cursor: cursor} = s, data) when cursor == byte_size(buffer),
    do: %{s | buffer: buffer <> data, cursor: cursor + byte_size(data)}

  defp place(%{buffer: buffer, cursor: cursor} = s, data) do
    tail_start = min(cursor + byte_size(data), byte_size(buffer))
    tail = binary_part(buffer, tail_start, byte_size(buffer) - tail_start)

    %{
      s
      | buffer: binary_part(buffer, 0, cursor) <> data <> tail,
        cursor: cursor + byte_size(data)
    }
  end

  defimpl Inspect do
    def inspect(p, _opts), do: "#Wasmex.Pipe<#{inspect(p.pid)}>"
  end
end
