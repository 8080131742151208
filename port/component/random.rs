//! WASI preview 2's `get-random-bytes` and `get-insecure-random-bytes` in chunks, as
//! `wasi_random.rs` does preview 1's `random_get` (see there why): a request larger than
//! [`CHUNK`] bytes and within wasmtime-wasi's limit is made of requests of a chunk to
//! wasmtime-wasi's own functions, with a yield and an epoch tick of the request's work
//! after each. Other requests go to wasmtime-wasi whole, so the guest gets its answers.
//! The bytes are then copied into the guest's memory in one step, as wasmtime-wasi's are.

use crate::roam::Weight;
use crate::wasi_random::{CHUNK, LIMIT};
use wasmtime::component::Linker;
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::bindings::random::{insecure, random};
use wasmtime_wasi::random::WasiRandomCtx;
use wasmtime_wasi::{WasiCtxView, WasiView};

/// A store's data with WASI preview 2 that counts its request's work.
pub trait RandomHost: WasiView + Send + 'static {
    fn weight(&self) -> &Weight;
}

/// Where the bytes come from.
#[derive(Clone, Copy)]
enum Source {
    Secure,
    Insecure,
}

impl Source {
    fn take(self, random: &mut WasiRandomCtx, len: u64) -> wasmtime::Result<Vec<u8>> {
        match self {
            Source::Secure => random::Host::get_random_bytes(random, len),
            Source::Insecure => insecure::Host::get_insecure_random_bytes(random, len),
        }
    }
}

/// Puts the chunked functions in front of wasmtime-wasi's in a linker that has WASI
/// preview 2.
pub fn add_to_linker<T: RandomHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker
        .instance("wasi:random/random@0.2.12")?
        .func_wrap_async(
            "get-random-bytes",
            |mut store: StoreContextMut<'_, T>, (len,): (u64,)| {
                Box::new(async move { Ok((bytes(&mut store, len, Source::Secure).await?,)) })
            },
        )?;
    linker
        .instance("wasi:random/insecure@0.2.12")?
        .func_wrap_async(
            "get-insecure-random-bytes",
            |mut store: StoreContextMut<'_, T>, (len,): (u64,)| {
                Box::new(async move { Ok((bytes(&mut store, len, Source::Insecure).await?,)) })
            },
        )?;
    Ok(())
}

async fn bytes<T: RandomHost>(
    store: &mut StoreContextMut<'_, T>,
    len: u64,
    source: Source,
) -> wasmtime::Result<Vec<u8>> {
    if len <= u64::from(CHUNK) || len > LIMIT {
        return source.take(random_ctx(store), len);
    }
    let mut out = Vec::with_capacity(len as usize);
    loop {
        let n = (len - out.len() as u64).min(u64::from(CHUNK));
        out.extend(source.take(random_ctx(store), n)?);
        if out.len() as u64 == len {
            return Ok(out);
        }
        store.data().weight().tick();
        tokio::task::yield_now().await;
    }
}

fn random_ctx<'a, T: RandomHost>(store: &'a mut StoreContextMut<'_, T>) -> &'a mut WasiRandomCtx {
    let WasiCtxView { ctx, .. } = store.data_mut().ctx();
    ctx.random()
}

#[cfg(test)]
#[path = "random_tests.rs"]
mod tests;
