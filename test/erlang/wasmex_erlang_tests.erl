%% EUnit tests of the library used from plain Erlang. Run by test/erlang_test.exs.
-module(wasmex_erlang_tests).
-include_lib("eunit/include/eunit.hrl").

fixture(Name) ->
    {ok, Bin} = file:read_file(filename:join([os:getenv("WASMEX_FIXTURES"), Name])),
    Bin.

calls_a_function_test() ->
    {ok, Pid} = wasmex:start_link(#{bytes => fixture("wasmex_test.wasm")}),
    ?assertEqual({ok, [42]}, wasmex:call_function(Pid, <<"sum">>, [50, -8])),
    ?assertEqual({ok, [42]}, wasmex:call_function(Pid, sum, [50, -8], 10000)),
    ?assert(wasmex:function_exists(Pid, <<"sum">>)).

reports_errors_as_values_test() ->
    {ok, Pid} = wasmex:start_link(#{bytes => fixture("wasmex_test.wasm")}),
    ?assertEqual({error, <<"number of params does not match. expected 2, got 1">>},
                 wasmex:call_function(Pid, <<"sum">>, [1])),
    ?assertMatch({error, <<"Error during function excecution: ", _/binary>>},
                 wasmex:call_function(Pid, <<"divide">>, [1, 0])).

uses_memory_test() ->
    {ok, Pid} = wasmex:start_link(#{bytes => fixture("wasmex_test.wasm")}),
    {ok, Store} = wasmex:store(Pid),
    {ok, Memory} = wasmex:memory(Pid),
    ok = wasmex:write_binary(Store, Memory, 42, <<"hello">>),
    ?assertEqual({ok, [$h]}, wasmex:call_function(Pid, <<"string_first_byte">>, [42, 5])),
    ?assertEqual(<<"hello">>, wasmex:read_binary(Store, Memory, 42, 5)).

imports_an_erlang_fun_test() ->
    Wat = <<"(module (import \"env\" \"double\" (func $d (param i32) (result i32)))"
            "  (memory (export \"memory\") 1)"
            "  (func (export \"quad\") (param i32) (result i32) local.get 0 call $d call $d))">>,
    Double = fun(#{caller := Caller, memory := Memory}, X) ->
                     %% The caller reaches the waiting instance's memory.
                     ok = wasmex:write_binary(Caller, Memory, 0, <<X>>),
                     2 * X
             end,
    Imports = #{<<"env">> => #{<<"double">> => {fn, [i32], [i32], Double}}},
    {ok, Pid} = wasmex:start_link(#{bytes => Wat, imports => Imports}),
    ?assertEqual({ok, [20]}, wasmex:call_function(Pid, <<"quad">>, [5])),
    {ok, Store} = wasmex:store(Pid),
    {ok, Memory} = wasmex:memory(Pid),
    ?assertEqual(<<10>>, wasmex:read_binary(Store, Memory, 0, 1)).

runs_a_wasi_program_test() ->
    {ok, Stdin} = wasmex:new_pipe(),
    {ok, Stdout} = wasmex:new_pipe(),
    {ok, _} = wasmex:pipe_write(Stdin, <<"from Erlang">>),
    ok = wasmex:pipe_seek(Stdin, 0),
    Options = wasmex:wasi_options(#{args => [<<"wasi_test">>, <<"echo">>], stdin => Stdin, stdout => Stdout}),
    {ok, Pid} = wasmex:start_link(#{bytes => fixture("wasi_test.wasm"), wasi => Options}),
    ?assertEqual({ok, []}, wasmex:call_function(Pid, '_start', [])),
    ok = wasmex:pipe_seek(Stdout, 0),
    ?assertEqual(<<"from Erlang\n">>, wasmex:pipe_read(Stdout)).

compiles_once_instantiates_twice_test() ->
    {ok, Store} = wasmex:new_store(),
    {ok, Module} = wasmex:compile(Store, <<"(module (func (export \"f\") (result i32) i32.const 7))">>),
    {ok, A} = wasmex:start_link(#{store => Store, module => Module}),
    {ok, B} = wasmex:start_link(#{store => Store, module => Module}),
    ?assertEqual({ok, [7]}, wasmex:call_function(A, f, [])),
    ?assertEqual({ok, [7]}, wasmex:call_function(B, f, [])).
