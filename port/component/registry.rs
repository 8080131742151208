//! Compiled components, by key (the SHA-256 of `"component"` and the bytes, as
//! `Wasmex.Components.Component` computes it), for every store of this program to
//! instantiate. A host has one engine; an entry is used only with the engine that compiled
//! it. The least recently used are dropped beyond [`CAPACITY`]; the BEAM then sends the
//! bytes again (it does when told [`NOT_LOADED`]). Compiled components are kept on disk
//! in the artifact cache (`artifact.rs`) beside modules, proved by the same trailer, so
//! another host (or a later run) loads one instead of compiling it. Components over 4 KiB
//! compile in a compile child, under the compile timeout, like modules (`compiler.rs`).

use super::{imports, names};
use crate::compiler::Waiter;
use crate::module_key::ModuleKey;
use crate::protocol::Request;
use crate::shared::Shared;
use crate::store::StoreData;
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;
use wasmtime::component::{Component, InstancePre};
use wasmtime::Engine;

/// How many compiled components the program keeps.
pub const CAPACITY: usize = 64;

/// The error for a component this program dropped (or never had) when no bytes came.
pub const NOT_LOADED: &str = "the component is not loaded in this host and no source was sent";

/// The source kind hashed into a component's key.
const KIND: &str = "component";

#[derive(Default)]
struct Entries {
    components: HashMap<[u8; 32], Entry>,
    clock: u64,
}

struct Entry {
    component: Component,
    /// The WIT names its values may carry (`names.rs`), found on first ask.
    names: Option<Arc<[String]>>,
    /// The component linked against WASI alone, made on the first instantiation without
    /// imports of Elixir (`pre_linked`).
    pre: Option<InstancePre<StoreData>>,
    used: u64,
}

fn entries() -> std::sync::MutexGuard<'static, Entries> {
    static ENTRIES: OnceLock<Mutex<Entries>> = OnceLock::new();
    ENTRIES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn get(engine: &Engine, key: &[u8; 32]) -> Option<Component> {
    let mut e = entries();
    e.clock += 1;
    let now = e.clock;
    let entry = entry_of(&mut e, engine, key)?;
    entry.used = now;
    Some(entry.component.clone())
}

/// The names of the component under `key`, found once and kept with it.
fn names_of(engine: &Engine, key: &[u8; 32], component: &Component) -> Fallible<Arc<[String]>> {
    kept_or_made(
        engine,
        key,
        |entry| &mut entry.names,
        || Ok(names::of(component, engine)?.into()),
    )
}

/// The entry under `key`, if it is for `engine`.
fn entry_of<'a>(e: &'a mut Entries, engine: &Engine, key: &[u8; 32]) -> Option<&'a mut Entry> {
    e.components
        .get_mut(key)
        .filter(|entry| Engine::same(entry.component.engine(), engine))
}

/// What `slot` of the entry under `key` keeps, or, the first time, what `make` makes,
/// then kept there (unless the entry went, or is another engine's, meanwhile).
fn kept_or_made<V: Clone, E>(
    engine: &Engine,
    key: &[u8; 32],
    slot: impl Fn(&mut Entry) -> &mut Option<V>,
    make: impl FnOnce() -> Result<V, E>,
) -> Result<V, E> {
    if let Some(kept) = entry_of(&mut entries(), engine, key).and_then(|e| slot(e).clone()) {
        return Ok(kept);
    }
    // Made without the lock: it may take a while, and another thread may make it too.
    let made = make()?;
    if let Some(entry) = entry_of(&mut entries(), engine, key) {
        *slot(entry) = Some(made.clone());
    }
    Ok(made)
}

fn insert(key: [u8; 32], component: Component) {
    let mut e = entries();
    e.clock += 1;
    let now = e.clock;
    e.components.insert(
        key,
        Entry {
            component,
            names: None,
            pre: None,
            used: now,
        },
    );
    if e.components.len() > CAPACITY {
        let oldest = e
            .components
            .iter()
            .min_by_key(|(_, entry)| entry.used)
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            e.components.remove(&k);
        }
    }
}

/// The component under `key` linked against WASI preview 2 alone, for instantiations
/// without imports of Elixir: its imports are resolved and type-checked once, and each
/// instantiation then only builds the instance (about 3x faster than linking it again).
pub fn pre_linked(
    engine: &Engine,
    key: &[u8; 32],
    component: &Component,
) -> wasmtime::Result<InstancePre<StoreData>> {
    kept_or_made(
        engine,
        key,
        |entry| &mut entry.pre,
        || imports::base(engine)?.instantiate_pre(component),
    )
}

/// The 32-byte key in a request.
pub fn key_of(t: &Term) -> Fallible<[u8; 32]> {
    term::as_bytes(t, "component key")?
        .try_into()
        .map_err(|_| "the component key must be 32 bytes".to_string())
}

/// The component under `key`, compiled from `source` (`{component, Bytes}` or `nil`)
/// when this program does not have it.
pub fn resolve(shared: &Shared, key: &[u8; 32], source: &Term) -> Fallible<Component> {
    resolve_or_stop(shared, key, source, &Waiter::now())
}

/// `resolve`, with a compile for `waiter`.
fn resolve_or_stop(
    shared: &Shared,
    claimed: &[u8; 32],
    source: &Term,
    waiter: &Waiter<'_>,
) -> Fallible<Component> {
    if let Some(component) = get(&shared.engine, claimed) {
        return Ok(component);
    }
    if term::is_nil(source) {
        return Err(NOT_LOADED.into());
    }
    let component = compile(shared, claimed, source, waiter)?;
    insert(*claimed, component.clone());
    Ok(component)
}

fn compile(
    shared: &Shared,
    claimed: &[u8; 32],
    source: &Term,
    waiter: &Waiter<'_>,
) -> Fallible<Component> {
    let parts = term::as_tuple(source, 2, "component source")?;
    if term::as_atom(&parts[0]) != Some(KIND) {
        return Err(format!(
            "a component source must be {{component, Bytes}}, got: {}",
            term::show(&parts[0])
        ));
    }
    let bytes = term::as_bytes(&parts[1], "component bytes")?;
    let key = ModuleKey::verified(claimed, KIND, bytes)
        .map_err(|_| "the component key is not the SHA-256 digest of its source".to_string())?;
    shared.compiler.compile_component(bytes, &key, waiter)
}

/// `{Key, Source}` -> `Names`: compiles the component (unless this program has it) and
/// answers the WIT names its values may carry (see `names.rs`).
pub fn compile_request(shared: &Shared, req: &Request, asked: Instant) -> Fallible<Term> {
    req.expect_arity(2)?;
    let cancelled = || shared.cancellations.contains(req.id);
    let waiter = Waiter {
        asked,
        cancelled: &cancelled,
    };
    let key = key_of(req.arg(0)?)?;
    let component = resolve_or_stop(shared, &key, req.arg(1)?, &waiter)?;
    let names = names_of(&shared.engine, &key, &component)?;
    Ok(term::list(names.iter().map(|n| term::string(n)).collect()))
}
