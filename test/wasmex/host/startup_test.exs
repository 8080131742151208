defmodule Wasmex.Host.StartupTest do
  use ExUnit.Case, async: true

  alias Wasmex.Host.Startup

  doctest Startup

  describe "describe_status/1" do
    test "names the signal a port was killed by" do
      assert Startup.describe_status(128 + 9) == "killed by signal 9 (SIGKILL) (exit status 137)"
    end

    test "gives the number alone of a signal it does not name" do
      assert Startup.describe_status(128 + 30) == "killed by signal 30 (exit status 158)"
    end
  end
end
