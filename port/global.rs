//! Exported globals: read and write, on a store or through a waiting caller.

use crate::instance::export;
use crate::protocol::Request;
use crate::store::Cx;
use crate::term::{self, Fallible};
use crate::values;
use eetf::Term;
use wasmtime::{Extern, Global, Mutability};

fn global(cx: &mut Cx<'_>, req: &Request) -> Fallible<Global> {
    export(cx, req, "global", Extern::into_global)
}

/// `{Ctx, Instance, Name}` -> value.
pub fn get(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(3)?;
    let g = global(cx, req)?;
    values::from_val(&g.get(&mut *cx))
}

/// `{Ctx, Instance, Name, Value}` -> ok.
pub fn set(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(4)?;
    let g = global(cx, req)?;
    let ty = g.ty(&*cx);
    if ty.mutability() == Mutability::Const {
        return Err("Could not set global: immutable global cannot be set".into());
    }
    let value = values::to_val(req.arg(3)?, ty.content()).ok_or_else(|| {
        format!(
            "Cannot convert to a WebAssembly {} value.",
            values::type_name(ty.content())
        )
    })?;
    g.set(&mut *cx, value)
        .map_err(|e| format!("Could not set global: {e}"))?;
    Ok(term::atom("ok"))
}
