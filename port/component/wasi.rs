//! WASI preview 2 for a store's components, from `Wasmex.Wasi.WasiP2Options`. The store is
//! made with `{p2, Options}` as its WASI options (see `store::prepare`); `Options` is the
//! map core WASI takes (`wasi.rs`: args, env, preopens, stdin/stdout/stderr as pipes or
//! messages, `max_open_files`), checked the same way by the BEAM, plus:
//!
//! - `inherit_stdout`, `inherit_stderr`: without a stream of its own, the output goes to
//!   the port's stderr (the BEAM node's stderr). The port's stdout is the wire: nothing
//!   else ever writes there. Stdin is never inherited (the port's stdin is the wire too).
//!
//! The same sandbox as preview 1: only the preopened directories, read-only where asked
//! (wasmtime keeps `..` and absolute paths inside them); the streams are the same bounded
//! pipe and message streams (`stdio.rs`), whose waits the call's deadline stops. Open
//! files are bounded by the resource table's capacity (the preopens, the streams and
//! `max_open_files`, plus room for transient entries): past it the guest traps.

use super::state::{ComponentState, P2};
use crate::term::{self, Fallible};
use crate::wasi::{Stdio, DEFAULT_MAX_OPEN_FILES};
use eetf::Term;
use std::collections::HashMap;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;

/// Room in the resource table for the streams and entries that live during one call.
const TRANSIENT: usize = 64;

/// The options of `{p2, Options}`, the WASI term of a store made for components.
pub fn p2_options(wasi: &Term) -> Option<&Term> {
    let parts = term::as_tuple(wasi, 2, "wasi").ok()?;
    (term::as_atom(&parts[0]) == Some("p2")).then(|| &parts[1])
}

/// The component state of a store made with `{p2, Options}`: its WASI context.
pub fn build(options: &Term, stdio: Stdio) -> Fallible<ComponentState> {
    let m = term::as_map(options, "wasi p2 options")?;
    let mut builder = WasiCtxBuilder::new();
    let preopens = crate::wasi::args_env_preopens(&mut builder, m)?;
    streams(&mut builder, m, stdio)?;
    let max_open_files = match term::map_u64(m, "max_open_files")? {
        Some(0) => return Err("max_open_files must be at least 1, got: 0".into()),
        Some(n) => n,
        None => DEFAULT_MAX_OPEN_FILES,
    };
    let mut table = ResourceTable::new();
    let held = preopens + 3 + usize::try_from(max_open_files).unwrap_or(usize::MAX);
    table.set_max_capacity(held.saturating_add(TRANSIENT));
    let mut state = ComponentState::default();
    state.set_wasi(P2 {
        ctx: builder.build(),
        table,
    })?;
    Ok(state)
}

/// The streams of core WASI (bounded, buffered output, `output.rs`); without a stream of
/// its own, stdout or stderr goes to the port's stderr when inherited.
fn streams(builder: &mut WasiCtxBuilder, m: &HashMap<Term, Term>, stdio: Stdio) -> Fallible<()> {
    let (stdout, stderr) = crate::wasi::streams(builder, m, stdio)?;
    if !stdout && term::map_bool(m, "inherit_stdout")? {
        builder.stdout(std::io::stderr());
    }
    if !stderr && term::map_bool(m, "inherit_stderr")? {
        builder.stderr(std::io::stderr());
    }
    Ok(())
}
