//! Exported globals: read and write, on a store or through a waiting caller.

use crate::instance::export;
use crate::request::Export;
use crate::store::Cx;
use crate::term::{self, Fallible};
use crate::values;
use eetf::Term;
use wasmtime::{Extern, Global, Mutability};

fn global(cx: &mut Cx<'_>, name: &Export) -> Fallible<Global> {
    export(cx, name, "global", Extern::into_global)
}

/// The global's value.
pub fn get(cx: &mut Cx<'_>, name: &Export) -> Fallible<Term> {
    let g = global(cx, name)?;
    values::from_val(&g.get(&mut *cx))
}

/// Sets the global to `value`.
pub fn set(cx: &mut Cx<'_>, name: &Export, value: &Term) -> Fallible<Term> {
    let g = global(cx, name)?;
    let ty = g.ty(&*cx);
    if ty.mutability() == Mutability::Const {
        return Err("Could not set global: immutable global cannot be set".into());
    }
    let value = values::to_val(value, ty.content()).ok_or_else(|| {
        format!(
            "Cannot convert to a WebAssembly {} value.",
            values::type_name(ty.content())
        )
    })?;
    g.set(&mut *cx, value)
        .map_err(|e| format!("Could not set global: {e}"))?;
    Ok(term::atom("ok"))
}
