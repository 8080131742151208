//! `random_get` in chunks. wasmtime-wasi's fills up to 64 MiB in one step, which neither
//! a deadline nor the move of a computing store to the heavy runtime (`roam.rs`) can
//! interrupt: about 110 ms on the project's 2-vCPU VM, during which every other store
//! of the host waits too. This one, put in front of it, fills a large buffer [`CHUNK`]
//! bytes at a time through wasmtime-wasi's own, and yields between chunks, counting each
//! chunk as an epoch tick of the request's work: the call then stops at its deadline
//! within a chunk, other stores run between chunks, and a store that keeps asking for
//! random bytes moves to the heavy runtime as one that computes does.
//!
//! What the guest sees is wasmtime-wasi's answer: a request larger than its limit, or
//! one outside the guest's memory, goes to wasmtime-wasi whole.

use crate::roam::Weight;
use crate::wasi_wrap::{errno, guest};
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::Errno;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wasmtime_wasi::p1::WasiP1Ctx;
use wiggle::{GuestMemory, GuestPtr};

/// Bytes filled between two yields: under 2 ms of wasmtime-wasi's work on the project's VM.
pub const CHUNK: u32 = 1 << 20;

/// wasmtime-wasi's limit on one request (its `max_random_size`, left at its default).
pub const LIMIT: u64 = 64 << 20;

/// A store's data that holds a WASI context and counts its request's work.
pub trait RandomHost: Send + 'static {
    fn wasi_and_weight(&mut self) -> (&mut WasiP1Ctx, &Weight);
}

/// Puts the chunked `random_get` in front of wasmtime-wasi's in a linker that has WASI.
pub fn add_to_linker<T: RandomHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "random_get",
        |mut caller: Caller<'_, T>, (buf, len): (i32, i32)| {
            Box::new(async move { random_get(&mut caller, buf as u32, len as u32).await })
        },
    )?;
    Ok(())
}

async fn random_get<T: RandomHost>(
    caller: &mut Caller<'_, T>,
    buf: u32,
    len: u32,
) -> wasmtime::Result<i32> {
    let mut done = 0;
    loop {
        let (bytes, data, fuel) = guest(caller)?;
        let whole = done == 0 && !chunked(buf, len, bytes.len());
        let n = if whole { len } else { (len - done).min(CHUNK) };
        let (wasi, weight) = data.wasi_and_weight();
        wasi.set_hostcall_fuel(fuel);
        let mut memory = GuestMemory::Unshared(bytes);
        if let Err(e) = wasi.random_get(&mut memory, GuestPtr::new(buf + done), n) {
            return errno(e);
        }
        done += n;
        if done == len {
            return Ok(Errno::Success as i32);
        }
        weight.tick();
        tokio::task::yield_now().await;
    }
}

/// Whether a request for `len` bytes at `buf` is filled in chunks: one larger than a
/// chunk, within wasmtime-wasi's limit and within the guest's memory of `memory_len`
/// bytes.
fn chunked(buf: u32, len: u32, memory_len: usize) -> bool {
    len > CHUNK && u64::from(len) <= LIMIT && u64::from(buf) + u64::from(len) <= memory_len as u64
}

#[cfg(test)]
#[path = "wasi_random_tests.rs"]
mod tests;
