# The modules the benchmark runs (`Bench.Wasm`), and a do-nothing GenServer for the floor
# of a BEAM round trip (`Bench.Echo`). Loaded by bench/run.exs.

defmodule Bench.Wasm do
  @moduledoc false
  # Test modules: WAT inline, and a generator of a large .wasm binary.
  import Bitwise

  def sum_module do
    path = Path.join(File.cwd!(), "test/fixtures/wasmex_test.wasm")

    if File.exists?(path) do
      File.read!(path)
    else
      ~s{(module (memory (export "memory") 17)
           (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))}
    end
  end

  def small_wat, do: ~s{(module (func (export "f") (result i32) i32.const 7))}

  def callback_wat do
    ~s{(module
         (import "env" "cb" (func $cb (param i32) (result i32)))
         (func (export "once") (param i32) (result i32) (call $cb (local.get 0)))
         (func (export "many") (param $n i32) (result i32) (local $i i32) (local $acc i32)
           (block $done
             (loop $l
               (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
               (local.set $acc (i32.add (local.get $acc) (call $cb (local.get $i))))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br $l)))
           (local.get $acc)))}
  end

  @doc """
  A loop whose body has loop-invariant and repeated subexpressions, which Cranelift hoists
  and shares at `:speed` but not at `:none`: the opt level shows in its time.
  """
  def optimizable_wat do
    ~s{(module
      (func (export "work") (param $n i32) (param $a i32) (param $b i32) (result i32)
        (local $acc i32) (local $i i32)
        (loop $l
          (local.set $acc (i32.add (local.get $acc)
            (i32.xor
              (i32.mul (i32.add (i32.mul (local.get $a) (local.get $b)) (i32.const 7))
                       (i32.add (i32.mul (local.get $a) (local.get $b)) (i32.const 7)))
              (i32.add (i32.mul (i32.add (local.get $a) (i32.const 3)) (i32.add (local.get $b) (i32.const 5)))
                       (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        local.get $acc))}
  end

  def loop_wat do
    ~s{(module
         (func (export "count") (param $n i32) (result i32) (local $i i32)
           (loop $l
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
           (local.get $i)))}
  end

  @doc """
  A .wasm binary of `funcs` functions `(i32, i32) -> i32` with `stmts` statements of
  integer arithmetic each (some in `if` blocks, some calling an earlier function), plus
  `salt` in a constant so that distinct salts give distinct bytes. 3000 x 68 gives about
  2.5 MB.
  """
  def big_module(funcs \\ 3000, stmts \\ 68, salt \\ 0) do
    :rand.seed(:exsss, {17, 4711, 42})
    types = vec([<<0x60>> <> vec([<<0x7F>>, <<0x7F>>]) <> vec([<<0x7F>>])])
    functions = vec(List.duplicate(uleb(0), funcs))

    exports =
      vec([name("f0") <> <<0x00>> <> uleb(0), name("last") <> <<0x00>> <> uleb(funcs - 1)])

    bodies =
      for f <- 0..(funcs - 1) do
        code =
          [<<0x41>>, sleb(salt), <<0x21, 2>>] ++
            for(_ <- 1..stmts, do: statement(f)) ++
            [<<0x20, 2, 0x20, 3, 0x6A, 0x0B>>]

        body = IO.iodata_to_binary([vec([uleb(2) <> <<0x7F>>]) | code])
        uleb(byte_size(body)) <> body
      end

    IO.iodata_to_binary([
      <<0, ?a, ?s, ?m, 1, 0, 0, 0>>,
      section(1, types),
      section(3, functions),
      section(7, exports),
      section(10, vec(bodies))
    ])
  end

  defp statement(f) do
    a = :rand.uniform(4) - 1
    b = :rand.uniform(4) - 1
    d = 1 + :rand.uniform(2)
    c = sleb(:rand.uniform(100_000) - 50_000)

    case :rand.uniform(6) do
      1 -> [<<0x20, a, 0x20, b, 0x41>>, c, <<0x6A, 0x6C, 0x21, d>>]
      2 -> [<<0x20, a, 0x41>>, c, <<0x73, 0x20, b, 0x77, 0x21, d>>]
      3 -> [<<0x20, a, 0x41>>, c, <<0x76, 0x20, b, 0x6B, 0x21, d>>]
      4 -> [<<0x20, a, 0x41>>, c, <<0x49, 0x04, 0x40, 0x20, b, 0x41, 1, 0x6A, 0x21, d, 0x0B>>]
      5 -> [<<0x20, a, 0x20, b, 0x72, 0x41>>, c, <<0x71, 0x21, d>>]
      6 when f > 0 -> [<<0x20, a, 0x20, b, 0x10>>, uleb(:rand.uniform(f) - 1), <<0x21, d>>]
      6 -> [<<0x20, a, 0x20, b, 0x6C, 0x21, d>>]
    end
  end

  defp section(id, content), do: <<id>> <> uleb(byte_size(content)) <> content
  defp vec(items), do: IO.iodata_to_binary([uleb(length(items)) | items])
  defp name(s), do: uleb(byte_size(s)) <> s

  defp uleb(n) when n < 128, do: <<n>>
  defp uleb(n), do: <<(n &&& 0x7F) ||| 0x80>> <> uleb(n >>> 7)

  defp sleb(n) do
    byte = n &&& 0x7F
    rest = n >>> 7

    if (rest == 0 and (byte &&& 0x40) == 0) or (rest == -1 and (byte &&& 0x40) != 0),
      do: <<byte>>,
      else: <<byte ||| 0x80>> <> sleb(rest)
  end
end

defmodule Bench.Echo do
  @moduledoc false
  # A do-nothing GenServer: the floor of one BEAM process round trip.
  use GenServer
  def init(state), do: {:ok, state}
  def handle_call(:ping, _from, state), do: {:reply, :pong, state}
end
