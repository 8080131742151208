//! Test helpers: the fixtures of `test/fixtures/components`, compiled for a plain sync
//! engine, and calls whose params and results go through the term conversion.

use super::{load, values};
use crate::term;
use eetf::Term;
use wasmtime::component::{Component, Func, Instance, Linker};
use wasmtime::{Config, Engine, Store};

/// The interface the `types` fixture exports.
pub const ROUNDTRIP: &str = "wasmex:types/roundtrip@0.1.0";

/// An engine with the component model and fuel (so an endless loop ends).
pub fn engine() -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(true).consume_fuel(true);
    Engine::new(&config).expect("a valid engine config")
}

pub fn fixture_bytes(file: &str) -> Vec<u8> {
    let path = format!(
        "{}/test/fixtures/components/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

pub fn fixture(engine: &Engine, file: &str) -> Component {
    load::component(engine, &fixture_bytes(file))
        .unwrap_or_else(|e| panic!("{file} does not load: {e}"))
}

/// A store with plenty of fuel.
pub fn store<T: 'static>(engine: &Engine, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.set_fuel(1_000_000_000).expect("fuel is enabled");
    store
}

/// An instance of a fixture that imports nothing.
pub fn instance(file: &str) -> (Store<()>, Instance) {
    let engine = engine();
    let component = fixture(&engine, file);
    let mut store = store(&engine, ());
    let instance = Linker::new(&engine)
        .instantiate(&mut store, &component)
        .expect("instantiates");
    (store, instance)
}

/// The exported function at `path`: a name, or an interface name then a function name.
pub fn func<T: 'static>(store: &mut Store<T>, instance: &Instance, path: &[&str]) -> Func {
    let mut index = None;
    for name in path {
        index = Some(
            instance
                .get_export_index(&mut *store, index.as_ref(), name)
                .unwrap_or_else(|| panic!("no export {name} in {path:?}")),
        );
    }
    let index = index.expect("a non-empty path");
    instance
        .get_func(&mut *store, index)
        .unwrap_or_else(|| panic!("{path:?} is not a function"))
}

/// Calls `func` with params converted from terms and returns its results as terms. A
/// value that does not convert, or a failed call, is an `Err` with the message.
pub fn call<T: 'static>(
    store: &mut Store<T>,
    func: Func,
    params: &[Term],
) -> Result<Vec<Term>, String> {
    let ty = func.ty(&*store);
    let params = values::params_to_vals(&ty, params)?;
    let mut results = vec![wasmtime::component::Val::Bool(false); ty.results().len()];
    func.call(&mut *store, &params, &mut results)
        .map_err(|e| format!("{e:#}"))?;
    Ok(values::vals_to_terms(&results)?)
}

/// `call` for a function with one result.
pub fn call1<T: 'static>(
    store: &mut Store<T>,
    func: Func,
    params: &[Term],
) -> Result<Term, String> {
    let mut results = call(store, func, params)?;
    assert_eq!(results.len(), 1, "one result");
    Ok(results.remove(0))
}

/// A map with atom keys, as Elixir's `%{key: value}`.
pub fn record(fields: &[(&str, Term)]) -> Term {
    term::map(
        fields
            .iter()
            .map(|(k, v)| (term::atom(k), v.clone()))
            .collect(),
    )
}

/// `{Tag, Value}`.
pub fn tagged(tag: &str, v: Term) -> Term {
    term::tuple(vec![term::atom(tag), v])
}
