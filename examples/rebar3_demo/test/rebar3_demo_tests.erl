-module(rebar3_demo_tests).
-include_lib("eunit/include/eunit.hrl").

setup_test() ->
    ?assertMatch({ok, _}, application:ensure_all_started(wasmex)).

add_test() ->
    {ok, _} = application:ensure_all_started(wasmex),
    ?assertEqual(42, rebar3_demo:add(50, -8)).

errors_are_values_test() ->
    {ok, _} = application:ensure_all_started(wasmex),
    {ok, Pid} = wasmex:start_link(#{bytes => <<"(module (func (export \"f\") unreachable))">>}),
    ?assertMatch({error, <<"Error during function excecution: ", _/binary>>},
                 wasmex:call_function(Pid, f, [])).
