defmodule Mix.Tasks.Compile.WasmexPort do
  @shortdoc "Builds the wasmex_port executable with cargo when its sources changed"
  @moduledoc """
  Builds `priv/wasmex_port` from the Rust sources in `port/` with `cargo build --release`,
  only when a source, `Cargo.toml` or `Cargo.lock` is newer than the installed binary, and
  makes sure the application's build directory (`_build/ENV/lib/wasmex/priv`) holds it.

  Cargo's output directory is `target/` next to `Cargo.toml`, or `CARGO_TARGET_DIR`.
  Without cargo on the `PATH` the task stops and says what to install.
  """
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    root = Path.dirname(__ENV__.file)
    target = Path.join(root, "priv/wasmex_port")

    sources =
      Path.wildcard(Path.join(root, "port/**/*.rs")) ++
        Enum.map(~w(Cargo.toml Cargo.lock), &Path.join(root, &1))

    result =
      if Mix.Utils.stale?(sources, [target]) do
        build(root, target)
      else
        {:noop, []}
      end

    link_priv(result)
    result
  end

  defp build(root, target) do
    cargo = System.find_executable("cargo") || Mix.raise(missing_cargo())
    Mix.shell().info("Building wasmex_port with cargo (release)")
    args = ["build", "--release", "--quiet"]

    case System.cmd(cargo, args, cd: root, stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} ->
        # Copy, then rename over the old binary: replacing it in place fails while a port
        # process still runs it.
        File.mkdir_p!(Path.dirname(target))
        staging = target <> ".new"
        File.cp!(Path.join(target_dir(root), "release/wasmex_port"), staging)
        File.chmod!(staging, 0o755)
        File.rename!(staging, target)
        {:ok, []}

      {_, status} ->
        Mix.raise("cargo build failed with status #{status} (its output is above)")
    end
  end

  # Mix links (or, with build_embedded, copies) priv/ into the build directory before the
  # compilers run, and only if priv/ exists then. In a fresh clone or a fresh dependency it
  # does not, so build the structure again once the binary is there (and after a rebuild,
  # which a copy would not see).
  defp link_priv(result) do
    if result == {:ok, []} or
         not File.exists?(Path.join(Mix.Project.app_path(), "priv/wasmex_port")) do
      Mix.Project.build_structure()
    end
  end

  defp target_dir(root) do
    case System.get_env("CARGO_TARGET_DIR") do
      dir when dir in [nil, ""] -> Path.join(root, "target")
      dir -> Path.expand(dir, root)
    end
  end

  defp missing_cargo do
    """
    wasmex needs cargo to build its port program (wasmex_port, Rust) and cargo is not on \
    the PATH (#{System.get_env("PATH")}).
    Install a Rust toolchain (1.95 or later, what wasmtime 48 needs), for example with \
    rustup (https://rustup.rs), make sure `cargo` is on the PATH, and run `mix compile` \
    again. The first build compiles wasmtime and takes several minutes.\
    """
  end
end

defmodule Wasmex.MixProject do
  use Mix.Project

  @version "0.2.0"

  def project do
    [
      app: :wasmex,
      version: @version,
      elixir: "~> 1.14",
      description: description(),
      package: package(),
      start_permanent: Mix.env() == :prod,
      compilers: [:wasmex_port] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      aliases: aliases(),
      docs: docs()
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto], mod: {Wasmex.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp description do
    "WebAssembly and WASI for Elixir and Erlang with the Wasmex 0.9.1 API, run by " <>
      "wasmtime in a separate OS process (a port), so a crash, a runaway guest or a " <>
      "memory blow-up cannot take the BEAM down. Needs cargo to build."
  end

  # What a Hex package holds: the Elixir and Erlang sources and the Rust sources the port is
  # built from on `mix compile`; never a built binary (priv/ is not listed).
  defp package do
    [
      name: "wasmex_port",
      files: ~w(lib src port Cargo.toml Cargo.lock mix.exs rebar.config rebar.config.script
                scripts/rebar3_build.sh README.md CHANGELOG.md LICENSE docs/guides),
      licenses: ["Apache-2.0"],
      links: %{
        "Changelog" => "https://hexdocs.pm/wasmex_port/changelog.html",
        "Wasmex 0.9.1 API" => "https://hexdocs.pm/wasmex/0.9.1/",
        "wasmtime" => "https://wasmtime.dev"
      }
    ]
  end

  defp docs do
    [
      main: "readme",
      source_ref: "v#{@version}",
      extras: [
        "README.md",
        "CHANGELOG.md",
        "docs/guides/sandboxing.md",
        "docs/guides/erlang.md",
        "docs/performance.md",
        "docs/telemetry.md",
        "docs/decisions.md"
      ]
    ]
  end

  # `mix test` runs the port's Rust unit tests first, then ExUnit.
  defp aliases do
    [test: ["cmd cargo test --release --quiet", "test"]]
  end
end
