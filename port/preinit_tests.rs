use super::*;

/// A module whose init export sets a global to 42, writes 7 at address 8, and records
/// its argument count (WASI `args_sizes_get`) at address 16.
const COUNTER: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "wizer-initialize")
    (global.set $g (i32.const 42))
    (i32.store (i32.const 8) (i32.const 7))
    (drop (call $args (i32.const 16) (i32.const 20))))
  (func (export "boom") unreachable)
  (func (export "global") (result i32) global.get $g)
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0))))"#;

fn options(init: &str) -> PreinitOptions {
    PreinitOptions {
        init: init.into(),
        args: vec!["prog".into(), "a".into(), "b".into()],
        env: vec![("K".into(), "V".into())],
    }
}

fn engine() -> Engine {
    EngineOptions::default().build().unwrap()
}

fn snapshot_of(wat: &str, options: &PreinitOptions) -> Fallible<Vec<u8>> {
    let wasm = wat::parse_str(wat).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(snapshot(&engine(), options, &wasm))
}

/// Calls the i32-returning export `name` of a fresh instance of `wasm`, whose imports
/// (kept in the snapshot) trap if called.
fn call(wasm: &[u8], name: &str, args: &[Val]) -> i32 {
    let engine = engine();
    let module = Module::new(&engine, wasm).unwrap();
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let mut linker = Linker::new(&engine);
    linker.define_unknown_imports_as_traps(&module).unwrap();
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let mut results = [Val::I32(0)];
    let func = instance.get_func(&mut store, name).unwrap();
    func.call(&mut store, args, &mut results).unwrap();
    results[0].unwrap_i32()
}

#[test]
fn options_round_trip_through_terms() {
    let o = options("init");
    assert_eq!(PreinitOptions::from_term(&o.to_term()), Ok(o));
}

#[test]
fn options_without_init_run_wizers_default_export() {
    let o = PreinitOptions::from_term(&term::map(vec![])).unwrap();
    assert_eq!(o.init, DEFAULT_INIT);
}

#[test]
fn options_with_an_empty_init_are_refused() {
    let t = term::map(vec![(term::atom("init"), term::string(""))]);
    assert_eq!(
        PreinitOptions::from_term(&t),
        Err("init must name an export".to_string())
    );
}

#[test]
fn the_snapshot_keeps_the_globals_set_by_init() {
    let wasm = snapshot_of(COUNTER, &options(DEFAULT_INIT)).unwrap();
    assert_eq!(call(&wasm, "global", &[]), 42);
}

#[test]
fn the_snapshot_keeps_the_memory_written_by_init() {
    let wasm = snapshot_of(COUNTER, &options(DEFAULT_INIT)).unwrap();
    assert_eq!(call(&wasm, "load", &[Val::I32(8)]), 7);
}

#[test]
fn init_sees_the_arguments_of_the_options() {
    let wasm = snapshot_of(COUNTER, &options(DEFAULT_INIT)).unwrap();
    assert_eq!(call(&wasm, "load", &[Val::I32(16)]), 3);
}

#[test]
fn the_snapshot_no_longer_exports_init() {
    let wasm = snapshot_of(COUNTER, &options(DEFAULT_INIT)).unwrap();
    let module = Module::new(&engine(), &wasm).unwrap();
    assert!(module.get_export(DEFAULT_INIT).is_none());
}

#[test]
fn a_module_without_the_init_export_is_refused() {
    let error = snapshot_of(COUNTER, &options("missing")).unwrap_err();
    assert_eq!(
        error,
        "Could not pre-initialize module: it exports no `missing` function"
    );
}

#[test]
fn an_init_that_traps_is_an_error_naming_it() {
    let error = snapshot_of(COUNTER, &options("boom")).unwrap_err();
    assert!(
        error.starts_with("Could not pre-initialize module: `boom` failed"),
        "{error}"
    );
}

#[test]
fn a_child_given_no_frames_says_so() {
    assert_eq!(
        child_run(b"").unwrap_err(),
        "no engine options frame".to_string()
    );
}

#[test]
fn a_child_runs_what_its_input_holds() {
    let wasm = wat::parse_str(COUNTER).unwrap();
    let input = child_input(&EngineOptions::default(), &options(DEFAULT_INIT), &wasm);
    assert_eq!(call(&child_run(&input).unwrap(), "global", &[]), 42);
}

/// A module importing a function from outside WASI, with init exports of several shapes.
const HOSTED: &str = r#"(module
  (import "env" "host_now" (func $now (result i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "ready") (result i32) (global.set $g (i32.const 5)) (i32.const 0))
  (func (export "refuses") (result i32) (i32.const 3))
  (func (export "asks_host") (result i32) (call $now))
  (func (export "wide") (result i64) (i64.const 0))
  (func (export "two") (result i32 i32) (i32.const 0) (i32.const 0))
  (func (export "takes") (param i32))
  (func (export "global") (result i32) global.get $g))"#;

const NOT_AN_INIT: &str = "is not a function of no arguments returning nothing or an i32 status";

#[test]
fn an_init_returning_a_zero_status_is_snapshotted() {
    let wasm = snapshot_of(HOSTED, &options("ready")).unwrap();
    assert_eq!(call(&wasm, "global", &[]), 5);
}

#[test]
fn an_init_returning_another_status_is_an_error_giving_it() {
    assert_eq!(
        snapshot_of(HOSTED, &options("refuses")).unwrap_err(),
        "Could not pre-initialize module: `refuses` returned 3, not 0"
    );
}

#[test]
fn inits_of_other_shapes_are_refused_before_running() {
    for init in ["wide", "two", "takes", "memory"] {
        assert_eq!(
            snapshot_of(HOSTED, &options(init)).unwrap_err(),
            format!("Could not pre-initialize module: its export `{init}` {NOT_AN_INIT}")
        );
    }
}

#[test]
fn imports_other_than_wasi_do_not_stop_a_snapshot_and_stay_imported() {
    let wasm = snapshot_of(HOSTED, &options("ready")).unwrap();
    let module = Module::new(&engine(), &wasm).unwrap();
    let imports: Vec<_> = module
        .imports()
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    assert_eq!(imports, ["env::host_now"]);
}

#[test]
fn an_init_calling_an_import_other_than_wasi_fails_naming_it() {
    let error = snapshot_of(HOSTED, &options("asks_host")).unwrap_err();
    assert!(
        error.starts_with("Could not pre-initialize module: `asks_host` failed")
            && error.contains(
                "the import `env::host_now` was called, but only WASI is available during pre-initialization"
            ),
        "{error}"
    );
}

#[test]
fn a_module_importing_a_global_is_refused() {
    let wat = r#"(module (import "env" "g" (global i32)) (func (export "wizer-initialize")))"#;
    let error = snapshot_of(wat, &options(DEFAULT_INIT)).unwrap_err();
    assert!(
        error.starts_with("Could not pre-initialize module: cannot instrument it")
            && error.contains("imported globals are not supported"),
        "{error}"
    );
}
