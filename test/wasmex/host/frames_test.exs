defmodule Wasmex.Host.FramesTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Frames

  doctest Frames

  defp framed(payload), do: <<byte_size(payload)::32, payload::binary>>

  describe "push/2" do
    test "cuts frames however the stream is split, keeping their order" do
      stream = framed("one") <> framed("") <> framed("three") <> framed(:binary.copy("x", 70_000))

      for split <- [1, 2, 3, 7, 4096, byte_size(stream)] do
        {frames, payloads} =
          for <<chunk::binary-size(split) <- stream>>, reduce: {Frames.new(100_000), []} do
            {frames, acc} ->
              {:ok, payloads, frames} = Frames.push(frames, chunk)
              {frames, acc ++ payloads}
          end

        rest =
          binary_part(
            stream,
            byte_size(stream) - rem(byte_size(stream), split),
            rem(byte_size(stream), split)
          )

        {:ok, last, _} = Frames.push(frames, rest)
        assert payloads ++ last == ["one", "", "three", :binary.copy("x", 70_000)]
      end
    end

    test "a frame of exactly the limit passes; one byte more is refused at its header" do
      assert {:ok, ["abcd"], _} = Frames.push(Frames.new(4), framed("abcd"))

      assert Frames.push(Frames.new(4), <<5::32>>) ==
               {:error, "the Wasm host sent a frame of 5 bytes, over the limit of 4"}
    end

    test "a header over the limit is refused even after frames that passed, in the same chunk" do
      assert {:error, "the Wasm host sent a frame of 4294967295 bytes" <> _} =
               Frames.push(Frames.new(1024), framed("ok") <> <<0xFFFFFFFF::32, 0>>)
    end
  end
end
