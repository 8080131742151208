//! Host imports of a component implemented in Elixir, and the linker they go into.
//!
//! Every instantiation starts from a linker with WASI preview 2 (built once per engine,
//! then cloned): a component that imports WASI gets the store's context, which is empty
//! (nothing inherited, no arguments, environment or directories) unless the store was
//! made with `Wasmex.Wasi.WasiP2Options`. The user's imports are defined after it and may
//! replace WASI functions, as in Wasmex 0.15.1.
//!
//! An import sends a `callback` event to the BEAM, which runs the Elixir function outside
//! the instance's server (`Wasmex.Callback`), and waits for the answer as a core import
//! does (`callback::call_beam`): the call's deadline or cancel stops the wait, and requests
//! through the caller are served meanwhile. The answer is converted to the import's
//! result type and checked like any value; a wrong one fails the call, naming the place.
//!
//! An import may also be a resource the host implements (`host_resources`): its
//! constructor, methods and static functions are imports like the others, named as the
//! component model names them (`[constructor]counter`, `[method]counter.increment`).

use super::host_resources::{self, HostHandles};
use super::values;
use crate::callback;
use crate::store::StoreData;
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Linker, Val};
use wasmtime::{Engine, StoreContextMut};

/// One import: `None` for a world-level function, or the interface it is in; its name;
/// whether it is a resource (else a function).
pub type ImportPath = (Option<String>, String, bool);

/// `[{Interface | nil, Name} | {Interface | nil, Name, resource}]`.
pub fn parse(t: &Term) -> Fallible<Vec<ImportPath>> {
    term::as_list(t, "component imports")?
        .iter()
        .map(|i| {
            let p = match i {
                Term::Tuple(tp) if tp.elements.len() == 3 => {
                    if term::as_atom(&tp.elements[2]) != Some("resource") {
                        return Err("a component import is {Interface, Name} or \
                                    {Interface, Name, resource}"
                            .to_string());
                    }
                    &tp.elements[..]
                }
                _ => term::as_tuple(i, 2, "component import")?,
            };
            let iface = if term::is_nil(&p[0]) {
                None
            } else {
                Some(term::as_str(&p[0], "import interface")?.to_string())
            };
            let name = term::as_str(&p[1], "import name")?.to_string();
            Ok((iface, name, p.len() == 3))
        })
        .collect()
}

/// A linker with WASI preview 2 and `imports`, each calling Elixir through `handler`.
pub fn linker(
    engine: &Engine,
    handler: Arc<Vec<u8>>,
    imports: &[ImportPath],
) -> wasmtime::Result<Linker<StoreData>> {
    let mut linker = base(engine)?;
    let mut by_interface: BTreeMap<Option<&str>, Vec<(&str, bool)>> = BTreeMap::new();
    for (iface, name, resource) in imports {
        by_interface
            .entry(iface.as_deref())
            .or_default()
            .push((name.as_str(), *resource));
    }
    for (iface, names) in by_interface {
        let mut root = linker.root();
        let mut scope = match iface {
            Some(iface) => root.instance(iface)?,
            None => root,
        };
        for (name, resource) in names {
            if resource {
                host_resources::define(&mut scope, iface.unwrap_or(""), name, handler.clone())?;
                continue;
            }
            let handler = handler.clone();
            let namespace: Arc<str> = iface.unwrap_or("").into();
            let fname: Arc<str> = name.into();
            scope.func_new_async(name, move |mut cx, ty, params, results| {
                let (handler, namespace, fname) =
                    (handler.clone(), namespace.clone(), fname.clone());
                Box::new(async move {
                    host_call(&mut cx, &ty, &handler, &namespace, &fname, params, results).await
                })
            })?;
        }
    }
    Ok(linker)
}

/// The linker every instantiation starts from: WASI preview 2, built once per engine.
pub fn base(engine: &Engine) -> wasmtime::Result<Linker<StoreData>> {
    static BASE: OnceLock<Mutex<Option<Linker<StoreData>>>> = OnceLock::new();
    let mut slot = BASE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(linker) = slot.as_ref().filter(|l| Engine::same(l.engine(), engine)) {
        return Ok(linker.clone());
    }
    let mut linker = Linker::new(engine);
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    super::random::add_to_linker(&mut linker)?;
    *slot = Some(linker.clone());
    Ok(linker)
}

async fn host_call(
    cx: &mut StoreContextMut<'_, StoreData>,
    ty: &ComponentFunc,
    handler: &Arc<Vec<u8>>,
    namespace: &str,
    name: &str,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let import = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}#{name}")
    };
    let args = values::vals_to_terms_with(params, &mut HostHandles::new(cx))
        .map_err(|e| wasmtime::Error::msg(format!("import {import}: {e}")))?;
    let answer = callback::call_beam(cx, handler, namespace, name, term::list(args))
        .await
        .map_err(wasmtime::Error::msg)?;
    let mut handles = HostHandles::new(cx);
    let vals = match values::result_to_vals(ty, &answer, &mut handles) {
        Ok(vals) => vals,
        Err(e) => {
            handles.release().await;
            return Err(wasmtime::Error::msg(format!(
                "import {import} returned a wrong value: {e}"
            )));
        }
    };
    for (slot, v) in results.iter_mut().zip(vals) {
        *slot = v;
    }
    Ok(())
}
