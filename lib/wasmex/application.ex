defmodule Wasmex.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    # Which modules of other nodes were instantiated here (a module's own atomics, which
    # hold its name and this mark, stay on its node): a row per such module, kept.
    :ets.new(Wasmex.Module, [:named_table, :public, :set, read_concurrency: true])
    Wasmex.Stats.setup()
    Wasmex.Callback.setup()
    Wasmex.Host.Bulk.setup()
    # Where each local instance server's calls can go directly (see Wasmex.call_function/4).
    # Three row shapes: `{pid, host, context, instance_id}` (a core instance server's route,
    # Wasmex.Server.Start), `{{Wasmex.Components, pid}, host, context, instance_id}` (a
    # component server's, Wasmex.Components) and `{{:stop, pid}, request}` (what stops a
    # server's running call when it ends, Wasmex.Server.Stops).
    :ets.new(Wasmex.Routes, [
      :named_table,
      :public,
      :set,
      read_concurrency: true,
      write_concurrency: true
    ])

    children = [
      {DynamicSupervisor, name: Wasmex.HostSupervisor, strategy: :one_for_one},
      # Default hosts started ahead of need (Wasmex.Host.Spare).
      {Wasmex.Host.Spare, Application.get_env(:wasmex, :spare_hosts, 1)},
      # The Elixir terms behind host resource handles (Wasmex.Components.HostResource).
      Wasmex.Components.HostResource.Table,
      # Membership of Wasmex.Pool instances, across nodes.
      %{id: :pg, start: {:pg, :start_link, [Wasmex.Pool]}}
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Wasmex.Supervisor)
  end
end
