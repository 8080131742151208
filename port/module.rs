//! Compiling, loading and describing modules. Modules live in a per-host registry keyed
//! by an id the BEAM chooses, so any store of the host can instantiate them.

pub use crate::code::{compile, deserialize, serialize};
use crate::compiler::{Compiler, Waiter};
use crate::module_key::ModuleKey;
use crate::term::{self, Fallible};
use crate::values::{ref_type_term, type_term};
use eetf::Term;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::{ExternType, Module, Mutability};

/// How many modules a host keeps loaded; the least recently used beyond that are
/// dropped (instances keep theirs alive; the BEAM sends the source again when needed).
pub const REGISTRY_CAPACITY: usize = 256;

/// The error a request gets for a module this host dropped (or never had) and no source.
pub const NOT_LOADED: &str = "the module is not loaded in this host and no source was sent";

/// Modules known to this host, by key, each with when it was last used.
#[derive(Clone)]
pub struct Registry(Arc<Mutex<Entries>>);

struct Entries {
    modules: HashMap<Vec<u8>, (Module, u64)>,
    clock: u64,
    capacity: usize,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::with_capacity(REGISTRY_CAPACITY)
    }
}

impl Registry {
    pub fn with_capacity(capacity: usize) -> Registry {
        Registry(Arc::new(Mutex::new(Entries {
            modules: HashMap::new(),
            clock: 0,
            capacity,
        })))
    }

    pub fn get(&self, key: &[u8]) -> Option<Module> {
        let mut e = self.0.lock().ok()?;
        e.clock += 1;
        let now = e.clock;
        e.modules.get_mut(key).map(|(m, used)| {
            *used = now;
            m.clone()
        })
    }

    pub fn insert(&self, key: Vec<u8>, module: Module) {
        if let Ok(mut e) = self.0.lock() {
            e.clock += 1;
            let now = e.clock;
            e.modules.insert(key, (module, now));
            if e.modules.len() > e.capacity {
                let oldest = e
                    .modules
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    e.modules.remove(&k);
                }
            }
        }
    }

    pub fn remove(&self, key: &[u8]) {
        if let Ok(mut e) = self.0.lock() {
            e.modules.remove(key);
        }
    }

    /// The module under `key`; when this host has not seen it, load it from `source`
    /// (`{wasm, Bytes}` or `{precompiled, Bytes}`).
    pub fn resolve(&self, compiler: &Compiler, key: &[u8], source: &Term) -> Fallible<Module> {
        if let Some(m) = self.get(key) {
            return Ok(m);
        }
        let module = load(compiler, key, source, &Waiter::now())?;
        self.insert(key.to_vec(), module.clone());
        Ok(module)
    }
}

/// Loads `{wasm, Bytes}` (binary or text format) or `{precompiled, Bytes}`, after checking
/// that `key` is the digest of that source (`module_key.rs`). Without a source (`nil`: the
/// BEAM sends large modules' keys first), maps the module's artifact if the cache holds
/// one that proves it, or answers [`NOT_LOADED`] so that the source is sent.
pub fn load(
    compiler: &Compiler,
    key: &[u8],
    source: &Term,
    waiter: &Waiter<'_>,
) -> Fallible<Module> {
    if term::is_nil(source) {
        let key = ModuleKey::named(key)?;
        return compiler.cached(&key).ok_or_else(|| NOT_LOADED.into());
    }
    let parts = term::as_tuple(source, 2, "module source")?;
    let bytes = term::as_bytes(&parts[1], "module bytes")?;
    match term::as_atom(&parts[0]) {
        Some(kind @ "wasm") => {
            let key = ModuleKey::verified(key, kind, bytes)?;
            compiler.compile(bytes, Some(&key), waiter)
        }
        Some(kind @ "precompiled") => {
            ModuleKey::verified(key, kind, bytes)?;
            deserialize(compiler.engine(), bytes)
        }
        _ => Err(format!(
            "module source must be {{wasm, Bytes}} or {{precompiled, Bytes}}, got: {}",
            term::show(&parts[0])
        )),
    }
}

/// `{Name | nil, Exports, Imports}`: what `Wasmex.Module.name/exports/imports` return.
pub fn describe(module: &Module) -> Term {
    let name = module.name().map(term::string).unwrap_or_else(term::nil);
    let exports = term::map(
        module
            .exports()
            .map(|e| (term::string(e.name()), extern_info(&e.ty())))
            .collect(),
    );
    let mut namespaces: HashMap<String, Vec<(Term, Term)>> = HashMap::new();
    for i in module.imports() {
        namespaces
            .entry(i.module().to_string())
            .or_default()
            .push((term::string(i.name()), extern_info(&i.ty())));
    }
    let imports = term::map(
        namespaces
            .into_iter()
            .map(|(ns, entries)| (term::string(&ns), term::map(entries)))
            .collect(),
    );
    term::tuple(vec![name, exports, imports])
}

fn types(it: impl Iterator<Item = wasmtime::ValType>) -> Term {
    term::list(it.map(|t| type_term(&t)).collect())
}

/// Adds `maximum` only when the type has one, as Wasmex does.
fn with_maximum(mut pairs: Vec<(Term, Term)>, max: Option<u64>) -> Term {
    if let Some(max) = max {
        pairs.push((term::atom("maximum"), term::uint(max)));
    }
    term::map(pairs)
}

/// Info tuples: `{fn, Params, Results}`, `{global, #{type, mutability}}`,
/// `{memory, #{minimum, shared, memory64}}`, `{table, #{type, minimum}}` (plus `maximum` when set).
pub fn extern_info(ty: &ExternType) -> Term {
    let a = term::atom;
    match ty {
        ExternType::Func(f) => term::tuple(vec![a("fn"), types(f.params()), types(f.results())]),
        ExternType::Global(g) => term::tuple(vec![
            a("global"),
            term::map(vec![
                (a("type"), type_term(g.content())),
                (
                    a("mutability"),
                    a(match g.mutability() {
                        Mutability::Const => "const",
                        Mutability::Var => "var",
                    }),
                ),
            ]),
        ]),
        ExternType::Memory(m) => term::tuple(vec![
            a("memory"),
            with_maximum(
                vec![
                    (a("minimum"), term::uint(m.minimum())),
                    (a("shared"), term::boolean(m.is_shared())),
                    (a("memory64"), term::boolean(m.is_64())),
                ],
                m.maximum(),
            ),
        ]),
        ExternType::Table(t) => term::tuple(vec![
            a("table"),
            with_maximum(
                vec![
                    (a("type"), ref_type_term(t.element())),
                    (a("minimum"), term::uint(t.minimum())),
                ],
                t.maximum(),
            ),
        ]),
        ExternType::Tag(_) => term::tuple(vec![a("tag")]),
    }
}

/// `{Wat}` -> `Wasm`: the binary encoding of a module (or component) in text format,
/// as `Wasmex.Wat.to_wasm/1` gives it.
pub fn wat_to_wasm(text: &[u8]) -> Fallible<Vec<u8>> {
    let text = std::str::from_utf8(text).map_err(|e| format!("Failed to parse WAT: {e}"))?;
    wat::parse_str(text).map_err(|e| format!("Failed to parse WAT: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::Engine;

    fn engine() -> Engine {
        Engine::default()
    }

    #[test]
    fn compiles_wat_and_describes_it() {
        let m = compile(
            &engine(),
            br#"(module $demo (import "env" "f" (func (param i32))) (memory (export "memory") 17)
                 (global (export "g") (mut i64) (i64.const 0))
                 (func (export "sum") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#,
        )
        .unwrap();
        let d = describe(&m);
        let parts = term::as_tuple(&d, 3, "d").unwrap();
        assert_eq!(parts[0], term::string("demo"));
        let exports = term::as_map(&parts[1], "exports").unwrap();
        assert_eq!(
            exports[&term::string("sum")],
            term::tuple(vec![
                term::atom("fn"),
                term::list(vec![term::atom("i32"), term::atom("i32")]),
                term::list(vec![term::atom("i32")])
            ])
        );
        let imports = term::as_map(&parts[2], "imports").unwrap();
        assert!(term::as_map(&imports[&term::string("env")], "env")
            .unwrap()
            .contains_key(&term::string("f")));
    }

    #[test]
    fn reference_types_read_as_wasmex_reads_them() {
        let m = compile(
            &engine(),
            br#"(module (table (export "t") 1 funcref) (table (export "x") 1 externref)
                 (global (export "g") externref (ref.null extern))
                 (func (export "f") (param funcref) (result externref) ref.null extern))"#,
        )
        .unwrap();
        let d = describe(&m);
        let exports = term::as_map(&term::as_tuple(&d, 3, "d").unwrap()[1], "exports")
            .unwrap()
            .clone();
        let reference = |text: &str| term::tuple(vec![term::atom("reference"), term::string(text)]);
        let field = |name: &str| {
            let info = term::as_tuple(&exports[&term::string(name)], 2, "info").unwrap();
            term::as_map(&info[1], "info").unwrap()[&term::atom("type")].clone()
        };
        assert_eq!(field("t"), reference("(ref null func)"));
        assert_eq!(field("x"), reference("(ref null extern)"));
        assert_eq!(field("g"), reference("(ref null extern)"));
        assert_eq!(
            exports[&term::string("f")],
            term::tuple(vec![
                term::atom("fn"),
                term::list(vec![reference("(ref null func)")]),
                term::list(vec![reference("(ref null extern)")])
            ])
        );
    }

    #[test]
    fn converts_wat_text_and_says_where_it_fails() {
        let wasm = wat_to_wasm(b"(module (func (export \"f\")))").unwrap();
        assert!(compile(&engine(), &wasm).is_ok());
        assert_eq!(
            wat_to_wasm(b"not a wat file").unwrap_err(),
            "Failed to parse WAT: expected `(`\n     --> <anon>:1:1\n      |\n    1 | not a wat file\n      | ^"
        );
    }

    #[test]
    fn the_registry_drops_the_least_recently_used_module() {
        let e = engine();
        let m = compile(&e, b"(module)").unwrap();
        let r = Registry::with_capacity(2);
        r.insert(b"a".to_vec(), m.clone());
        r.insert(b"b".to_vec(), m.clone());
        assert!(r.get(b"a").is_some());
        r.insert(b"c".to_vec(), m);
        assert!(r.get(b"b").is_none());
        assert!(r.get(b"a").is_some() && r.get(b"c").is_some());
    }

    #[test]
    fn invalid_bytes_give_a_clear_error() {
        let err = compile(&engine(), b"(module (func (export \"f\") (result i32)))").unwrap_err();
        assert!(err.starts_with("Could not compile module"), "{err}");
        let err = compile(&engine(), b"(modul").unwrap_err();
        assert!(err.starts_with("Error while parsing bytes"), "{err}");
    }

    #[test]
    fn serialized_modules_load_back_and_garbage_does_not() {
        let e = engine();
        let m = compile(&e, b"(module (func (export \"f\")))").unwrap();
        let bytes = serialize(&m).unwrap();
        assert!(deserialize(&e, &bytes).is_ok());
        assert!(deserialize(&e, b"garbage").is_err());
    }
}
