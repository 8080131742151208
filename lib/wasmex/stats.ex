defmodule Wasmex.Stats do
  @moduledoc """
  Counters of what this node's Wasm hosts did since the application started.

      iex> {:ok, pid} = Wasmex.start_link(%{bytes: "(module (func (export \\"f\\")))"})
      iex> before = Wasmex.Stats.get()
      iex> {:ok, []} = Wasmex.call_function(pid, "f", [])
      iex> Wasmex.Stats.get().calls - before.calls >= 1
      true

  | counter | counts |
  | --- | --- |
  | `calls` | Wasm function calls sent to a host |
  | `component_calls` | component function calls (`Wasmex.Components.call_function/4`, `Wasmex.Components.Instance.call/4`) |
  | `callbacks` | import callbacks the hosts asked for |
  | `traps` | calls (core or component) that failed with a trap or a failing callback |
  | `timeouts` | calls (core or component) stopped at their timeout |
  | `cancels` | calls cancelled because their caller went away |
  | `hosts_started` | port processes started |
  | `host_exits` | port processes that ended unexpectedly (crash, kill, cap) |
  | `bytes_sent` / `bytes_received` | bytes of frames written to / read from ports |
  | `request_batches` | writes that carried several requests at once (a busy host's; see `Wasmex.Host.Outgoing`) |

  Log lines of a host carry the `:logger` metadata `wasmex_host` (the port's OS pid).
  The counters are cheap (`:counters`, one atomic add each) and node-wide.
  """

  @names [
    :calls,
    :component_calls,
    :callbacks,
    :traps,
    :timeouts,
    :cancels,
    :hosts_started,
    :host_exits,
    :bytes_sent,
    :bytes_received,
    :request_batches
  ]
  @index @names |> Enum.with_index(1) |> Map.new()

  @type t :: %{atom() => non_neg_integer()}

  @doc false
  def setup,
    do: :persistent_term.put(__MODULE__, :counters.new(length(@names), [:write_concurrency]))

  @doc "All counters."
  @spec get() :: t()
  def get do
    counters = :persistent_term.get(__MODULE__)
    Map.new(@names, &{&1, :counters.get(counters, @index[&1])})
  end

  @doc false
  @spec add(atom(), integer()) :: :ok
  def add(name, n \\ 1), do: :counters.add(:persistent_term.get(__MODULE__), index(name), n)

  # A counter's index, one clause per name (cheaper than a map lookup on every add).
  for {name, i} <- @index, do: defp(index(unquote(name)), do: unquote(i))
end
