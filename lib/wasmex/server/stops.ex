defmodule Wasmex.Server.Stops do
  @moduledoc false
  # What stops the calls on an instance once the server that made it ends: the
  # notification (`Wasmex.Wire.instance_stop/2` or `component_instance_stop/2`) each
  # instance server leaves here as it starts. The server sends it as it terminates; a
  # server that ends without running terminate/2 (killed, or shut down by its supervisor
  # while not trapping exits) leaves it for its host, which sends it on the server's
  # `:DOWN`. Kept in the `Wasmex.Routes` table under `{:stop, pid}`.

  alias Wasmex.Wire

  @doc "Leaves `stop` for when `server` ends."
  @spec put(pid(), Wire.request()) :: true
  def put(server, stop), do: :ets.insert(Wasmex.Routes, {{:stop, server}, stop})

  @doc "Takes what `server` left: none, or its stop notification."
  @spec take(pid()) :: [Wire.request()]
  def take(server) do
    for {_, stop} <- :ets.take(Wasmex.Routes, {:stop, server}), do: stop
  end
end
