//! What the port's own WASI preview 1 functions share: those it puts in front of
//! wasmtime-wasi's (`wasi_fds.rs`, `wasi_readdir.rs`) reach the caller's memory and store
//! data as wasmtime-wasi's generated functions do, and answer with an errno.

use wasmtime::{AsContextMut, Caller, Extern};
use wasmtime_wasi::p1::types;

/// The caller's memory (its `memory` export), its store's data, and the fuel that bounds
/// the work of one WASI call (to give the WASI context, as wasmtime-wasi's own functions
/// do).
pub fn guest<'a, T: 'static>(
    caller: &'a mut Caller<'_, T>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut T, usize)> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg("missing required memory export"));
    };
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (bytes, data) = memory.data_and_store_mut(caller);
    Ok((bytes, data, fuel))
}

/// The errno of an error of wasmtime-wasi's, or the trap it stands for.
pub fn errno(e: types::Error) -> wasmtime::Result<i32> {
    Ok(e.downcast()? as i32)
}
