//! Linear memory: size, grow, read and write, on a store or through a waiting caller.
//! A memory is named by `{InstanceId, ExportName}`.

use crate::instance::export;
use crate::request::{Data, Export};
use crate::store::Cx;
use crate::term::{self, Fallible};
use eetf::Term;
use wasmtime::{Extern, Memory};

const OUT_OF_BOUNDS: &str = "out of bounds memory access";

fn memory(cx: &mut Cx<'_>, name: &Export) -> Fallible<Memory> {
    export(cx, name, "memory", Extern::into_memory)
}

/// The byte range `[offset, offset + len)` if it lies inside the memory.
fn range(cx: &Cx<'_>, memory: &Memory, offset: u64, len: u64) -> Fallible<std::ops::Range<usize>> {
    let end = offset.checked_add(len).ok_or(OUT_OF_BOUNDS)?;
    if end > memory.data_size(cx) as u64 {
        return Err(OUT_OF_BOUNDS.into());
    }
    Ok(offset as usize..end as usize)
}

/// The size in bytes.
pub fn size(cx: &mut Cx<'_>, name: &Export) -> Fallible<Term> {
    let m = memory(cx, name)?;
    Ok(term::uint(m.data_size(&*cx) as u64))
}

/// The size in pages before growing.
pub fn grow(cx: &mut Cx<'_>, name: &Export, pages: u64) -> Fallible<Term> {
    let m = memory(cx, name)?;
    m.grow(&mut *cx, pages)
        .map(term::uint)
        .map_err(|e| format!("Failed to grow the memory: {e}."))
}

/// Reads of more than this many bytes are answered in parts of this size (see
/// [`read_reply`]).
pub const READ_PART: usize = 1 << 20;

/// The bytes at `[offset, offset + len)`, as the reply to request `id`: a frame built
/// around the bytes (one copy), not through a term.
///
/// A read of more than [`READ_PART`] bytes (the BEAM sends up to 256 MiB in one request)
/// first moves the store to the heavy runtime, then sends all but its last part as
/// `{reply_part, Id, Bytes}` frames, yielding after each: the light worker, and the pipe
/// to the BEAM, serve the host's other stores between the parts, where one frame held
/// them up for the whole transfer. The store answers nothing else meanwhile, so the parts
/// make one snapshot of the memory.
pub async fn read_reply(
    cx: &mut Cx<'_>,
    id: u64,
    name: &Export,
    offset: u64,
    len: u64,
) -> Fallible<Vec<u8>> {
    let m = memory(cx, name)?;
    let r = range(cx, &m, offset, len)?;
    crate::frame::check_read(r.len())?;
    let mut start = r.start;
    if r.len() > READ_PART {
        crate::roam::to_heavy(&cx.data().weight).await;
        let outbox = cx.data().shared.outbox.clone();
        while r.end - start > READ_PART {
            let part = start..start + READ_PART;
            outbox.send_frame(crate::frame::binary_part_frame(id, &m.data(&*cx)[part])?);
            start += READ_PART;
            tokio::task::yield_now().await;
        }
    }
    crate::frame::binary_reply_frame(id, &m.data(&*cx)[start..r.end])
}

/// Writes the first `len` bytes of the shared buffer (see `bulk.rs`), which the BEAM
/// filled, at `offset`.
pub fn write_bulk(cx: &mut Cx<'_>, name: &Export, offset: u64, len: u64) -> Fallible<Term> {
    let m = memory(cx, name)?;
    let r = range(cx, &m, offset, len)?;
    let shared = cx.data().shared.clone();
    let target = &mut m.data_mut(&mut *cx)[r];
    shared_buffer(&shared)?.read(len, |bytes| target.copy_from_slice(bytes))?;
    Ok(term::atom("ok"))
}

/// Copies `len` bytes of memory at `offset` into the shared buffer (see `bulk.rs`), for
/// the BEAM to read from there.
pub fn read_bulk(cx: &mut Cx<'_>, name: &Export, offset: u64, len: u64) -> Fallible<Term> {
    let m = memory(cx, name)?;
    let r = range(cx, &m, offset, len)?;
    let shared = cx.data().shared.clone();
    let source = &m.data(&*cx)[r];
    shared_buffer(&shared)?.write(len, |bytes| bytes.copy_from_slice(source))?;
    Ok(term::atom("ok"))
}

fn shared_buffer(shared: &crate::shared::Shared) -> Fallible<&crate::bulk::Bulk> {
    Ok(shared
        .bulk
        .as_ref()
        .ok_or("this host has no shared buffer")?)
}

/// Appends `part` to the store's staged write `write` (see `staging.rs`).
pub fn stage(cx: &mut Cx<'_>, write: u64, part: &[u8]) -> Fallible<Term> {
    cx.data_mut()
        .staging
        .add(write, part, crate::staging::CAP)?;
    Ok(term::atom("ok"))
}

/// Appends the first `len` bytes of the shared buffer (see `bulk.rs`), which the BEAM
/// filled, to the store's staged write `write`.
pub fn stage_bulk(cx: &mut Cx<'_>, write: u64, len: u64) -> Fallible<Term> {
    let shared = cx.data().shared.clone();
    let staging = &mut cx.data_mut().staging;
    shared_buffer(&shared)?.read(len, |part| staging.add(write, part, crate::staging::CAP))??;
    Ok(term::atom("ok"))
}

/// Writes what is staged for `write` at `offset`, in one step (on the heavy runtime when
/// it is more than [`READ_PART`] bytes). What was staged is gone afterwards, written or
/// not.
pub async fn write_staged(
    cx: &mut Cx<'_>,
    name: &Export,
    offset: u64,
    write: u64,
) -> Fallible<Term> {
    let bytes = cx
        .data_mut()
        .staging
        .take(write)
        .ok_or_else(|| crate::staging::unknown(write))?;
    let m = memory(cx, name)?;
    let r = range(cx, &m, offset, bytes.len() as u64)?;
    if bytes.len() > READ_PART {
        crate::roam::to_heavy(&cx.data().weight).await;
    }
    m.data_mut(&mut *cx)[r].copy_from_slice(&bytes);
    Ok(term::atom("ok"))
}

/// Writes `data` at `offset`.
pub fn write(cx: &mut Cx<'_>, name: &Export, offset: u64, data: &Data) -> Fallible<Term> {
    let m = memory(cx, name)?;
    let bytes = data.bytes();
    let r = range(cx, &m, offset, bytes.len() as u64)?;
    m.data_mut(&mut *cx)[r].copy_from_slice(bytes);
    Ok(term::atom("ok"))
}
