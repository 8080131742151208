defmodule Wasmex.Wasi.Check do
  @moduledoc false
  # Checks of the WASI options' values (see Wasmex.Wasi.WasiOptions): each returns
  # {:ok, value as sent to the port} or {:error, message naming the option}.

  @doc "Applies `fun` to each element, stopping at the first error."
  @spec all(Enumerable.t(), (term() -> {:ok, term()} | {:error, String.t()})) ::
          {:ok, list()} | {:error, String.t()}
  def all(enum, fun) do
    enum
    |> Enum.reduce_while({:ok, []}, fn x, {:ok, acc} ->
      case fun.(x) do
        {:ok, value} -> {:cont, {:ok, [value | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, acc} -> {:ok, Enum.reverse(acc)}
      error -> error
    end
  end

  @doc "Program arguments: a list of strings."
  def args(args) when is_list(args), do: all(args, &string("wasi args element", &1))
  def args(other), do: {:error, "wasi args must be a list of strings, got: #{inspect(other)}"}

  @doc "Environment: a map of names (non-empty, no `=`) to strings."
  def env(%{} = env) do
    env
    |> Enum.sort()
    |> all(fn {name, value} ->
      with {:ok, name} <- string("wasi env name", name),
           :ok <- env_name(name),
           {:ok, value} <- string("wasi env value of #{name}", value),
           do: {:ok, {name, value}}
    end)
    |> case do
      {:ok, pairs} -> {:ok, Map.new(pairs)}
      error -> error
    end
  end

  def env(other),
    do: {:error, "wasi env must be a map of strings to strings, got: #{inspect(other)}"}

  defp env_name(""), do: {:error, "wasi env name must not be empty"}

  defp env_name(name) do
    if String.contains?(name, "="),
      do: {:error, "wasi env name must not contain \"=\", got: #{inspect(name)}"},
      else: :ok
  end

  @doc "A string (a binary without NUL bytes)."
  def string(what, value) when is_binary(value) do
    if String.contains?(value, <<0>>),
      do: {:error, "#{what} must not contain a NUL byte, got: #{inspect(value)}"},
      else: {:ok, value}
  end

  def string(what, value), do: {:error, "#{what} must be a string, got: #{inspect(value)}"}

  @doc "A directory to preopen: a non-empty string naming an existing directory."
  def directory(path) when is_binary(path) and path != "" do
    with {:ok, path} <- string("wasi preopen path", path) do
      expanded = Path.expand(path)

      if File.dir?(expanded),
        do: {:ok, expanded},
        else: {:error, "wasi preopen path #{inspect(path)} is not a directory"}
    end
  end

  def directory(path),
    do: {:error, "wasi preopen path must be a non-empty string, got: #{inspect(path)}"}
end
