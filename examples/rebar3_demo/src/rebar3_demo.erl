%% Adds numbers in WebAssembly, out of process.
-module(rebar3_demo).
-export([add/2]).

-define(WAT, <<"(module (func (export \"add\") (param i32 i32) (result i32)"
               " local.get 0 local.get 1 i32.add))">>).

add(A, B) ->
    {ok, Pid} = wasmex:start_link(#{bytes => ?WAT}),
    {ok, [Sum]} = wasmex:call_function(Pid, <<"add">>, [A, B]),
    Sum.
