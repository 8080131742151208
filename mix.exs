defmodule Mix.Tasks.Compile.WasmexPort do
  @shortdoc "Builds the wasmex_port executable with cargo when its sources changed"
  @moduledoc """
  Builds `priv/wasmex_port` from the Rust sources in `port/` with `cargo build --release`,
  only when a source, `Cargo.toml` or `Cargo.lock` is newer than the installed binary.
  """
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    root = Path.dirname(__ENV__.file)
    target = Path.join(root, "priv/wasmex_port")

    sources =
      Path.wildcard(Path.join(root, "port/**/*.rs")) ++
        Enum.map(~w(Cargo.toml Cargo.lock), &Path.join(root, &1))

    if Mix.Utils.stale?(sources, [target]) do
      build(root, target)
    else
      {:noop, []}
    end
  end

  defp build(root, target) do
    Mix.shell().info("Building wasmex_port with cargo (release)")
    args = ["build", "--release", "--quiet"]

    case System.cmd("cargo", args,
           cd: root,
           stderr_to_stdout: true,
           into: IO.stream(:stdio, :line)
         ) do
      {_, 0} ->
        # Copy, then rename over the old binary: replacing it in place fails while a port
        # process still runs it.
        File.mkdir_p!(Path.dirname(target))
        staging = target <> ".new"
        File.cp!(Path.join(root, "target/release/wasmex_port"), staging)
        File.chmod!(staging, 0o755)
        File.rename!(staging, target)
        {:ok, []}

      {_, status} ->
        Mix.raise("cargo build failed with status #{status}")
    end
  end
end

defmodule Wasmex.MixProject do
  use Mix.Project

  def project do
    [
      app: :wasmex,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:wasmex_port] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      aliases: aliases(),
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto], mod: {Wasmex.Application, []}]
  end

  defp elixirc_paths(_), do: ["lib"]

  # `mix test` runs the port's Rust unit tests first, then ExUnit.
  defp aliases do
    [test: ["cmd cargo test --release --quiet", "test"]]
  end
end
