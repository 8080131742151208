//! Resources a component imports and the host implements in Elixir
//! (`Wasmex.Components.HostResource`).
//!
//! Each one is defined in the linker with a resource type of its own
//! (`ResourceType::host_dynamic`, one number per `interface#name` in the port). The Elixir
//! term behind a handle stays in the BEAM, in a table of the process that runs the
//! instance's callbacks; the guest's handle holds only the row's id (its `rep`). So:
//!
//! - in an import's params a handle is `{wasmex_resource, own | borrow, Id}` (an owned one
//!   moves to the host: its row is the callback's now, and no drop follows);
//! - an import returns a new handle as `{wasmex_resource, Id}`;
//! - the guest dropping an owned handle calls `[resource-drop]Name` of the interface in
//!   Elixir with `[Id]`.

use super::path::{Path, ValueError};
use super::resources::{Handles, TAG};
use crate::callback;
use crate::store::{Cx, StoreData};
use crate::term::{self, Fallible};
use eetf::Term;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use wasmtime::component::types::Type;
use wasmtime::component::{LinkerInstance, ResourceAny, ResourceDynamic, ResourceType, Val};

/// How many distinct host resource types the port defines at most.
const MAX_TYPES: usize = 4096;

fn types() -> std::sync::MutexGuard<'static, Vec<String>> {
    static TYPES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    TYPES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The number of the host resource type `interface#name` (the same for every store).
pub fn type_number(interface: &str, name: &str) -> Fallible<u32> {
    let key = format!("{interface}#{name}");
    let mut types = types();
    if let Some(i) = types.iter().position(|k| *k == key) {
        return Ok(i as u32);
    }
    if types.len() >= MAX_TYPES {
        return Err(format!(
            "too many host resource types (at most {MAX_TYPES}): cannot define {key}"
        ));
    }
    types.push(key);
    Ok(types.len() as u32 - 1)
}

/// The number of a host resource type this module defined, if `ty` is one.
fn number_of(ty: ResourceType) -> Option<u32> {
    let count = types().len() as u32;
    (0..count).find(|i| ResourceType::host_dynamic(*i) == ty)
}

/// Defines resource `name` in `scope` (the interface `interface`, `""` for the world):
/// the guest dropping an owned handle calls Elixir through `handler`.
pub fn define(
    scope: &mut LinkerInstance<'_, StoreData>,
    interface: &str,
    name: &str,
    handler: Arc<Vec<u8>>,
) -> wasmtime::Result<()> {
    let number = type_number(interface, name).map_err(wasmtime::Error::msg)?;
    let namespace: Arc<str> = interface.into();
    let drop_name: Arc<str> = format!("[resource-drop]{name}").into();
    scope.resource_async(
        name,
        ResourceType::host_dynamic(number),
        move |mut cx, rep| {
            let (handler, namespace, drop_name) =
                (handler.clone(), namespace.clone(), drop_name.clone());
            Box::new(async move {
                let args = term::list(vec![term::uint(rep.into())]);
                callback::call_beam(&mut cx, &handler, &namespace, &drop_name, args)
                    .await
                    .map(|_| ())
                    .map_err(|e| wasmtime::Error::msg(format!("{namespace}#{drop_name}: {e}")))
            })
        },
    )
}

/// The handles of an import call: host resources only.
pub struct HostHandles<'c, 'a> {
    cx: &'c mut Cx<'a>,
    /// Handles made for the import's result, to release should the rest fail.
    made: Vec<ResourceAny>,
}

impl<'c, 'a> HostHandles<'c, 'a> {
    pub fn new(cx: &'c mut Cx<'a>) -> Self {
        HostHandles {
            cx,
            made: Vec::new(),
        }
    }

    /// Releases the handles made for a result that did not convert as a whole: the guest
    /// never got them.
    pub async fn release(self) {
        for any in self.made {
            // Without a destructor attached: only the store's entry goes.
            let _ = any.resource_drop_async(&mut *self.cx).await;
        }
    }
}

impl Handles for HostHandles<'_, '_> {
    fn lower(&mut self, t: &Term, ty: &Type, path: &Path) -> Result<Val, ValueError> {
        let Type::Own(resource) = ty else {
            return Err(path.fail("an import cannot return a borrowed resource handle"));
        };
        let number = number_of(*resource).ok_or_else(|| {
            path.fail("an import can return only handles of resources the host implements")
        })?;
        let id = match t {
            Term::Tuple(tp)
                if tp.elements.len() == 2 && term::as_atom(&tp.elements[0]) == Some(TAG) =>
            {
                term::as_u64(&tp.elements[1], "handle")
                    .ok()
                    .and_then(|id| u32::try_from(id).ok())
            }
            _ => None,
        }
        .ok_or_else(|| path.expected("a host resource handle", t))?;
        let any = ResourceDynamic::new_own(id, number)
            .try_into_resource_any(&mut *self.cx)
            .map_err(|e| path.fail(format!("{e:#}")))?;
        self.made.push(any);
        Ok(Val::Resource(any))
    }

    fn lift(&mut self, r: ResourceAny, path: &Path) -> Result<Term, ValueError> {
        if number_of(r.ty()).is_none() {
            return Err(path.fail("guest resource handles cannot be passed to an import"));
        }
        let owned = r.owned();
        let handle = ResourceDynamic::try_from_resource_any(r, &mut *self.cx)
            .map_err(|e| path.fail(format!("{e:#}")))?;
        Ok(term::tuple(vec![
            term::atom(TAG),
            term::atom(if owned { "own" } else { "borrow" }),
            term::uint(handle.rep().into()),
        ]))
    }
}
