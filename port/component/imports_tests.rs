//! Host functions for the `imports` fixture: params reach the host as terms
//! (`vals_to_terms`), and what the host returns is converted to the import's result type
//! (`result_to_vals`), checked like any other value.

use super::resources::NoHandles;
use super::testing::{call, call1, engine, fixture, func, store, tagged};
use super::values;
use crate::term::{self, atom, int, string};
use eetf::Term;
use std::collections::HashMap;
use wasmtime::component::{Instance, Linker, LinkerInstance, Val};
use wasmtime::Store;

const KV: &str = "wasmex:host/kv@0.1.0";

/// What the host functions saw, and what `add` answers instead of the sum when set.
#[derive(Default)]
struct Host {
    log: Vec<Term>,
    kv: HashMap<Vec<u8>, Term>,
    add_answer: Option<Term>,
}

type Reply = fn(&mut Host, Vec<Term>) -> Term;

/// Defines `name` as a host function that converts its params to terms, runs `reply` and
/// converts its answer to the function's result type.
fn define(linker: &mut LinkerInstance<'_, Host>, name: &str, reply: Reply) {
    linker
        .func_new(name, move |mut store, ty, params, results| {
            let args = values::vals_to_terms(params)?;
            let answer = reply(store.data_mut(), args);
            let vals = values::result_to_vals(&ty, &answer, &mut NoHandles)?;
            for (slot, v) in results.iter_mut().zip(vals) {
                *slot = v;
            }
            Ok(())
        })
        .expect("a new name");
}

fn sum(host: &mut Host, args: Vec<Term>) -> Term {
    if let Some(answer) = host.add_answer.clone() {
        return answer;
    }
    let total: i64 = args.iter().filter_map(term::as_i64).sum();
    int(total)
}

fn log(host: &mut Host, mut args: Vec<Term>) -> Term {
    host.log.push(args.remove(0));
    atom("ok")
}

fn kv_set(host: &mut Host, args: Vec<Term>) -> Term {
    let key = term::as_bytes(&args[0], "key").expect("a string").to_vec();
    host.kv.insert(key, args[1].clone());
    atom("ok")
}

fn kv_get(host: &mut Host, args: Vec<Term>) -> Term {
    let key = term::as_bytes(&args[0], "key").expect("a string");
    match host.kv.get(key) {
        Some(v) => tagged("some", v.clone()),
        None => atom("none"),
    }
}

fn start(host: Host) -> (Store<Host>, Instance) {
    let engine = engine();
    let component = fixture(&engine, "imports.wasm");
    let mut linker = Linker::new(&engine);
    define(&mut linker.root(), "log", log);
    define(&mut linker.root(), "add", sum);
    let mut kv = linker.instance(KV).expect("a new interface");
    define(&mut kv, "set", kv_set);
    define(&mut kv, "get", kv_get);
    let mut store = store(&engine, host);
    let instance = linker
        .instantiate(&mut store, &component)
        .expect("instantiates");
    (store, instance)
}

#[test]
fn world_level_imports_get_their_params_as_terms() {
    let (mut store, instance) = start(Host::default());
    let log_and_count = func(&mut store, &instance, &["log-and-count"]);
    assert_eq!(
        call1(&mut store, log_and_count, &[string("hello")]),
        Ok(int(5))
    );
    assert_eq!(store.data().log, vec![string("hello")]);
    let add_plus_one = func(&mut store, &instance, &["add-plus-one"]);
    assert_eq!(
        call1(&mut store, add_plus_one, &[int(2), int(3)]),
        Ok(int(6))
    );
}

#[test]
fn imports_inside_an_interface_are_called() {
    let (mut store, instance) = start(Host::default());
    let store_and_fetch = func(&mut store, &instance, &["store-and-fetch"]);
    let fetched = call1(&mut store, store_and_fetch, &[string("k"), string("v")]);
    assert_eq!(fetched, Ok(tagged("some", string("v"))));
    assert_eq!(store.data().kv.get(b"k".as_slice()), Some(&string("v")));
}

#[test]
fn a_wrong_answer_from_the_host_fails_the_call_and_poisons_the_instance() {
    let host = Host {
        add_answer: Some(int(-1)),
        ..Host::default()
    };
    let (mut store, instance) = start(host);
    let add_plus_one = func(&mut store, &instance, &["add-plus-one"]);
    let err = call(&mut store, add_plus_one, &[int(2), int(3)]).unwrap_err();
    assert!(
        err.contains("-1 is out of range for u32 (0 to 4294967295) at \"result\""),
        "{err}"
    );
    // wasmtime refuses to enter an instance after a trap in it.
    let again = call(&mut store, add_plus_one, &[int(2), int(3)]).unwrap_err();
    assert!(again.contains("cannot enter component instance"), "{again}");
}

#[test]
fn a_missing_import_fails_instantiation_naming_it() {
    let engine = engine();
    let component = fixture(&engine, "imports.wasm");
    let mut linker: Linker<Host> = Linker::new(&engine);
    define(&mut linker.root(), "log", log);
    define(&mut linker.root(), "add", sum);
    let mut store = store(&engine, Host::default());
    let err = linker.instantiate(&mut store, &component).unwrap_err();
    assert!(format!("{err:#}").contains(KV), "{err:#}");
}

#[test]
fn values_from_the_guest_become_terms() {
    let vals = [
        Val::Record(vec![("full-name".into(), Val::String("Ada".into()))]),
        Val::Flags(vec!["read".into()]),
        Val::Result(Err(None)),
    ];
    let terms = values::vals_to_terms(&vals).expect("convertible");
    assert_eq!(
        terms[0],
        super::testing::record(&[("full-name", string("Ada"))])
    );
    assert_eq!(terms[1], super::testing::record(&[("read", atom("true"))]));
    assert_eq!(terms[2], atom("error"));
    let err = values::vals_to_terms(&[Val::Map(vec![])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "WIT maps and fixed-length lists are not supported at \"value[0]\""
    );
    let long = "a".repeat(300);
    let err = values::vals_to_terms(&[Val::List(vec![Val::Enum(long)])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the name {}... is longer than 255 characters, too long for an atom at \"value[0][0]\"",
            "a".repeat(32)
        )
    );
}
