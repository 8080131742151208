//! What a WIT resource offers, for `Wasmex.Components.GuestResource` and `.HostResource`,
//! which generate a function per constructor, method and static function at compile time.
//! Parsed with the `wit-parser` crate.
//!
//! `wit_resource {Source, World | nil, Resource, Interface | nil, export | import}`, where
//! `Source` is `{text, WitText}` or `{path, FileOrDirectory}` (a directory may hold the
//! standard `deps/`), answers `{Interface, Resource, [Function], [SourceFile]}` with
//! `Function = {Kind, Name, [ParamName], ResultShape}`: `Kind` is `constructor`, `method`,
//! `static`, `async_method` or `async_static`; params leave out a method's `self`. The
//! result shape says where owned handles of the resource are in the result, for the BEAM
//! to put them there: `nil` (none), `handle`, `{list | option, S}`, `{result, S, S}`,
//! `{tuple, [S]}`, `{record, [{Field, S}]}`, `{variant, [{Case, S}]}`, or `{foreign, Name}`
//! for a handle of another resource.

use crate::protocol::Request;
use crate::term::{self, Fallible};
use eetf::Term;
use std::path::Path;
use wit_parser::{Function, FunctionKind, Handle, Resolve, Type, TypeDefKind, TypeId, WorldItem};

/// Serves `wit_resource` (sent as the op of a `wit_exports`-routed request).
pub fn request(req: &Request) -> Fallible<Term> {
    req.expect_arity(5)?;
    let source = term::as_tuple(req.arg(0)?, 2, "WIT source")?;
    let optional = |t: &Term, what: &str| -> Fallible<Option<String>> {
        if term::is_nil(t) {
            Ok(None)
        } else {
            term::as_str(t, what).map(|s| Some(s.to_string()))
        }
    };
    let world = optional(req.arg(1)?, "world")?;
    let resource = term::as_str(req.arg(2)?, "resource")?;
    let interface = optional(req.arg(3)?, "interface")?;
    let exported = match term::as_atom(req.arg(4)?) {
        Some("export") => true,
        Some("import") => false,
        _ => return Err("the direction is export or import".into()),
    };
    let text = term::as_str(&source[1], "WIT source")?;
    let mut resolve = Resolve::new();
    let (package, files) = match term::as_atom(&source[0]) {
        Some("text") => (
            resolve
                .push_str("component.wit", text)
                .map_err(|e| format!("the WIT does not parse: {e:#}"))?,
            Vec::new(),
        ),
        Some("path") => {
            let (package, map) = resolve
                .push_path(Path::new(text))
                .map_err(|e| format!("the WIT at {text} does not parse: {e:#}"))?;
            let files = map.paths().map(|p| p.display().to_string()).collect();
            (package, files)
        }
        _ => return Err("a WIT source is {text, Text} or {path, Path}".into()),
    };
    let world = resolve
        .select_world(&[package], world.as_deref())
        .map_err(|e| format!("no world to use in the WIT: {e:#}"))?;
    let (iface_name, id, fns) = find(&resolve, world, resource, interface.as_deref(), exported)?;
    Ok(term::tuple(vec![
        term::string(&iface_name),
        term::string(resource),
        term::list(
            fns.iter()
                .map(|f| function(&resolve, id, f))
                .collect::<Option<_>>()
                .ok_or("a function of the resource has an unexpected kind")?,
        ),
        term::list(files.iter().map(|f| term::string(f)).collect()),
    ]))
}

/// The interface (named), the resource's type and its functions.
fn find<'r>(
    resolve: &'r Resolve,
    world: wit_parser::WorldId,
    resource: &str,
    interface: Option<&str>,
    exported: bool,
) -> Fallible<(String, TypeId, Vec<&'r Function>)> {
    let w = &resolve.worlds[world];
    let items = if exported { &w.exports } else { &w.imports };
    let direction = if exported { "exports" } else { "imports" };
    let mut found = Vec::new();
    for (key, item) in items {
        let WorldItem::Interface { id, .. } = item else {
            continue;
        };
        let name = resolve
            .id_of(*id)
            .unwrap_or_else(|| resolve.name_world_key(key));
        if interface.is_some_and(|wanted| wanted != name) {
            continue;
        }
        let iface = &resolve.interfaces[*id];
        let Some(ty) = iface.types.get(resource) else {
            continue;
        };
        if !matches!(resolve.types[*ty].kind, TypeDefKind::Resource) {
            continue;
        }
        let fns = iface
            .functions
            .values()
            .filter(|f| owner(&f.kind) == Some(*ty))
            .collect();
        found.push((name, *ty, fns));
    }
    let world_name = &w.name;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(match interface {
            Some(i) => format!("the world {world_name} {direction} no resource {resource} in {i}"),
            None => format!("the world {world_name} {direction} no resource {resource}"),
        }),
        _ => Err(format!(
            "the world {world_name} {direction} a resource {resource} in several interfaces \
             ({}): choose one with interface:",
            found
                .iter()
                .map(|(n, _, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn owner(kind: &FunctionKind) -> Option<TypeId> {
    match kind {
        FunctionKind::Constructor(t)
        | FunctionKind::Method(t)
        | FunctionKind::AsyncMethod(t)
        | FunctionKind::Static(t)
        | FunctionKind::AsyncStatic(t) => Some(*t),
        FunctionKind::Freestanding | FunctionKind::AsyncFreestanding => None,
    }
}

fn function(resolve: &Resolve, resource: TypeId, f: &Function) -> Option<Term> {
    let (kind, skip) = match f.kind {
        FunctionKind::Constructor(_) => ("constructor", 0),
        FunctionKind::Method(_) => ("method", 1),
        FunctionKind::AsyncMethod(_) => ("async_method", 1),
        FunctionKind::Static(_) => ("static", 0),
        FunctionKind::AsyncStatic(_) => ("async_static", 0),
        _ => return None,
    };
    let params = f.params.iter().skip(skip).map(|p| term::string(&p.name));
    // A constructor's result is the resource itself.
    let shape = match (&f.kind, &f.result) {
        (FunctionKind::Constructor(_), _) => term::atom("handle"),
        (_, Some(ty)) => shape(resolve, resource, ty, 0),
        (_, None) => term::nil(),
    };
    Some(term::tuple(vec![
        term::atom(kind),
        term::string(f.item_name()),
        term::list(params.collect()),
        shape,
    ]))
}

/// How deep a shape goes at most (WIT types are finite; this bounds the work).
const MAX_DEPTH: usize = 64;

/// Where owned handles of `resource` are in a value of type `ty`.
fn shape(resolve: &Resolve, resource: TypeId, ty: &Type, depth: usize) -> Term {
    let Type::Id(id) = ty else {
        return term::nil();
    };
    if depth > MAX_DEPTH {
        return term::nil();
    }
    let inner = |t: &Type| shape(resolve, resource, t, depth + 1);
    let maybe = |t: &Option<Type>| t.as_ref().map_or_else(term::nil, inner);
    let tagged = |tag: &str, parts: Vec<Term>| {
        if parts.iter().all(is_nil) {
            term::nil()
        } else {
            let mut items = vec![term::atom(tag)];
            items.extend(parts);
            term::tuple(items)
        }
    };
    let named = |tag: &str, entries: Vec<(String, Term)>| {
        if entries.iter().all(|(_, s)| is_nil(s)) {
            return term::nil();
        }
        let list = entries
            .into_iter()
            .map(|(n, s)| term::tuple(vec![term::string(&n), s]))
            .collect();
        term::tuple(vec![term::atom(tag), term::list(list)])
    };
    match &resolve.types[*id].kind {
        TypeDefKind::Type(t) => inner(t),
        TypeDefKind::Handle(Handle::Own(r)) => {
            let r = unalias(resolve, *r);
            if r == resource {
                term::atom("handle")
            } else {
                let name = resolve.types[r].name.clone().unwrap_or_default();
                term::tuple(vec![term::atom("foreign"), term::string(&name)])
            }
        }
        TypeDefKind::List(t) => tagged("list", vec![inner(t)]),
        TypeDefKind::Option(t) => tagged("option", vec![inner(t)]),
        TypeDefKind::Result(r) => tagged("result", vec![maybe(&r.ok), maybe(&r.err)]),
        TypeDefKind::Tuple(t) => {
            let parts: Vec<Term> = t.types.iter().map(inner).collect();
            if parts.iter().all(is_nil) {
                term::nil()
            } else {
                term::tuple(vec![term::atom("tuple"), term::list(parts)])
            }
        }
        TypeDefKind::Record(r) => named(
            "record",
            r.fields
                .iter()
                .map(|f| (f.name.clone(), inner(&f.ty)))
                .collect(),
        ),
        TypeDefKind::Variant(v) => named(
            "variant",
            v.cases
                .iter()
                .map(|c| (c.name.clone(), maybe(&c.ty)))
                .collect(),
        ),
        _ => term::nil(),
    }
}

fn unalias(resolve: &Resolve, mut id: TypeId) -> TypeId {
    for _ in 0..MAX_DEPTH {
        match &resolve.types[id].kind {
            TypeDefKind::Type(Type::Id(next)) => id = *next,
            _ => break,
        }
    }
    id
}

fn is_nil(t: &Term) -> bool {
    term::is_nil(t)
}
