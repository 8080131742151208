//! WASI preview 2 for a store's components (`Wasmex.Wasi.WasiP2Options`).

use crate::protocol::Request;
use crate::store::Cx;
use crate::term::Fallible;
use eetf::Term;

/// `{Ctx, Options}`: sets the store's WASI preview 2 context.
pub fn configure(_cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(2)?;
    Err("WASI preview 2 options are not supported yet".into())
}
