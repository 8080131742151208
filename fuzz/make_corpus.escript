#!/usr/bin/env escript
%% Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/seed-*), encoded by
%% the BEAM itself with term_to_binary, as Wasmex.Wire sends it. Run from anywhere:
%%     escript fuzz/make_corpus.escript
%% It replaces the seed-* files and leaves anything else in the corpus folders alone.
%%
%% dispatch and frame_decode inputs are streams as the port reads them after init: frames of
%% a 4-byte big-endian length and a term. Store ids are relative to the input (1 is the
%% first store it creates, see fuzz/src/driver.rs). term_values inputs are a selector byte
%% and one term.

-mode(compile).

main(_) ->
    Dir = filename:join(filename:dirname(filename:absname(escript:script_name())), "corpus"),
    Streams = streams(),
    write(Dir, "dispatch", Streams),
    write(Dir, "frame_decode", Streams ++ frame_edges()),
    write(Dir, "term_values", terms()),
    io:format("~b dispatch, ~b frame_decode, ~b term_values seeds in ~s~n",
              [length(Streams), length(Streams) + length(frame_edges()), length(terms()), Dir]).

write(Dir, Target, Seeds) ->
    D = filename:join(Dir, Target),
    ok = filelib:ensure_dir(filename:join(D, "x")),
    [ok = file:delete(filename:join(D, F)) || F <- element(2, file:list_dir(D)),
                                            lists:prefix("seed-", F)],
    [ok = file:write_file(filename:join(D, "seed-" ++ Name), Bytes) || {Name, Bytes} <- Seeds],
    ok.

%% One frame: what {packet, 4} puts on the wire.
frame(Bin) when is_binary(Bin) -> <<(byte_size(Bin)):32, Bin/binary>>.
req(Id, Op, Args) -> frame(term_to_binary({Id, Op, Args})).
%% The same with UTF-8 atoms, as OTP 26 and later encode them by default.
req8(Id, Op, Args) -> frame(term_to_binary({Id, Op, Args}, [{minor_version, 2}])).
stream(Frames) -> iolist_to_binary(Frames).

wasm(Text) -> {wasm, Text}.
%% The key Wasmex.Module names a source by, which the port checks against the bytes.
key({Kind, Bytes}) -> crypto:hash(sha256, [atom_to_binary(Kind), Bytes]).
handler() -> term_to_binary(fuzz_handler).

add_wat() ->
    <<"(module (func (export \"add\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))">>.

%% The same module in the binary format.
add_wasm() ->
    <<0,"asm",1,0,0,0,
      1,7,1,16#60,2,16#7f,16#7f,1,16#7f,
      3,2,1,0,
      7,7,1,3,"add",0,0,
      10,9,1,7,0,16#20,0,16#20,1,16#6a,16#0b>>.

mem_wat() ->
    <<"(module (memory (export \"memory\") 1 4)"
      " (global (export \"g\") (mut i64) (i64.const 7))"
      " (global (export \"c\") f32 (f32.const 1.5))"
      " (data (i32.const 0) \"hello\")"
      " (func (export \"load\") (param i32) (result i32) local.get 0 i32.load8_u))">>.

callback_wat() ->
    <<"(module (import \"env\" \"f\" (func $f (param i32) (result i32)))"
      " (memory (export \"memory\") 1)"
      " (func (export \"run\") (param i32) (result i32) local.get 0 call $f))">>.

loop_wat() ->
    <<"(module (func (export \"spin\") (loop br 0)))">>.

wasi_wat() ->
    <<"(module (import \"wasi_snapshot_preview1\" \"fd_write\""
      " (func $w (param i32 i32 i32 i32) (result i32)))"
      " (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $exit (param i32)))"
      " (memory (export \"memory\") 1)"
      " (data (i32.const 8) \"\\10\\00\\00\\00\\03\\00\\00\\00hi\\n\")"
      " (func (export \"_start\") (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 0))))"
      " (func (export \"quit\") (call $exit (i32.const 3))))">>.

stdin_wat() ->
    <<"(module (import \"wasi_snapshot_preview1\" \"fd_read\""
      " (func $r (param i32 i32 i32 i32) (result i32)))"
      " (import \"wasi_snapshot_preview1\" \"fd_write\""
      " (func $w (param i32 i32 i32 i32) (result i32)))"
      " (memory (export \"memory\") 1)"
      " (func (export \"_start\")"
      " (i32.store (i32.const 8) (i32.const 64)) (i32.store (i32.const 12) (i32.const 32))"
      " (drop (call $r (i32.const 0) (i32.const 8) (i32.const 1) (i32.const 4)))"
      " (i32.store (i32.const 12) (i32.load (i32.const 4)))"
      " (drop (call $w (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 4)))))">>.

lib_wat() -> <<"(module (func (export \"two\") (result i32) i32.const 2))">>.
user_wat() ->
    <<"(module (import \"lib\" \"two\" (func $two (result i32)))"
      " (func (export \"four\") (result i32) call $two call $two i32.add))">>.

streams() ->
    H = handler(),
    K = key(wasm(add_wat())),
    [{"compile_call", stream([
        req(2, module_compile, {K, wasm(add_wat())}),
        req(3, store_new, {nil, nil}),
        req(4, instantiate, {1, K, nil, H, [], [], 1000}),
        req(5, call, {1, 0, <<"add">>, [1, 2], 1000}),
        req(6, call, {1, 0, <<"add">>, [-5, 2147483647], infinity})])},
     {"compile_call_utf8_atoms", stream([
        req8(2, module_compile, {K, wasm(add_wat())}),
        req8(3, store_new, {nil, nil}),
        req8(4, instantiate, {1, K, nil, H, [], [], 1000}),
        req8(5, call, {1, 0, <<"add">>, [1, 2], 1000})])},
     {"binary_module", stream([
        req(2, store_new, {nil, nil}),
        req(3, instantiate, {1, key(wasm(add_wasm())), wasm(add_wasm()), H, [], [], 1000}),
        req(4, call, {1, 0, <<"add">>, [7, 8], 100}),
        req(5, call, {1, 0, <<"add">>, [7], 100}),
        req(6, call, {1, 0, <<"nope">>, [], 100}),
        req(7, call, {1, 3, <<"add">>, [1, 2], 100})])},
     {"memory_globals_fuel", stream([
        req(2, store_new, {#{memory_size => 1048576, instances => 4}, nil}),
        req(3, instantiate, {1, <<"mem">>, wasm(mem_wat()), H, [], [], 1000}),
        req(4, memory_size, {1, 0, <<"memory">>}),
        req(5, memory_grow, {1, 0, <<"memory">>, 1}),
        req(6, memory_write, {1, 0, <<"memory">>, 16, <<"abc">>}),
        req(7, memory_read, {1, 0, <<"memory">>, 0, 20}),
        req(8, memory_read, {1, 0, <<"memory">>, 131070, 4}),
        req(9, global_get, {1, 0, <<"g">>}),
        req(10, global_set, {1, 0, <<"g">>, -9}),
        req(11, global_set, {1, 0, <<"c">>, 2.5}),
        req(12, global_get, {1, 0, <<"c">>}),
        req(13, fuel_get, {1}),
        req(14, fuel_set, {1, 1000}),
        req(15, call, {1, 0, <<"load">>, [1], 100})])},
     {"callback", stream([
        req(2, store_new, {nil, nil}),
        req(3, instantiate, {1, <<"cb">>, wasm(callback_wat()), H,
                             [{<<"env">>, <<"f">>, [i32], [i32]}], [], 1000}),
        req(4, call, {1, 0, <<"run">>, [5], infinity}),
        req(5, memory_write, {{caller, 1, 1}, 0, <<"memory">>, 0, <<"x">>}),
        req(6, memory_size, {1, 0, <<"memory">>}),
        req(0, callback_return, {1, 1, {ok, [42]}}),
        req(7, call, {1, 0, <<"run">>, [6], 1000}),
        req(0, callback_return, {1, 2, {error, <<"no">>}})])},
     {"callback_bad_results", stream([
        req(2, store_new, {nil, nil}),
        req(3, instantiate, {1, <<"cb">>, wasm(callback_wat()), H,
                             [{<<"env">>, <<"f">>, [i32], [i32]}], [], 1000}),
        req(4, call, {1, 0, <<"run">>, [5], 40}),
        req(0, callback_return, {1, 1, {ok, [1.5, 2]}}),
        req(5, call, {1, 0, <<"run">>, [5], 40}),
        req(0, callback_return, {1, 2, maybe}),
        req(0, callback_return, {9, 1, {ok, []}})])},
     {"wasi", stream([
        req(2, store_new, {nil, #{args => [<<"prog">>, <<"-v">>],
                                  env => #{<<"HOME">> => <<"/">>}}}),
        req(3, instantiate, {1, <<"wasi">>, wasm(wasi_wat()), H, [], [], 1000}),
        req(4, call, {1, 0, <<"_start">>, [], 1000}),
        req(5, call, {1, 0, <<"quit">>, [], 1000})])},
     {"stdin_stdout", stream([
        req(2, store_new, {nil, #{stdin => push, stdout => {events, H}, stderr => nil,
                                  preopen => [{<<"/tmp">>, <<"/tmp">>, true}]}}),
        req(3, instantiate, {1, <<"stdin">>, wasm(stdin_wat()), H, [], [], 1000}),
        req(0, stdin_data, {1, <<"hello">>}),
        req(0, stdin_eof, {1}),
        req(4, call, {1, 0, <<"_start">>, [], 1000}),
        req(0, stdin_data, {7, <<"x">>}),
        req(0, stdin_eof, {nope})])},
     {"cancel", stream([
        req(2, store_new, {nil, nil}),
        req(3, instantiate, {1, <<"cb">>, wasm(callback_wat()), H,
                             [{<<"env">>, <<"f">>, [i32], [i32]}], [], 1000}),
        req(4, call, {1, 0, <<"run">>, [5], 1000}),
        req(0, cancel, {1, 4}),
        req(0, callback_return, {1, 1, {ok, [1]}}),
        req(0, cancel, {1, 99}),
        req(0, cancel, {8, 1}),
        req(5, cancel, {1})])},
     {"links", stream([
        req(2, module_compile, {key(wasm(lib_wat())), wasm(lib_wat())}),
        req(3, store_new, {nil, nil}),
        req(4, instantiate, {1, key(wasm(user_wat())), wasm(user_wat()), H, [],
                             [{<<"lib">>, key(wasm(lib_wat())), nil}], 1000}),
        req(5, call, {1, 0, <<"four">>, [], 1000})])},
     {"precompile_serialize", stream([
        req(2, precompile, {add_wat()}),
        req(3, module_compile, {key(wasm(add_wat())), wasm(add_wat())}),
        req(4, module_serialize, {key(wasm(add_wat())), nil}),
        req(5, module_compile, {<<"p">>, {precompiled, <<"not a module">>}}),
        req(6, module_compile, {<<"q">>, {other, <<>>}}),
        req(7, precompile, {<<"(modul">>})])},
     {"timeouts", stream([
        req(2, store_new, {nil, nil}),
        req(3, instantiate, {1, <<"loop">>, wasm(loop_wat()), H, [], [], 1000}),
        req(4, call, {1, 0, <<"spin">>, [], 10}),
        req(5, call, {1, 0, <<"spin">>, [], infinity})])},
     {"drops", stream([
        req(2, module_compile, {key(wasm(add_wat())), wasm(add_wat())}),
        req(3, store_new, {nil, nil}),
        req(4, store_new, {nil, nil}),
        req(0, module_drop, {key(wasm(add_wat()))}),
        req(5, instantiate, {1, key(wasm(add_wat())), nil, H, [], [], 1000}),
        req(0, store_drop, {2}),
        req(6, fuel_get, {2}),
        req(0, store_drop, {x}),
        req(0, module_drop, {1})])},
     {"wrong_shapes", stream([
        req(2, module_compile, {1}),
        req(3, frobnicate, {x}),
        req(4, call, {99, 0}),
        req(5, store_new, {nil}),
        req(6, store_new, {[], nil}),
        req(7, store_new, {#{memory_size => -1}, nil}),
        req(8, store_new, {nil, #{args => 5}}),
        req(9, init, {#{}}),
        req(10, memory_read, {{caller, 1, 7}, 0, <<"m">>, 0, 1}),
        frame(term_to_binary({11, call})),
        frame(term_to_binary({x, call, {}})),
        frame(term_to_binary({12, "call", {}})),
        frame(term_to_binary({13, call, [1]})),
        frame(term_to_binary({-1, call, {}})),
        frame(term_to_binary({1 bsl 70, call, {}})),
        frame(<<>>),
        frame(<<"garbage">>),
        frame(<<131, 104>>)])},
     {"store_errors", stream([
        req(2, store_new, {nil, nil}),
        req(3, instantiate, {1, <<"mem">>, wasm(mem_wat()), H,
                             [{<<"env">>, <<"f">>, [i16], []}], [], 1000}),
        req(4, instantiate, {1, <<"mem">>, wasm(mem_wat()), H, [], [{<<"x">>, <<"y">>, nil}], 5}),
        req(5, instantiate, {1, <<"mem">>, wasm(mem_wat()), H, [], [], soon}),
        req(6, memory_read, {1, 0, <<"memory">>, 18446744073709551615, 2}),
        req(7, global_set, {1, 0, <<"g">>, 1 bsl 64}),
        req(8, memory_grow, {1, 0, <<"memory">>, 100000}),
        req(9, instantiate, {1, <<"mem">>, nil, H, [], [], 1000}),
        req(10, global_set, {1, 0, <<"c">>, 1.0}),
        req(11, call, {{caller, 1, 1}, 0, <<"load">>, [0], 100})])},
     {"compressed", frame(term_to_binary({2, store_new, {nil, nil}}, [compressed]))},
     {"truncated", begin
                       F = req(2, module_compile, {K, wasm(add_wat())}),
                       binary:part(F, 0, byte_size(F) - 9)
                   end}].

%% Frames that only the frame reader cares about.
frame_edges() ->
    [{"edge_empty", <<>>},
     {"edge_short_prefix", <<0, 0>>},
     {"edge_zero_frames", <<0:32, 0:32, 0:32>>},
     {"edge_oversized", <<16#40000001:32, "tail">>},
     {"edge_max_len", <<16#ffffffff:32, 0, 0>>},
     {"edge_long_announce", <<100:32, 131, 106>>}].

terms() ->
    T = fun(Sel, Name, Term) -> {Name, <<Sel, (term_to_binary(Term))/binary>>} end,
    [T(0, "i32_max", 2147483647),
     T(1, "i32_min", -2147483648),
     T(1, "neg", -5),
     T(0, "u64_max", 18446744073709551615),
     T(4, "u128_max", (1 bsl 128) - 1),
     T(4, "too_big", 1 bsl 128),
     T(2, "float", 1.5),
     T(2, "f32_overflow", 3.5e38),
     T(3, "neg_zero", -0.0),
     T(2, "nan", nan),
     T(3, "infinity", infinity),
     T(2, "neg_infinity", neg_infinity),
     T(0, "list", [1, -2, 3.0, 1 bsl 40, 5]),
     T(0, "string", "abc"),
     T(0, "binary", <<"memory">>),
     T(1, "utf8", <<"h", 16#c3, 16#a9>>),
     T(0, "engine_config", #{consume_fuel => true, cranelift_opt_level => speed,
                             wasm_backtrace_details => false, cache_dir => nil}),
     T(0, "caller", {caller, 1, 2}),
     T(0, "import", {<<"env">>, <<"f">>, [i32, i64, f32, f64, v128], [i32]}),
     T(1, "wasi", #{args => [<<"a">>, <<"b">>], env => #{<<"K">> => <<"V">>}}),
     T(0, "limits", #{memory_size => 65536, table_elements => 10}),
     T(0, "nested", [{a, [#{b => <<"c">>}]}]),
     {"improper", <<0, (term_to_binary([1 | 2]))/binary>>},
     {"utf8_atom", <<0, (term_to_binary('été', [{minor_version, 2}]))/binary>>}].
