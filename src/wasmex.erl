%% @doc The Erlang face of Wasmex: the same API as the Elixir modules, with Erlang names.
%%
%% Every function here is a thin call into the Elixir module named in its comment; the
%% Elixir modules can also be called directly ('Elixir.Wasmex.Memory':read_binary/4 ...).
%% See docs/guides/erlang.md for a guide.
-module(wasmex).

-export([start_link/1, call_function/3, call_function/4, function_exists/2,
         memory/1, store/1, module/1,
         new_store/0, new_store/2, new_wasi_store/1, compile/2,
         read_binary/4, write_binary/4,
         wasi_options/1, preopen/2,
         new_pipe/0, pipe_read/1, pipe_seek/2, pipe_write/2]).

%% @doc Starts an instance server: #{bytes => Binary} or #{store => S, module => M}, plus
%% optional imports, links and wasi. ('Elixir.Wasmex':start_link/1)
start_link(Options) when is_map(Options) -> 'Elixir.Wasmex':start_link(Options).

%% @doc Calls an exported function. ('Elixir.Wasmex':call_function/3,4)
call_function(Pid, Name, Params) -> 'Elixir.Wasmex':call_function(Pid, Name, Params).
call_function(Pid, Name, Params, Timeout) -> 'Elixir.Wasmex':call_function(Pid, Name, Params, Timeout).

function_exists(Pid, Name) -> 'Elixir.Wasmex':function_exists(Pid, Name).
memory(Pid) -> 'Elixir.Wasmex':memory(Pid).
store(Pid) -> 'Elixir.Wasmex':store(Pid).
module(Pid) -> 'Elixir.Wasmex':module(Pid).

%% @doc A store in a host process of its own. ('Elixir.Wasmex.Store':new/0,2)
new_store() -> 'Elixir.Wasmex.Store':new().
new_store(Limits, Engine) -> 'Elixir.Wasmex.Store':new(Limits, Engine).

%% @doc A WASI store; Options is a map for wasi_options/1.
new_wasi_store(Options) when is_map(Options) -> 'Elixir.Wasmex.Store':new_wasi(wasi_options(Options)).

%% @doc Compiles .wasm or .wat bytes in a store's host. ('Elixir.Wasmex.Module':compile/2)
compile(Store, Bytes) -> 'Elixir.Wasmex.Module':compile(Store, Bytes).

read_binary(StoreOrCaller, Memory, Index, Length) ->
    'Elixir.Wasmex.Memory':read_binary(StoreOrCaller, Memory, Index, Length).
write_binary(StoreOrCaller, Memory, Index, Binary) ->
    'Elixir.Wasmex.Memory':write_binary(StoreOrCaller, Memory, Index, Binary).

%% @doc A 'Elixir.Wasmex.Wasi.WasiOptions' struct from a map with the keys args, env,
%% preopen, stdin, stdout, stderr.
wasi_options(Options) when is_map(Options) -> 'Elixir.Wasmex.Wasi.WasiOptions':new(Options).

%% @doc A preopened directory for wasi_options/1: Path seen by the program as Alias.
preopen(Path, Alias) -> 'Elixir.Kernel':struct('Elixir.Wasmex.Wasi.PreopenOptions', #{path => Path, alias => Alias}).

new_pipe() -> 'Elixir.Wasmex.Pipe':new().
pipe_read(Pipe) -> 'Elixir.Wasmex.Pipe':read(Pipe).
pipe_seek(Pipe, Position) -> 'Elixir.Wasmex.Pipe':seek(Pipe, Position).
pipe_write(Pipe, Binary) -> 'Elixir.Wasmex.Pipe':write(Pipe, Binary).
