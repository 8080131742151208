//! The component requests a store serves (dispatched from `store::handle`):
//!
//! - `component_instantiate {Ctx, Key, Source, Handler, Imports, Timeout}` -> `InstanceId`
//! - `component_call {Ctx, InstanceId, Path, Params, Timeout}` -> the result
//! - `component_timing {Ctx, InstanceId}` -> where the instance's calls spent their time
//!   in the port (`timing.rs`)
//! - `component_resource_drop {Ctx, InstanceId, HandleId, Timeout}` -> `ok` (`resources.rs`,
//!   which also converts the resource handles in a call's params and results)
//!
//! Calls and instantiations run under the store's deadline and cancel handling like core
//! ones (`store::enter`/`run`/`leave`): a call that times out is stopped, not left running.
//!
//! A WASI program's exit answers `ok` (status 0, as `wasi:cli/run` answers when it returns)
//! or `{exit, Status}`; either way the instance has ended.
//!
//! A failed call poisons its instance: wasmtime will not enter a component instance again
//! after a trap in it, and a stopped call leaves it in an unknown state. Later calls
//! answer `the component instance stopped after an earlier failure (...)` without
//! entering wasmtime; the caller starts a new instance when it wants one. A call stopped
//! before it entered the instance (its deadline passed while it waited) poisons nothing.

use super::timing::{timed, CallSteps};
use super::{imports, registry};
use crate::errors::{failure_term, Failure};
use crate::instance::{describe, MAX_NESTED_CALLS};
use crate::protocol::Request;
use crate::request::parse_timeout;
use crate::store::{self, Cx};
use crate::term::{self, Fallible};
use eetf::Term;
use std::sync::Arc;
use wasmtime::component::{ComponentExportIndex, Func, Val};
use wasmtime::WasmBacktrace;

/// The error of a call into an instance that is waiting in one of its own imports.
pub const REENTERED: &str =
    "the component instance is running a call already: an import cannot call into its own instance";

/// Serves a component request.
pub async fn handle(cx: &mut Cx<'_>, req: &Request) -> Result<Term, Term> {
    match req.op.as_str() {
        "component_instantiate" => instantiate(cx, req).await.map_err(|e| term::string(&e)),
        "component_call" => call(cx, req).await,
        "component_timing" => timing(cx, req).map_err(|e| term::string(&e)),
        "component_resource_drop" => super::resources::drop(cx, req)
            .await
            .map_err(|e| term::string(&e)),
        other => Err(term::string(&format!("unknown op: {other}"))),
    }
}

async fn instantiate(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(6)?;
    let shared = cx.data().shared.clone();
    let key = registry::key_of(req.arg(1)?)?;
    let component = registry::resolve(&shared, &key, req.arg(2)?)?;
    let handler = Arc::new(term::as_bytes(req.arg(3)?, "handler")?.to_vec());
    let wanted = imports::parse(req.arg(4)?)?;
    let timeout = parse_timeout(req.arg(5)?)?;
    cx.data().component.check_enter(None)?;
    // Without imports of Elixir the component's linking is the same in every store: done
    // once, and kept with it (a failure to link is the instantiation's failure).
    let linking = if wanted.is_empty() {
        registry::pre_linked(cx.engine(), &key, &component).map(Linking::Pre)
    } else {
        let linker = imports::linker(cx.engine(), handler, &wanted)
            .map_err(|e| format!("Could not build the linker: {e:#}"))?;
        Ok(Linking::Linker(Box::new(linker)))
    };
    let scope = store::enter(cx, timeout);
    let entered = scope.stop_reason().is_none();
    let made = match linking {
        Ok(Linking::Pre(pre)) => {
            store::run_stoppable(&scope, pre.instantiate_async(&mut *cx)).await
        }
        Ok(Linking::Linker(linker)) => {
            store::run_stoppable(&scope, linker.instantiate_async(&mut *cx, &component)).await
        }
        Err(e) => Err(e),
    };
    let stopped = cx.data().call.stop().is_some();
    store::leave(cx, scope);
    let instance = made.map_err(|e| {
        let (message, kind) = describe(cx.data(), &e);
        // Start functions that trapped or were stopped leave the store's component state
        // unknown: no instance of it is entered again, as after a failed call.
        if entered && (kind == Failure::Trap || stopped) {
            cx.data_mut().component.fail_store(&message);
        }
        message
    })?;
    Ok(term::uint(cx.data_mut().component.add(instance, component)))
}

/// How an instantiation links its component: pre-linked against WASI alone, or with a
/// linker holding its imports of Elixir.
enum Linking {
    Pre(wasmtime::component::InstancePre<crate::store::StoreData>),
    Linker(Box<wasmtime::component::Linker<crate::store::StoreData>>),
}

fn timing(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(2)?;
    let id = term::as_u64(req.arg(1)?, "component instance id")?;
    Ok(cx.data().component.get(id)?.timing.to_term())
}

async fn call(cx: &mut Cx<'_>, req: &Request) -> Result<Term, Term> {
    // Before the params convert: converting moves the handles passed to `own<T>` params.
    if cx.data().depth >= MAX_NESTED_CALLS {
        return Err(term::string(&format!(
            "wasm trap: call stack exhausted: calls nested through import callbacks may go \
             {MAX_NESTED_CALLS} deep"
        )));
    }
    let Prepared {
        id,
        func,
        params,
        results,
        timeout,
        mut steps,
    } = prepare(cx, req).map_err(|e| term::string(&e))?;
    let mut results = vec![Val::Bool(false); results];
    set_running(cx, id, true);
    let scope = store::enter(cx, timeout);
    // A call stopped before it began (its deadline passed while it waited, or a timeout
    // of 0) never enters the instance, which stays usable.
    let entered = scope.stop_reason().is_none();
    let started = std::time::Instant::now();
    let ran = store::run_stoppable(&scope, func.call_async(&mut *cx, &params, &mut results)).await;
    steps.call = started.elapsed();
    store::leave(cx, scope);
    set_running(cx, id, false);
    match ran {
        Ok(()) => {
            let (answered, took) = timed(|| answer(cx, id, &results));
            steps.results = took;
            record(cx, id, &steps);
            answered.map_err(|e| term::string(&e))
        }
        Err(e) => {
            record(cx, id, &steps);
            let exit = e
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .map(|exit| exit.0);
            let (message, kind) = match exit {
                Some(code) => (
                    format!("the program exited with status {code}"),
                    Failure::Other,
                ),
                None => describe(cx.data(), &e),
            };
            if entered {
                cx.data_mut().component.fail(id, &message);
            }
            match exit {
                // As `wasi:cli/run` answers when it returns.
                Some(0) => Ok(term::atom("ok")),
                Some(code) => Err(term::tuple(vec![
                    term::atom("exit"),
                    term::int(i64::from(code)),
                ])),
                None if kind == Failure::Timeout => Err(failure_term(message, kind)),
                None if e.downcast_ref::<WasmBacktrace>().is_some() => {
                    Err(failure_term(message, Failure::Trap))
                }
                None => Err(term::string(&message)),
            }
        }
    }
}

/// Adds a call's steps to its instance's timing.
fn record(cx: &mut Cx<'_>, id: u64, steps: &CallSteps) {
    if let Ok(entry) = cx.data_mut().component.get_mut(id) {
        entry.timing.add(steps);
    }
}

fn set_running(cx: &mut Cx<'_>, id: u64, running: bool) {
    if let Ok(entry) = cx.data_mut().component.get_mut(id) {
        entry.running = running;
    }
}

/// The one result of a function as it is; a function without results answers `[]`.
fn answer(cx: &mut Cx<'_>, id: u64, results: &[Val]) -> Fallible<Term> {
    let mut terms = super::resources::results(cx, id, results)?;
    Ok(match terms.len() {
        1 => terms.remove(0),
        _ => term::list(terms),
    })
}

/// A call ready to run.
struct Prepared {
    /// The component instance.
    id: u64,
    func: Func,
    params: Vec<Val>,
    /// How many results the function has.
    results: usize,
    timeout: Option<std::time::Duration>,
    /// The steps measured so far (finding the function, converting the params).
    steps: CallSteps,
}

fn prepare(cx: &mut Cx<'_>, req: &Request) -> Fallible<Prepared> {
    req.expect_arity(5)?;
    let id = term::as_u64(req.arg(1)?, "component instance id")?;
    let entry = cx.data().component.get(id)?;
    cx.data().component.check_enter(Some(id))?;
    if entry.running {
        return Err(REENTERED.into());
    }
    let path: Vec<String> = term::as_list(req.arg(2)?, "function path")?
        .iter()
        .map(|p| term::as_str(p, "function path").map(str::to_string))
        .collect::<Fallible<_>>()?;
    let (func, lookup_took) = timed(|| lookup(cx, id, &path));
    let func = func?;
    let params = term::as_list(req.arg(3)?, "params")?;
    let results = func.ty(&*cx).results().len();
    let (params, params_took) = timed(|| super::resources::params(cx, id, &path, func, &params));
    let steps = CallSteps {
        lookup: lookup_took,
        params: params_took,
        ..CallSteps::default()
    };
    Ok(Prepared {
        id,
        func,
        params: params?,
        results,
        timeout: parse_timeout(req.arg(4)?)?,
        steps,
    })
}

/// The exported function at `path`: a name, or an interface then a name. An interface
/// named without its version (`wasi:cli/run`) finds the one version the component exports.
fn lookup(cx: &mut Cx<'_>, id: u64, path: &[String]) -> Fallible<Func> {
    // Built only for an error: a call that finds its function formats nothing.
    let shown = || match path {
        [name] => format!("`{name}`"),
        _ => format!("`{}`", path.join("#")),
    };
    let not_found = || format!("exported function {} not found", shown());
    if path.is_empty() || path.len() > 2 {
        return Err(format!(
            "a function path is a name or {{interface, name}}, got {} parts",
            path.len()
        ));
    }
    let instance = cx.data().component.get(id)?.instance;
    let mut index: Option<ComponentExportIndex> = None;
    for (depth, name) in path.iter().enumerate() {
        let found = match instance.get_export_index(&mut *cx, index.as_ref(), name) {
            Some(i) => Some(i),
            None if depth == 0 && path.len() == 2 && !name.contains('@') => {
                let component = cx.data().component.get(id)?.component.clone();
                let versioned = unversioned_export(&component, cx.engine(), name);
                versioned.and_then(|full| instance.get_export_index(&mut *cx, None, &full))
            }
            None => None,
        };
        index = Some(found.ok_or_else(not_found)?);
    }
    let index = index.ok_or_else(not_found)?;
    instance
        .get_func(&mut *cx, index)
        .ok_or_else(|| format!("the export {} is not a function", shown()))
}

/// The full name of the one export `name@<version>`, if there is exactly one.
fn unversioned_export(
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
    name: &str,
) -> Option<String> {
    let prefix = format!("{name}@");
    let ty = component.component_type();
    let mut found = ty
        .exports(engine)
        .map(|(n, _)| n.to_string())
        .filter(|n| n.starts_with(&prefix));
    let first = found.next()?;
    found.next().is_none().then_some(first)
}
