%% Common Test: the same calls as the EUnit tests, run by `rebar3 ct'.
-module(rebar3_demo_SUITE).
-export([all/0, init_per_suite/1, end_per_suite/1, adds_in_wasm/1, traps_are_errors/1]).

all() -> [adds_in_wasm, traps_are_errors].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(rebar3_demo),
    Config.

end_per_suite(_Config) ->
    ok.

adds_in_wasm(_Config) ->
    42 = rebar3_demo:add(50, -8).

traps_are_errors(_Config) ->
    {ok, Pid} = wasmex:start_link(#{bytes => <<"(module (func (export \"f\") unreachable))">>}),
    {error, <<"Error during function excecution: ", _/binary>>} = wasmex:call_function(Pid, f, []).
