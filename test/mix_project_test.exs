defmodule Wasmex.MixProjectTest do
  @moduledoc """
  The Hex package `mix.exs` describes: what it holds, and that it works as a dependency
  (the port is built with cargo on `mix compile`).
  """
  use ExUnit.Case, async: true

  @moduletag timeout: 900_000
  @moduletag :tmp_dir

  @root Path.expand("..", __DIR__)

  # The files Hex would put in the package: each entry of `files` is a path or a glob, and
  # a directory stands for everything under it.
  defp package_files do
    for entry <- Mix.Project.config()[:package][:files],
        path <- Path.wildcard(Path.join(@root, entry)),
        file <- if(File.dir?(path), do: Path.wildcard(Path.join(path, "**/*")), else: [path]),
        File.regular?(file),
        do: Path.relative_to(file, @root)
  end

  describe "package" do
    test "names a license the repository holds, and links" do
      package = Mix.Project.config()[:package]
      assert package[:licenses] == ["Apache-2.0"]

      assert File.read!(Path.join(@root, "LICENSE")) =~
               "Apache License\n                           Version 2.0"

      assert map_size(package[:links]) > 0
      assert Mix.Project.config()[:description] =~ "WebAssembly"
    end

    test "every entry of files exists" do
      for entry <- Mix.Project.config()[:package][:files] do
        assert Path.wildcard(Path.join(@root, entry)) != [], "#{entry} matches nothing"
      end
    end

    test "holds the Elixir, Erlang and Rust sources and never a built binary" do
      files = package_files()

      for file <- ~w(mix.exs lib/wasmex.ex src/wasmex.erl src/wasmex.app.src Cargo.toml
                     Cargo.lock port/main.rs port/lib.rs LICENSE CHANGELOG.md README.md) do
        assert file in files
      end

      assert Enum.sort(Enum.filter(files, &String.starts_with?(&1, "port/"))) ==
               Enum.sort(
                 Enum.map(
                   Path.wildcard(Path.join(@root, "port/**/*.rs")),
                   &Path.relative_to(&1, @root)
                 )
               )

      refute Enum.any?(files, &String.starts_with?(&1, "priv/"))
      refute Enum.any?(files, &String.starts_with?(&1, "target/"))
      refute Enum.any?(files, &String.starts_with?(&1, "_build/"))

      for file <- files do
        refute match?(<<0x7F, "ELF", _::binary>>, File.read!(Path.join(@root, file))),
               "#{file} is a built binary"
      end
    end

    test "installed as a dependency, builds the port on mix compile and runs Wasm",
         %{tmp_dir: tmp} do
      # The package's files, as Hex would unpack them, depended on by a new project.
      package = Path.join(tmp, "wasmex")

      for file <- package_files() do
        File.mkdir_p!(Path.dirname(Path.join(package, file)))
        File.cp!(Path.join(@root, file), Path.join(package, file))
      end

      app = Path.join(tmp, "app")
      File.mkdir_p!(app)

      File.write!(Path.join(app, "mix.exs"), """
      defmodule App.MixProject do
        use Mix.Project
        def project, do: [app: :app, version: "0.1.0", deps: [{:wasmex, path: "../wasmex"}]]
      end
      """)

      script =
        ~s|{:ok, pid} = Wasmex.start_link(%{bytes: "(module (func (export \\"f\\") (result i32) i32.const 42))"}); IO.inspect(Wasmex.call_function(pid, "f", []), charlists: :as_lists)|

      vars = [
        "PATH=#{System.get_env("PATH")}",
        "HOME=#{System.user_home!()}",
        "CARGO_TARGET_DIR=#{Path.join(@root, "target")}"
      ]

      {output, status} =
        System.cmd("env", ["-i" | vars] ++ ["mix", "run", "-e", script],
          cd: app,
          stderr_to_stdout: true
        )

      assert status == 0, output
      assert output =~ "Building wasmex_port with cargo (release)"
      assert output =~ "{:ok, [42]}"
    end
  end
end
