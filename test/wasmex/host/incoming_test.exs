defmodule Wasmex.Host.IncomingTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Incoming

  doctest Incoming

  defp h(term), do: :erlang.term_to_binary(term)

  describe "check/1" do
    test "passes well-formed frames, with their handlers decoded" do
      me = self()
      assert Incoming.check({:reply, 1, {:error, "x"}}) == {:reply, 1, {:error, "x"}}
      assert Incoming.check({:reply_part, 1, "bytes"}) == {:reply_part, 1, "bytes"}

      assert Incoming.check({:callback, 1, 2, h(me), "env", "f", [1]}) ==
               {:callback, 1, 2, me, "env", "f", [1]}

      assert Incoming.check({:callback_abandoned, 1, 2, h(me)}) == {:callback_abandoned, 1, 2, me}
      assert Incoming.check({:stdio, 1, h({:pipe, me}), "out"}) == {:stdio, 1, {:pipe, me}, "out"}

      assert Incoming.check({:stdio, 1, h({:messages, me, :wasmex_stderr}), "e"}) ==
               {:stdio, 1, {:messages, me, :wasmex_stderr}, "e"}

      assert Incoming.check({:stdin_read, 1, h({:pipe, me})}) == {:stdin_read, 1, me}
      assert Incoming.check({:log, "m"}) == {:log, "m"}
      assert Incoming.check({:fatal, "m"}) == {:fatal, "m"}
    end

    test "a reply whose result is no {:ok, _} or {:error, _} becomes an error for its caller" do
      assert Incoming.check({:reply, 7, :boom}) ==
               {:reply, 7, {:error, "malformed reply from the Wasm host: :boom"}}
    end

    test "refuses handlers that are garbage, name no process, or are of an unknown kind" do
      me = self()

      for frame <- [
            {:stdio, 1, h({:unknown, me}), "x"},
            {:stdio, 1, h({:messages, me, :other_tag}), "x"},
            {:stdio, 1, h({:pipe, :registered_name}), "x"},
            {:stdio, 1, <<131, 255>>, "x"},
            {:callback, 1, 1, "garbage", "env", "f", []},
            {:callback, 1, 1, h(:name), "env", "f", []},
            {:callback_abandoned, 1, 1, "garbage"},
            {:callback_abandoned, 1, 1, h(:name)},
            {:stdin_read, 1, h(:nope)},
            {:stdin_read, 1, :not_a_binary}
          ] do
        assert {:invalid, reason} = Incoming.check(frame)
        assert reason =~ "bad handler"
      end
    end

    test "refuses fields of the wrong type and unknown frames" do
      for frame <- [
            {:callback, -1, 1, h(self()), "env", "f", []},
            {:callback, 1, 1, h(self()), :env, "f", []},
            {:callback, 1, 1, h(self()), "env", "f", :params},
            {:stdio, 1, h({:pipe, self()}), [1]},
            {:log, 1},
            {:fatal, :x},
            {:reply, -1, {:ok, 1}},
            :what
          ] do
        assert {:invalid, "unexpected frame: " <> _} = Incoming.check(frame)
      end
    end
  end
end
