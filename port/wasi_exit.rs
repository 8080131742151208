//! `proc_exit` with any exit code.
//!
//! wasmtime-wasi's `proc_exit` ends the program with [`I32Exit`] only for codes below 126
//! (the codes a POSIX shell leaves to programs) and makes any other code a trap whose
//! message does not carry the code, so `exit(255)` or Python's `sys.exit(256)` came out
//! as an error string. This module puts its own `proc_exit` in front of wasmtime-wasi's:
//! every code ends the program with [`I32Exit`], which a call answers as
//! `{:error, {:exit, code}}` (0: `{:ok, []}`), the code read as WASI's unsigned
//! `exitcode`.

use wasmtime::Linker;
use wasmtime_wasi::I32Exit;

/// Puts `proc_exit` for every code in front of wasmtime-wasi's in a linker that has WASI.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |code: i32| -> wasmtime::Result<()> { Err(wasmtime::Error::new(I32Exit(code))) },
    )?;
    Ok(())
}

/// The exit code a program gave `proc_exit`, as WASI's unsigned `exitcode`.
pub fn code(exit: &I32Exit) -> u32 {
    exit.0 as u32
}
