//! Instantiating modules (with import callbacks, links and WASI) and calling their
//! exported functions.

use crate::call_state::Stop;
use crate::callback::{self, Import};
use crate::engine::explain_pool_limit;
use crate::errors::{self, failure_term, Failure};
use crate::request::{Export, Instantiation};
use crate::shared::Shared;
use crate::store::{self, Cx, StoreData};
use crate::term::{self, Fallible};
use crate::values;
use eetf::Term;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{Extern, FuncType, Linker, Module, Trap, Val, ValType};

/// Instantiates a module (with its links) in the store: the new instance's id.
///
/// The links come in dependency order: each linked module is instantiated with everything
/// before it available, and its exports become importable under its name.
pub async fn instantiate(cx: &mut Cx<'_>, what: &Instantiation) -> Result<Term, Term> {
    let (module, links, mut linker) = prepare_instantiation(cx, what)
        .await
        .map_err(|e| term::string(&e))?;
    let scope = store::enter(cx, what.timeout);
    let made = store::run_stoppable(&scope, async {
        for (name, module) in &links {
            let linked = linker
                .instantiate_async(&mut *cx, module)
                .await
                .map_err(|e| e.context(format!("Could not instantiate linked module `{name}`")))?;
            linker.instance(&mut *cx, name, linked)?;
        }
        linker.instantiate_async(&mut *cx, &module).await
    })
    .await;
    store::leave(cx, scope);
    // A trap in a start function is reported as a message, as Wasmex does; a stop at the
    // deadline as `{timeout, Message}`.
    let instance = made.map_err(|e| match describe(cx.data(), &e) {
        (message, Failure::Timeout) => failure_term(message, Failure::Timeout),
        (message, _) => term::string(&message),
    })?;
    let instances = &mut cx.data_mut().instances;
    instances.push(instance);
    Ok(term::uint(instances.len() as u64 - 1))
}

type PreparedInstantiation = (Module, Vec<(String, Module)>, Linker<StoreData>);

/// The module, its links and the linker of an instantiation, once instance slots are free.
async fn prepare_instantiation(
    cx: &mut Cx<'_>,
    what: &Instantiation,
) -> Fallible<PreparedInstantiation> {
    let shared = cx.data().shared.clone();
    let module = resolve(&shared, &what.key, &what.source)?;
    let handler = Arc::new(what.handler.clone());
    let imports = what
        .imports
        .iter()
        .map(|t| Import::parse(t, handler.clone()).map(Arc::new))
        .collect::<Fallible<Vec<_>>>()?;
    let links = what
        .links
        .iter()
        .map(|l| {
            let p = term::as_tuple(l, 3, "link")?;
            let name = term::as_str(&p[0], "link name")?.to_string();
            let key = term::as_bytes(&p[1], "link module key")?;
            Ok((name, resolve(&shared, key, &p[2])?))
        })
        .collect::<Fallible<Vec<_>>>()?;
    let linker = linker(cx, &imports).map_err(|e| format!("Could not build the linker: {e}"))?;
    wait_for_slots(
        cx.data().shared.clone(),
        links.iter().map(|(_, m)| m).chain([&module]),
    )
    .await;
    Ok((module, links, linker))
}

/// The module under `key`. One the host does not have yet is loaded from `source`,
/// which may compile it: that runs off the worker's other tasks (see
/// `executor::blocking`).
fn resolve(shared: &Shared, key: &[u8], source: &Term) -> Fallible<Module> {
    match shared.modules.get(key) {
        Some(module) => Ok(module),
        None => crate::executor::blocking(|| shared.modules.resolve(&shared.compiler, key, source)),
    }
}

/// How long an instantiation waits in all for dropped stores to free slots.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// When the engine's instance slots cannot hold `modules` now, waits (up to
/// [`SLOT_WAIT`]) while stores told to drop, whose instances still hold slots, go. The
/// instantiation is then tried once, whatever the slots: a failed one would leave its
/// linked instances in the store, and count against the store's limits, so it is not
/// retried.
async fn wait_for_slots<'a>(shared: Arc<Shared>, modules: impl Iterator<Item = &'a Module>) {
    let Some(slots) = shared.instance_slots.map(u64::from) else {
        return;
    };
    let need = modules.fold((0, 0, 0), |(i, m, t), module| {
        let r = module.resources_required();
        (
            i + 1,
            m + u64::from(r.num_memories),
            t + u64::from(r.num_tables),
        )
    });
    let full = || match shared.engine.pooling_allocator_metrics() {
        Some(used) => {
            used.core_instances() + need.0 > slots
                || used.memories() as u64 + need.1 > slots
                || used.tables() as u64 + need.2 > slots
        }
        None => false,
    };
    if !full() {
        return;
    }
    let until = Instant::now() + SLOT_WAIT;
    // The task waits parked: the drops it waits for run meanwhile.
    loop {
        // Taken before the look at the slots: a drop done in between counts.
        let seen = shared.drops.done();
        if !full() || !shared.drops.wait_past(seen, until).await {
            return;
        }
    }
}

/// A linker with WASI (for WASI stores) and the import callbacks, which may override WASI
/// functions.
fn linker(cx: &Cx<'_>, imports: &[Arc<Import>]) -> wasmtime::Result<Linker<StoreData>> {
    let engine = cx.engine();
    let mut linker = cx.data().linkers.get(engine, cx.data().wasi_enabled)?;
    for import in imports {
        let ty = FuncType::new(
            engine,
            import.params.iter().cloned(),
            import.results.iter().cloned(),
        );
        let callee = import.clone();
        linker.func_new_async(
            &import.namespace,
            &import.name,
            ty,
            move |mut caller, params, results| {
                let callee = callee.clone();
                Box::new(
                    async move { callback::invoke(&mut caller, &callee, params, results).await },
                )
            },
        )?;
    }
    Ok(linker)
}

/// The linkers every instantiation starts from (with or without WASI), built once per
/// engine and cloned: registering the WASI functions anew each time costs more than the
/// instantiation itself.
#[derive(Default)]
pub struct BaseLinkers {
    plain: Mutex<Option<Linker<StoreData>>>,
    wasi: Mutex<Option<Linker<StoreData>>>,
}

impl BaseLinkers {
    fn get(&self, engine: &wasmtime::Engine, wasi: bool) -> wasmtime::Result<Linker<StoreData>> {
        let slot = if wasi { &self.wasi } else { &self.plain };
        let mut slot = slot
            .lock()
            .map_err(|_| wasmtime::Error::msg("linker cache poisoned"))?;
        if let Some(linker) = slot.as_ref() {
            return Ok(linker.clone());
        }
        let mut linker = Linker::new(engine);
        linker.allow_shadowing(true);
        if wasi {
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |d: &mut StoreData| &mut d.wasi)?;
            crate::wasi_fds::add_to_linker(&mut linker)?;
            crate::wasi_readdir::add_to_linker(&mut linker)?;
            crate::wasi_random::add_to_linker(&mut linker)?;
            crate::wasi_exit::add_to_linker(&mut linker)?;
        }
        *slot = Some(linker.clone());
        Ok(linker)
    }
}

/// The export `name` of one of the store's instances, picked as one `kind` of extern:
/// `"function"`, `"memory"` or `"global"`.
pub fn export<T>(
    cx: &mut Cx<'_>,
    name: &Export,
    kind: &str,
    pick: fn(Extern) -> Option<T>,
) -> Fallible<T> {
    let id = name.instance;
    let instance = cx
        .data()
        .instances
        .get(id as usize)
        .copied()
        .ok_or_else(|| format!("unknown instance {id}"))?;
    let name = name.name.as_str();
    instance
        .get_export(&mut *cx, name)
        .and_then(pick)
        .ok_or_else(|| format!("exported {kind} `{name}` not found"))
}

/// Calls `function` with `params`: `[Results]`. A WASI program that calls `proc_exit(0)`
/// succeeds with no results; another exit code fails with `{exit, Code}`.
pub async fn call(
    cx: &mut Cx<'_>,
    function: &Export,
    params: &[Term],
    timeout: Option<Duration>,
) -> Result<Term, Term> {
    let (func, args, mut results) =
        prepare_call(cx, function, params).map_err(|e| term::string(&e))?;
    if cx.data().depth >= MAX_NESTED_CALLS {
        return Err(term::string(&format!(
            "wasm trap: call stack exhausted: calls nested through import callbacks may go \
             {MAX_NESTED_CALLS} deep"
        )));
    }
    let scope = store::enter(cx, timeout);
    let ran = store::run_stoppable(&scope, func.call_async(&mut *cx, &args, &mut results)).await;
    store::leave(cx, scope);
    match ran {
        Ok(()) => values::from_vals(&results).map_err(|e| term::string(&e)),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) if exit.0 == 0 => Ok(term::list(vec![])),
            Some(exit) => Err(term::tuple(vec![
                term::atom("exit"),
                term::int(i64::from(crate::wasi_exit::code(exit))),
            ])),
            None => Err(failure_reason(cx.data(), &e)),
        },
    }
}

/// How deep calls may nest through import callbacks (Wasm -> callback -> Wasm ...). Each
/// level runs on a fiber stack of its own, so the Wasm stack limit alone, which counts
/// one stack, would not end a recursion through callbacks.
pub const MAX_NESTED_CALLS: u32 = 100;

type PreparedCall = (wasmtime::Func, Vec<Val>, Vec<Val>);

fn prepare_call(cx: &mut Cx<'_>, function: &Export, params: &[Term]) -> Fallible<PreparedCall> {
    let func = export(cx, function, "function", Extern::into_func)?;
    let ty = func.ty(&*cx);
    let param_types: Vec<ValType> = ty.params().collect();
    let args = values::to_vals(params, &param_types)?;
    let results: Vec<Val> = ty
        .results()
        .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
        .collect();
    Ok((func, args, results))
}

/// The error reason of a failed call: `{trap, Message}`, `{timeout, Message}`, or the
/// message alone.
pub fn failure_reason(data: &StoreData, e: &wasmtime::Error) -> Term {
    let (message, kind) = describe(data, e);
    failure_term(message, kind)
}

/// The message of a failure, and its kind.
pub fn describe(data: &StoreData, e: &wasmtime::Error) -> (String, Failure) {
    // Stopped at the deadline or on a cancel, in Wasm (an epoch interrupt) or in a host call
    // (a read of stdin): say why.
    // The innermost request served inside the running call first: a nested call stopped
    // on its own, with the call around it going on.
    let stopped = data.nested.last().and_then(|nested| nested.stop());
    match stopped.or_else(|| data.call.stop()) {
        Some(stop @ Stop::TimedOut(_)) => return (stop.message(), Failure::Timeout),
        Some(stop) => return (stop.message(), Failure::Other),
        None => {}
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return ("interrupted".into(), Failure::Other);
    }
    // Wasmex's wording (typo included) for failures while Wasm ran, then what caused them
    // (the trap, the callback's error); other failures (linking) as they are.
    match e.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(bt) => (
            errors::call_failure(bt, &e.root_cause().to_string()),
            Failure::Trap,
        ),
        None => (
            errors::cap(explain_pool_limit(format!("{e:#}"))),
            Failure::Other,
        ),
    }
}
