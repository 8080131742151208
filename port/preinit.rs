//! Pre-initialization: run a module's init export once and snapshot the instance into a
//! new module (wasmtime-wizer), whose instances start with that state.
//!
//! It runs in a short-lived child, `wasmex_port --preinitialize`, like a compile
//! (`compiler.rs`): the child gets the engine options, the init options and the bytes on
//! stdin and writes the snapshot to stdout. Snapshotting compiles the module (which cannot
//! be interrupted) and runs guest code, so the parent kills the child at the deadline or on
//! a cancel, and the host's resident memory cap binds it; a crash in it only fails the
//! request.
//!
//! The init export runs with WASI preview 1 given the arguments and environment of the
//! options, and nothing else: no files, no stdin; what it writes to stdout or stderr is
//! discarded. Any other function the module imports traps, naming itself, if called.
//! The export returns nothing or an `i32` status, 0 for success.

use crate::engine::EngineOptions;
use crate::frame::{encode_frame, read_frame, Frame};
use crate::term::{self, Fallible};
use eetf::Term;
use std::io::{Read, Write};
use wasmtime::{Engine, Extern, Instance, Linker, Module, Store, Val};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// The export run when the options name none (wasmtime-wizer's default).
pub const DEFAULT_INIT: &str = "wizer-initialize";

/// What a pre-initialization is asked to do: `#{init, args, env}`.
#[derive(Clone, Debug, PartialEq)]
pub struct PreinitOptions {
    pub init: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl PreinitOptions {
    /// Reads `#{init := Name, args := [Arg], env := [{Key, Value}]}`.
    pub fn from_term(t: &Term) -> Fallible<PreinitOptions> {
        let m = term::as_map(t, "pre-initialization options")?;
        let init = match term::map_get(m, "init") {
            Some(name) => term::as_str(name, "init")?.to_string(),
            None => DEFAULT_INIT.to_string(),
        };
        if init.is_empty() {
            return Err("init must name an export".into());
        }
        let list = |key: &str| -> Fallible<Vec<Term>> {
            term::map_get(m, key).map_or(Ok(Vec::new()), |l| {
                term::as_list(l, key).map(|l| l.into_owned())
            })
        };
        let args = list("args")?
            .iter()
            .map(|a| term::as_str(a, "argument").map(str::to_string))
            .collect::<Fallible<_>>()?;
        let env = list("env")?
            .iter()
            .map(|pair| {
                let p = term::as_tuple(pair, 2, "environment variable")?;
                Ok((
                    term::as_str(&p[0], "variable name")?.to_string(),
                    term::as_str(&p[1], "variable value")?.to_string(),
                ))
            })
            .collect::<Fallible<_>>()?;
        Ok(PreinitOptions { init, args, env })
    }

    pub fn to_term(&self) -> Term {
        let env = self
            .env
            .iter()
            .map(|(k, v)| term::tuple(vec![term::string(k), term::string(v)]))
            .collect();
        term::map(vec![
            (term::atom("init"), term::string(&self.init)),
            (
                term::atom("args"),
                term::list(self.args.iter().map(|a| term::string(a)).collect()),
            ),
            (term::atom("env"), term::list(env)),
        ])
    }
}

/// What a pre-initialization child reads: the engine options, the init options, the bytes.
pub fn child_input(engine: &EngineOptions, options: &PreinitOptions, wasm: &[u8]) -> Vec<u8> {
    let mut input = encode_frame(&engine.to_term());
    input.extend_from_slice(&encode_frame(&options.to_term()));
    input.extend_from_slice(wasm);
    input
}

/// The `--preinitialize` mode of the program. Returns the exit code.
pub fn child_main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read input: {e}");
        return 2;
    }
    match child_run(&input) {
        Ok(snapshot) => match std::io::stdout().write_all(&snapshot) {
            Ok(()) => 0,
            Err(_) => 2,
        },
        Err(message) => {
            eprint!("{message}");
            1
        }
    }
}

fn child_run(input: &[u8]) -> Fallible<Vec<u8>> {
    let mut reader = input;
    let engine = EngineOptions::from_term(&next_term(&mut reader, "engine options")?)?;
    let options = PreinitOptions::from_term(&next_term(&mut reader, "init options")?)?;
    let engine = EngineOptions {
        // The child instantiates once: no pool of instance slots.
        instance_slots: None,
        ..engine
    }
    .build()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(snapshot(&engine, &options, reader))
}

fn next_term(reader: &mut &[u8], what: &str) -> Fallible<Term> {
    match read_frame(reader) {
        Ok(Some(Frame::Data(payload))) => {
            Term::decode(&payload[..]).map_err(|e| format!("bad {what}: {e}"))
        }
        _ => Err(format!("no {what} frame")),
    }
}

/// Runs the init export of `wasm` and returns the pre-initialized module.
pub async fn snapshot(engine: &Engine, options: &PreinitOptions, wasm: &[u8]) -> Fallible<Vec<u8>> {
    let fail =
        |what: &str, e: wasmtime::Error| format!("Could not pre-initialize module: {what}: {e:#}");
    let wasm =
        wat::parse_bytes(wasm).map_err(|e| format!("Could not pre-initialize module: {e}"))?;
    let mut wizer = Wizer::new();
    wizer.init_func(options.init.as_str());
    let (cx, instrumented) = wizer
        .instrument(&wasm)
        .map_err(|e| fail("cannot instrument it", e))?;
    let module = Module::new(engine, &instrumented).map_err(|e| fail("cannot compile it", e))?;
    let shape = check_init_export(&module, &options.init)?;
    let mut builder = WasiCtxBuilder::new();
    builder.args(&options.args).envs(&options.env);
    let mut store = Store::new(engine, builder.build_p1());
    // The parent's clock stops this child: no deadline or fuel limit inside it.
    store.set_epoch_deadline(u64::MAX / 2);
    let _ = store.set_fuel(u64::MAX);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx| ctx)
        .map_err(|e| fail("cannot link WASI", e))?;
    trap_other_imports(&mut linker, &mut store, &module)
        .map_err(|e| fail("cannot link its imports", e))?;
    let instance = linker
        .instantiate_async(&mut store, &module)
        .await
        .map_err(|e| fail("instantiation failed", e))?;
    if options.init != "_initialize" {
        if let Some(func) = instance.get_func(&mut store, "_initialize") {
            let func = func.typed::<(), ()>(&store).map_err(|e| {
                fail(
                    "`_initialize` is not a function of no arguments and no results",
                    e,
                )
            })?;
            func.call_async(&mut store, ())
                .await
                .map_err(|e| fail("`_initialize` failed", e))?;
        }
    }
    run_init(&mut store, &instance, &options.init, shape).await?;
    let mut state = Snapshotting { store, instance };
    wizer
        .snapshot(&cx, &mut state)
        .await
        .map_err(|e| fail("cannot snapshot it", e))
}

/// What the init export returns: nothing, or an `i32` status (0 for success).
#[derive(Clone, Copy, Debug, PartialEq)]
enum InitResult {
    Nothing,
    Status,
}

fn check_init_export(module: &Module, init: &str) -> Fallible<InitResult> {
    let shape = match module.get_export(init) {
        Some(wasmtime::ExternType::Func(f)) if f.params().len() == 0 => {
            match f.results().collect::<Vec<_>>()[..] {
                [] => Some(InitResult::Nothing),
                [wasmtime::ValType::I32] => Some(InitResult::Status),
                _ => None,
            }
        }
        Some(_) => None,
        None => {
            return Err(format!(
                "Could not pre-initialize module: it exports no `{init}` function"
            ))
        }
    };
    shape.ok_or_else(|| {
        format!(
            "Could not pre-initialize module: its export `{init}` is not a function of no arguments returning nothing or an i32 status"
        )
    })
}

/// Runs the init export; an `i32` it returns is a status, and anything but 0 fails.
async fn run_init(
    store: &mut Store<WasiP1Ctx>,
    instance: &Instance,
    init: &str,
    shape: InitResult,
) -> Fallible<()> {
    let failed =
        |e: wasmtime::Error| format!("Could not pre-initialize module: `{init}` failed: {e:#}");
    let missing = || format!("Could not pre-initialize module: it exports no `{init}` function");
    let func = instance.get_func(&mut *store, init).ok_or_else(missing)?;
    match shape {
        InitResult::Nothing => {
            let func = func.typed::<(), ()>(&*store).map_err(failed)?;
            func.call_async(&mut *store, ()).await.map_err(failed)
        }
        InitResult::Status => {
            let func = func.typed::<(), i32>(&*store).map_err(failed)?;
            match func.call_async(&mut *store, ()).await.map_err(failed)? {
                0 => Ok(()),
                status => Err(format!(
                    "Could not pre-initialize module: `{init}` returned {status}, not 0"
                )),
            }
        }
    }
}

/// Defines every function the module imports and WASI does not provide as one that
/// traps, naming itself, if the init export calls it: the host that will serve those
/// imports is not there while the snapshot is taken. Imports of other kinds (memories,
/// tables, globals) are refused earlier, by wasmtime-wizer.
fn trap_other_imports(
    linker: &mut Linker<WasiP1Ctx>,
    store: &mut Store<WasiP1Ctx>,
    module: &Module,
) -> wasmtime::Result<()> {
    for import in module.imports() {
        let (from, name) = (import.module(), import.name());
        if linker.try_get_by_import(&mut *store, &import)?.is_some() {
            continue;
        }
        if let wasmtime::ExternType::Func(ty) = import.ty() {
            let message = format!(
                "the import `{from}::{name}` was called, but only WASI is available during pre-initialization"
            );
            linker.func_new(from, name, ty, move |_, _, _| {
                Err(wasmtime::Error::msg(message.clone()))
            })?;
        }
    }
    Ok(())
}

/// The initialized instance, as wasmtime-wizer reads it. wizer asks only for the globals
/// and memories it exported itself while instrumenting; were one missing (a bug in it), it
/// would get a zero of the type it expects, or an empty memory.
struct Snapshotting {
    store: Store<WasiP1Ctx>,
    instance: Instance,
}

impl InstanceState for Snapshotting {
    async fn global_get(&mut self, name: &str, type_hint: ValType) -> SnapshotVal {
        let value = self
            .instance
            .get_global(&mut self.store, name)
            .map(|g| g.get(&mut self.store));
        match value {
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            _ => match type_hint {
                ValType::I64 => SnapshotVal::I64(0),
                ValType::F32 => SnapshotVal::F32(0),
                ValType::F64 => SnapshotVal::F64(0),
                ValType::V128 => SnapshotVal::V128(0),
                _ => SnapshotVal::I32(0),
            },
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_export(&mut self.store, name) {
            Some(Extern::Memory(m)) => contents(m.data(&self.store)),
            _ => contents(&[]),
        }
    }
}

#[cfg(test)]
#[path = "preinit_tests.rs"]
mod tests;
