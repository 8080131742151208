//! What a WIT world exports, for `Wasmex.Components.ComponentServer`, which generates a
//! function per exported function at compile time. Parsed with the `wit-parser` crate (the
//! parser wasmtime's tooling uses), never by hand.

use crate::protocol::Request;
use crate::shared::Shared;
use crate::term::{self, Fallible};
use eetf::Term;
use wit_parser::{Function, FunctionKind, Resolve, WorldItem};

/// `{WitText, World | nil}` -> `[{Interface | nil, Name, [ParamName]}]`: the functions the
/// world exports, world-level ones with `nil`, those of exported interfaces with the
/// interface's name (`ns:pkg/iface@ver`). Resource methods and constructors are left out.
///
/// The same route serves `wit_resource` (`wit_resources.rs`).
pub fn exports_request(_shared: &Shared, req: &Request) -> Fallible<Term> {
    if req.op == "wit_resource" {
        return super::wit_resources::request(req);
    }
    req.expect_arity(2)?;
    let text = term::as_str(req.arg(0)?, "WIT")?;
    let world = match req.arg(1)? {
        t if term::is_nil(t) => None,
        t => Some(term::as_str(t, "world")?),
    };
    exports(text, world).map(|fns| {
        term::list(
            fns.into_iter()
                .map(|(iface, name, params)| {
                    term::tuple(vec![
                        iface.map_or_else(term::nil, |i| term::string(&i)),
                        term::string(&name),
                        term::list(params.iter().map(|p| term::string(p)).collect()),
                    ])
                })
                .collect(),
        )
    })
}

type Export = (Option<String>, String, Vec<String>);

pub fn exports(text: &str, world: Option<&str>) -> Fallible<Vec<Export>> {
    let mut resolve = Resolve::new();
    let package = resolve
        .push_str("component.wit", text)
        .map_err(|e| format!("the WIT does not parse: {e:#}"))?;
    let world = resolve
        .select_world(&[package], world)
        .map_err(|e| format!("no world to use in the WIT: {e:#}"))?;
    let mut found = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        match item {
            WorldItem::Function(f) => {
                if let Some(params) = freestanding(f) {
                    found.push((None, f.name.clone(), params));
                }
            }
            WorldItem::Interface { id, .. } => {
                let name = resolve
                    .id_of(*id)
                    .unwrap_or_else(|| resolve.name_world_key(key));
                for f in resolve.interfaces[*id].functions.values() {
                    if let Some(params) = freestanding(f) {
                        found.push((Some(name.clone()), f.name.clone(), params));
                    }
                }
            }
            WorldItem::Type { .. } => {}
        }
    }
    Ok(found)
}

fn freestanding(f: &Function) -> Option<Vec<String>> {
    matches!(f.kind, FunctionKind::Freestanding)
        .then(|| f.params.iter().map(|p| p.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types_wit() -> String {
        let path = format!(
            "{}/test/fixtures/components/types.wit",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn lists_world_functions_and_those_of_exported_interfaces() {
        let fns = exports(&types_wit(), None).unwrap();
        assert!(fns.contains(&(None, "greet".into(), vec!["name".into()])));
        assert!(fns.contains(&(
            Some("wasmex:types/roundtrip@0.1.0".into()),
            "distance".into(),
            vec!["a".into(), "b".into()]
        )));
        assert_eq!(fns.len(), 3 + 27);
    }

    #[test]
    fn says_why_wit_is_refused() {
        assert!(exports("package a:b; world w { export f: func(", None)
            .unwrap_err()
            .starts_with("the WIT does not parse"));
        assert!(exports(&types_wit(), Some("nope"))
            .unwrap_err()
            .starts_with("no world to use in the WIT"));
    }
}
