//! Building the WASI preview 1 context of a store from `Wasmex.Wasi.WasiOptions`.
//! Without options a store gets an empty context: no args, no env, no files, and stdio
//! that reads nothing and discards output (never the port's own stdio, which is the wire).

use crate::term::{self, Fallible};
use eetf::Term;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;

pub fn build(options: Option<&Term>) -> Fallible<WasiP1Ctx> {
    let mut builder = WasiCtxBuilder::new();
    builder.allow_blocking_current_thread(true);
    if let Some(options) = options {
        let m = term::as_map(options, "wasi options")?;
        if let Some(args) = term::map_get(m, "args") {
            for a in term::as_list(args, "wasi args")? {
                builder.arg(term::as_str(&a, "wasi arg")?);
            }
        }
        if let Some(env) = term::map_get(m, "env") {
            for (k, v) in term::as_map(env, "wasi env")? {
                builder.env(
                    term::as_str(k, "wasi env name")?,
                    term::as_str(v, "wasi env value")?,
                );
            }
        }
    }
    Ok(builder.build_p1())
}
