//! Resource handles in component values, and guest resources: those a component defines
//! and exports (`Wasmex.Components.GuestResource`).
//!
//! A value conversion hands every `own<T>` / `borrow<T>` position to a [`Handles`]: the
//! guest's handles here, the host's in `host_resources`, none where resources cannot be.
//!
//! A guest handle the BEAM holds is a [`GuestHandle`] in the store's [`GuestTable`], keyed
//! by an id that is never reused; the BEAM sees `{wasmex_resource, Id, Interface, Name}`
//! and passes `{wasmex_resource, Id}` back. A handle given to an `own<T>` parameter moves
//! to the guest and leaves the table; so does a dropped one. An id below the next one but
//! not in the table is such a handle: dropping it again is `ok`, using it an error. The
//! table goes with the store (so every handle goes when the store is dropped).

use super::path::{Path, ValueError};
use super::values;
use crate::instance::describe;
use crate::protocol::Request;
use crate::request::parse_timeout;
use crate::store::{self, Cx};
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Func, ResourceAny, ResourceType, Val};

/// The atom tagging a resource handle in a term.
pub const TAG: &str = "wasmex_resource";

/// What a value conversion does at a resource position.
pub trait Handles {
    /// The term at an `own<T>` or `borrow<T>` position (`ty`), as a value.
    fn lower(&mut self, t: &Term, ty: &Type, path: &Path) -> Result<Val, ValueError>;
    /// A handle that came from the guest, as a term.
    fn lift(&mut self, r: ResourceAny, path: &Path) -> Result<Term, ValueError>;
}

/// Refuses every handle: for conversions where no resource can be.
pub struct NoHandles;

const NO_HANDLES: &str = "resource handles are not supported here";

impl Handles for NoHandles {
    fn lower(&mut self, _t: &Term, _ty: &Type, path: &Path) -> Result<Val, ValueError> {
        Err(path.fail(NO_HANDLES))
    }

    fn lift(&mut self, _r: ResourceAny, path: &Path) -> Result<Term, ValueError> {
        Err(path.fail(NO_HANDLES))
    }
}

/// The guest handles the BEAM holds, in one store.
#[derive(Default)]
pub struct GuestTable {
    next: u64,
    live: HashMap<u64, GuestHandle>,
}

pub struct GuestHandle {
    pub any: ResourceAny,
    /// The component instance whose resource it is.
    pub instance: u64,
    pub resource: Arc<Exported>,
}

impl GuestTable {
    /// How many handles the BEAM holds.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    fn gone(&self, id: u64) -> String {
        if id < self.next {
            format!(
                "resource handle {id} is no longer live: it was dropped, or moved to the guest \
                 by an own<T> parameter"
            )
        } else {
            format!("unknown resource handle {id}")
        }
    }
}

/// A resource type an instance exports, and its name.
#[derive(Debug)]
pub struct Exported {
    pub ty: ResourceType,
    pub interface: String,
    pub name: String,
}

/// The resource types instance `id` exports (worked out once per instance).
fn exported(cx: &mut Cx<'_>, id: u64) -> Fallible<Arc<[Arc<Exported>]>> {
    let entry = cx.data().component.get(id)?;
    if let Some(found) = &entry.resources {
        return Ok(found.clone());
    }
    let (instance, component) = (entry.instance, entry.component.clone());
    let engine = cx.engine().clone();
    let mut found = Vec::new();
    for (iface, item) in component.component_type().exports(&engine) {
        let ComponentItem::ComponentInstance(inner) = item.ty else {
            continue;
        };
        let Some(at) = instance.get_export_index(&mut *cx, None, iface) else {
            continue;
        };
        for (name, item) in inner.exports(&engine) {
            if !matches!(item.ty, ComponentItem::Resource(_)) {
                continue;
            }
            let index = instance.get_export_index(&mut *cx, Some(&at), name);
            if let Some(ty) = index.and_then(|i| instance.get_resource(&mut *cx, i)) {
                found.push(Arc::new(Exported {
                    ty,
                    interface: iface.to_string(),
                    name: name.to_string(),
                }));
            }
        }
    }
    let found: Arc<[Arc<Exported>]> = found.into();
    cx.data_mut().component.get_mut(id)?.resources = Some(found.clone());
    Ok(found)
}

/// The guest handles of a call into instance `instance`.
struct GuestHandles<'c, 'a> {
    cx: &'c mut Cx<'a>,
    instance: u64,
    /// Found when a handle first needs a name.
    exported: Option<Arc<[Arc<Exported>]>>,
    /// Handles given in this call, and whether each moves (an `own<T>` parameter).
    used: Vec<(u64, bool)>,
}

impl<'c, 'a> GuestHandles<'c, 'a> {
    fn new(cx: &'c mut Cx<'a>, instance: u64) -> Self {
        GuestHandles {
            cx,
            instance,
            exported: None,
            used: Vec::new(),
        }
    }

    fn name_of(&mut self, ty: ResourceType) -> Option<Arc<Exported>> {
        if self.exported.is_none() {
            self.exported = exported(self.cx, self.instance).ok();
        }
        let found = self.exported.as_ref()?.iter().find(|e| e.ty == ty);
        found.cloned()
    }

    /// The handles given to `own<T>` parameters leave the table: they are the guest's now.
    fn commit(self) {
        let table = &mut self.cx.data_mut().component.guest;
        for (id, moves) in self.used {
            if moves {
                table.live.remove(&id);
            }
        }
    }
}

impl Handles for GuestHandles<'_, '_> {
    fn lower(&mut self, t: &Term, ty: &Type, path: &Path) -> Result<Val, ValueError> {
        let (expected, own) = match ty {
            Type::Own(r) => (*r, true),
            Type::Borrow(r) => (*r, false),
            _ => return Err(path.fail("not a resource type")),
        };
        let id =
            handle_id(t).ok_or_else(|| path.expected("a resource handle (a GuestResource)", t))?;
        let table = &self.cx.data().component.guest;
        let handle = table
            .live
            .get(&id)
            .ok_or_else(|| path.fail(table.gone(id)))?;
        let (any, instance, name) = (handle.any, handle.instance, handle.resource.clone());
        if instance != self.instance {
            return Err(path.fail(format!(
                "resource handle {id} belongs to another component instance"
            )));
        }
        if any.ty() != expected {
            let wanted = self
                .name_of(expected)
                .map_or_else(|| "another resource type".into(), |e| e.name.clone());
            return Err(path.fail(format!(
                "resource handle {id} is a {}, not a {wanted}",
                name.name
            )));
        }
        if let Some((_, moved)) = self.used.iter().find(|(used, _)| *used == id) {
            if *moved || own {
                return Err(path.fail(format!(
                    "resource handle {id} is given twice in one call, once to an own<T> \
                     parameter, which moves it"
                )));
            }
        }
        self.used.push((id, own));
        Ok(Val::Resource(any))
    }

    fn lift(&mut self, r: ResourceAny, path: &Path) -> Result<Term, ValueError> {
        if !r.owned() {
            return Err(path.fail("a borrowed resource handle cannot leave the guest"));
        }
        let resource = self
            .name_of(r.ty())
            .ok_or_else(|| path.fail("a resource handle of a type the instance does not export"))?;
        let table = &mut self.cx.data_mut().component.guest;
        let id = table.next;
        table.next += 1;
        let shown = term::tuple(vec![
            term::atom(TAG),
            term::uint(id),
            term::string(&resource.interface),
            term::string(&resource.name),
        ]);
        table.live.insert(
            id,
            GuestHandle {
                any: r,
                instance: self.instance,
                resource,
            },
        );
        Ok(shown)
    }
}

/// `{wasmex_resource, Id}` (or the 4-tuple the BEAM was given): the id.
fn handle_id(t: &Term) -> Option<u64> {
    match t {
        Term::Tuple(tp)
            if matches!(tp.elements.len(), 2 | 4)
                && term::as_atom(&tp.elements[0]) == Some(TAG) =>
        {
            term::as_u64(&tp.elements[1], "resource handle").ok()
        }
        _ => None,
    }
}

/// Whether a resource's own function: `[constructor]r`, `[method]r.f`, `[static]r.f`.
fn resource_function(path: &[String]) -> bool {
    path.last().is_some_and(|name| name.starts_with('['))
}

/// A call's params as values. Handles pass only to a resource's own functions, as in
/// Wasmex 0.15.1; the handles given to `own<T>` parameters leave the table.
pub fn params(
    cx: &mut Cx<'_>,
    instance: u64,
    path: &[String],
    func: Func,
    params: &[Term],
) -> Fallible<Vec<Val>> {
    let ty = func.ty(&*cx);
    if !resource_function(path) && carries_handles(&ty) {
        return Err(
            "functions that take or return resource handles are supported only as a \
                    resource's constructor, methods and static functions \
                    (Wasmex.Components.GuestResource)"
                .into(),
        );
    }
    let mut handles = GuestHandles::new(cx, instance);
    let vals = values::params_to_vals_with(&ty, params, &mut handles)?;
    handles.commit();
    Ok(vals)
}

/// A call's results as terms; each handle in them joins the table.
pub fn results(cx: &mut Cx<'_>, instance: u64, results: &[Val]) -> Fallible<Vec<Term>> {
    let mut handles = GuestHandles::new(cx, instance);
    Ok(values::vals_to_terms_with(results, &mut handles)?)
}

/// Whether a function's params or results hold resource handles.
pub fn carries_handles(func: &ComponentFunc) -> bool {
    func.params().any(|(_, ty)| has_handles(&ty)) || func.results().any(|ty| has_handles(&ty))
}

fn has_handles(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(l) => has_handles(&l.ty()),
        Type::Tuple(t) => t.types().any(|t| has_handles(&t)),
        Type::Record(r) => r.fields().any(|f| has_handles(&f.ty)),
        Type::Variant(v) => v.cases().any(|c| c.ty.as_ref().is_some_and(has_handles)),
        Type::Option(o) => has_handles(&o.ty()),
        Type::Result(r) => {
            r.ok().as_ref().is_some_and(has_handles) || r.err().as_ref().is_some_and(has_handles)
        }
        _ => false,
    }
}

/// `component_resource_drop {Ctx, InstanceId, HandleId, Timeout}`: drops a guest handle,
/// running the guest's destructor under the timeout. `ok` for a handle already gone.
pub async fn drop(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(4)?;
    let instance = term::as_u64(req.arg(1)?, "component instance id")?;
    let id = term::as_u64(req.arg(2)?, "resource handle")?;
    let timeout = parse_timeout(req.arg(3)?)?;
    let table = &cx.data().component.guest;
    let Some(handle) = table.live.get(&id) else {
        return if id < table.next {
            Ok(term::atom("ok"))
        } else {
            Err(table.gone(id))
        };
    };
    if handle.instance != instance {
        return Err(format!(
            "resource handle {id} belongs to another component instance"
        ));
    }
    let entry = cx.data().component.get(instance)?;
    if entry.running {
        return Err(super::serve::REENTERED.into());
    }
    let poisoned = cx.data().component.check_enter(Some(instance)).is_err();
    if poisoned {
        // Nothing can run in the instance any more: its handles go with it.
        cx.data_mut().component.guest.live.remove(&id);
        return Ok(term::atom("ok"));
    }
    let scope = store::enter(cx, timeout);
    if let Some(reason) = scope.stop_reason() {
        // Stopped before the destructor began: the handle stays, to be dropped again.
        store::leave(cx, scope);
        return Err(reason);
    }
    let Some(any) = cx
        .data_mut()
        .component
        .guest
        .live
        .remove(&id)
        .map(|h| h.any)
    else {
        store::leave(cx, scope);
        return Err(format!("unknown resource handle {id}"));
    };
    cx.data_mut().component.get_mut(instance)?.running = true;
    let ran = store::run_stoppable(&scope, any.resource_drop_async(&mut *cx)).await;
    store::leave(cx, scope);
    let entry = cx.data_mut().component.get_mut(instance)?;
    entry.running = false;
    match ran {
        Ok(()) => Ok(term::atom("ok")),
        Err(e) => {
            let (message, _) = describe(cx.data(), &e);
            cx.data_mut().component.fail(instance, &message);
            Err(message)
        }
    }
}
