//! Linear memory: size, grow, read and write, on a store or through a waiting caller.
//! A memory is named by `{InstanceId, ExportName}`.

use crate::instance::export;
use crate::protocol::Request;
use crate::store::Cx;
use crate::term::{self, Fallible};
use eetf::Term;
use wasmtime::{Extern, Memory};

const OUT_OF_BOUNDS: &str = "out of bounds memory access";

fn memory(cx: &mut Cx<'_>, req: &Request) -> Fallible<Memory> {
    export(cx, req, "memory", Extern::into_memory)
}

/// The byte range `[offset, offset + len)` if it lies inside the memory.
fn range(
    cx: &Cx<'_>,
    memory: &Memory,
    offset: &Term,
    len: u64,
) -> Fallible<std::ops::Range<usize>> {
    let offset = term::as_u64(offset, "offset")?;
    let end = offset.checked_add(len).ok_or(OUT_OF_BOUNDS)?;
    if end > memory.data_size(cx) as u64 {
        return Err(OUT_OF_BOUNDS.into());
    }
    Ok(offset as usize..end as usize)
}

/// `{Ctx, Instance, Name}` -> size in bytes.
pub fn size(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(3)?;
    let m = memory(cx, req)?;
    Ok(term::uint(m.data_size(&*cx) as u64))
}

/// `{Ctx, Instance, Name, Pages}` -> the size in pages before growing.
pub fn grow(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(4)?;
    let m = memory(cx, req)?;
    let pages = term::as_u64(req.arg(3)?, "pages")?;
    m.grow(&mut *cx, pages)
        .map(term::uint)
        .map_err(|e| format!("Failed to grow the memory: {e}."))
}

/// `{Ctx, Instance, Name, Offset, Length}` -> binary. Answers request `req` with a frame
/// built around the bytes (one copy), not through a term.
pub fn read_reply(cx: &mut Cx<'_>, req: &Request) -> Fallible<Vec<u8>> {
    req.expect_arity(5)?;
    let m = memory(cx, req)?;
    let len = term::as_u64(req.arg(4)?, "length")?;
    let r = range(cx, &m, req.arg(3)?, len)?;
    crate::frame::binary_reply_frame(req.id, &m.data(&*cx)[r])
}

/// `{Ctx, Instance, Name, Offset, Length}` -> ok: writes the first `Length` bytes of the
/// shared buffer (see `bulk.rs`), which the BEAM filled.
pub fn write_bulk(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    let (m, len, r) = bulk_range(cx, req)?;
    let shared = cx.data().shared.clone();
    let target = &mut m.data_mut(&mut *cx)[r];
    shared_buffer(&shared)?.read(len, |bytes| target.copy_from_slice(bytes))?;
    Ok(term::atom("ok"))
}

/// `{Ctx, Instance, Name, Offset, Length}` -> ok: copies `Length` bytes of memory into the
/// shared buffer (see `bulk.rs`), for the BEAM to read from there.
pub fn read_bulk(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    let (m, len, r) = bulk_range(cx, req)?;
    let shared = cx.data().shared.clone();
    let source = &m.data(&*cx)[r];
    shared_buffer(&shared)?.write(len, |bytes| bytes.copy_from_slice(source))?;
    Ok(term::atom("ok"))
}

/// The memory, length and byte range a bulk request names.
fn bulk_range(cx: &mut Cx<'_>, req: &Request) -> Fallible<(Memory, u64, std::ops::Range<usize>)> {
    req.expect_arity(5)?;
    let m = memory(cx, req)?;
    let len = term::as_u64(req.arg(4)?, "length")?;
    let r = range(cx, &m, req.arg(3)?, len)?;
    Ok((m, len, r))
}

fn shared_buffer(shared: &crate::shared::Shared) -> Fallible<&crate::bulk::Bulk> {
    Ok(shared
        .bulk
        .as_ref()
        .ok_or("this host has no shared buffer")?)
}

/// `{Ctx, Instance, Name, Offset, Binary}` -> ok.
pub fn write(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    req.expect_arity(5)?;
    let m = memory(cx, req)?;
    let bytes = req.bytes(4, "data")?;
    let r = range(cx, &m, req.arg(3)?, bytes.len() as u64)?;
    m.data_mut(&mut *cx)[r].copy_from_slice(bytes);
    Ok(term::atom("ok"))
}
