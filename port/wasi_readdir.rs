//! Directory listings in close to linear time.
//!
//! wasmtime-wasi's `fd_readdir` reads the whole directory, and looks up every entry's
//! metadata, on each call, then skips to the caller's cookie. A program reads a directory
//! a buffer at a time (wasi-libc's `readdir` asks for 4 KiB, about 120 entries), so
//! listing `n` entries cost about `n² / 120` lookups: 8,000 files took 30 s.
//!
//! This module puts its own `fd_readdir` in front. wasmtime-wasi's output is the entries'
//! bytes one after the other, cut at the caller's buffer; so a read has wasmtime-wasi
//! write up to [`MAX_LISTING`] bytes of the listing from its cookie into a buffer of the
//! port's, once, keeps that with the descriptor and the directory's device and inode, and
//! answers the reads that follow from it, as long as it holds all they ask for. A read
//! past it fills it again from there: one pass over the directory per megabyte of
//! listing (about 25,000 entries), not per 4 KiB. A read at cookie 0 (a listing's start,
//! or a rewind) reads the directory afresh; later ones see the listing as it was then,
//! which POSIX allows for entries added or removed meanwhile. A buffer larger than
//! [`MAX_LISTING`] goes to wasmtime-wasi as it is. A store keeps one listing at a time,
//! and lets go of it once a read has seen its end.
//!
//! Filling the listing awaits wasmtime-wasi as before, so a deadline still stops it.

use crate::wasi_wrap::{errno, guest};
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wasmtime_wasi::p1::WasiP1Ctx;
use wiggle::{GuestMemory, GuestPtr};

/// The most bytes of a listing a store keeps (about 25,000 entries of short names).
pub const MAX_LISTING: usize = 1 << 20;

/// The size of an entry's header in the listing (`dirent`: next cookie, inode, name
/// length, type, padding), which its name follows.
const DIRENT: usize = 24;

/// Part of a directory's listing as wasmtime-wasi wrote it from cookie `first` on, and
/// where each complete entry starts in it.
#[derive(Debug, Default)]
pub struct Listing {
    fd: u32,
    dir: (u64, u64),
    first: u64,
    bytes: Vec<u8>,
    starts: Vec<usize>,
    /// Whether the listing goes to the directory's end (it did not fill its buffer).
    whole: bool,
}

impl Listing {
    /// Splits `bytes`, wasmtime-wasi's output of `used` bytes into a buffer of `cap` from
    /// cookie `first`, into its complete entries.
    fn new(at: Place, mut bytes: Vec<u8>, used: usize, cap: usize) -> Listing {
        bytes.truncate(used);
        let mut starts = Vec::new();
        let mut start = 0;
        while start + DIRENT <= bytes.len() {
            let namlen = u32::from_le_bytes([
                bytes[start + 16],
                bytes[start + 17],
                bytes[start + 18],
                bytes[start + 19],
            ]) as usize;
            let end = start + DIRENT + namlen;
            if end > bytes.len() {
                break;
            }
            starts.push(start);
            start = end;
        }
        bytes.truncate(start);
        bytes.shrink_to_fit();
        Listing {
            fd: at.fd,
            dir: at.dir,
            first: at.cookie,
            bytes,
            starts,
            whole: used < cap,
        }
    }

    /// The answer to a read at `at` into a buffer of `len` bytes, as wasmtime-wasi would
    /// give it; `None` when this part of the listing cannot give all of it.
    fn answer(&self, at: Place, len: usize) -> Option<&[u8]> {
        if (at.fd, at.dir) != (self.fd, self.dir) || at.cookie < self.first {
            return None;
        }
        let index = usize::try_from(at.cookie - self.first).ok()?;
        let from = match self.starts.get(index) {
            Some(&start) => &self.bytes[start..],
            None if index == self.starts.len() => &[],
            None => return None,
        };
        (self.whole || from.len() >= len).then(|| &from[..from.len().min(len)])
    }
}

/// Where a read is: the descriptor, the directory behind it (device, inode), the cookie.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Place {
    fd: u32,
    dir: (u64, u64),
    cookie: u64,
}

/// A store's data that holds a WASI context and a kept listing (the store's `StoreData`).
pub trait ListingHost: Send + 'static {
    fn wasi_and_listing(&mut self) -> (&mut WasiP1Ctx, &mut Option<Listing>);
}

/// `fd_readdir`'s parameters, as the guest passes them.
type ReaddirArgs = (i32, i32, i32, i64, i32);

/// Puts the listing-keeping `fd_readdir` in front of wasmtime-wasi's in a linker that has
/// WASI.
pub fn add_to_linker<T: ListingHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "fd_readdir",
        |mut caller: Caller<'_, T>, args: ReaddirArgs| {
            Box::new(async move { fd_readdir(&mut caller, args).await })
        },
    )?;
    Ok(())
}

async fn fd_readdir<T: ListingHost>(
    caller: &mut Caller<'_, T>,
    (fd, buf, buf_len, cookie, used_at): ReaddirArgs,
) -> wasmtime::Result<i32> {
    let (bytes, data, fuel) = guest(caller)?;
    let (wasi, kept) = data.wasi_and_listing();
    wasi.set_hostcall_fuel(fuel);
    let mut guest = GuestMemory::Unshared(bytes);
    let fd = fd as u32;
    let cookie = cookie as u64;
    let (buf, buf_len) = (buf as u32, buf_len as u32);

    let at = match directory(wasi, fd).await {
        Ok(dir) => Place { fd, dir, cookie },
        Err(e) => return errno(e),
    };
    if cookie == 0 {
        // A listing's start, or a rewind: read the directory afresh.
        *kept = None;
    }
    let len = buf_len as usize;
    // A buffer larger than a kept listing is one pass of wasmtime-wasi's anyway.
    if len <= MAX_LISTING && kept.as_ref().and_then(|l| l.answer(at, len)).is_none() {
        *kept = None;
        match fill(wasi, at).await {
            Ok(listing) => *kept = Some(listing),
            Err(e) => return errno(e),
        }
    }
    let used = match kept.as_ref().and_then(|l| l.answer(at, len)) {
        Some(bytes) => {
            if let Err(e) = write(&mut guest, buf, bytes) {
                return errno(e);
            }
            let n = bytes.len() as u32;
            if n < buf_len {
                // The caller has seen the listing's end: it is done with.
                *kept = None;
            }
            n
        }
        None => {
            let at = GuestPtr::new(buf);
            match wasi
                .fd_readdir(&mut guest, types::Fd::from(fd), at, buf_len, cookie)
                .await
            {
                Ok(used) => used,
                Err(e) => return errno(e),
            }
        }
    };
    match guest.write(GuestPtr::<types::Size>::new(used_at as u32), used) {
        Ok(()) => Ok(Errno::Success as i32),
        Err(e) => errno(types::Error::from(e)),
    }
}

/// The device and inode of the directory behind `fd` (wasmtime-wasi's errors for a
/// descriptor that is not an open directory come later, from its `fd_readdir`).
async fn directory(wasi: &mut WasiP1Ctx, fd: u32) -> Result<(u64, u64), types::Error> {
    let mut none = GuestMemory::Unshared(&mut []);
    let stat = wasi.fd_filestat_get(&mut none, types::Fd::from(fd)).await?;
    Ok((stat.dev, stat.ino))
}

/// The listing of the directory at `at`, as wasmtime-wasi writes it from its cookie on,
/// up to [`MAX_LISTING`] bytes.
async fn fill(wasi: &mut WasiP1Ctx, at: Place) -> Result<Listing, types::Error> {
    let mut bytes = vec![0u8; MAX_LISTING];
    let used = {
        let mut memory = GuestMemory::Unshared(&mut bytes);
        let fd = types::Fd::from(at.fd);
        wasi.fd_readdir(
            &mut memory,
            fd,
            GuestPtr::new(0),
            MAX_LISTING as u32,
            at.cookie,
        )
        .await?
    };
    Ok(Listing::new(at, bytes, used as usize, MAX_LISTING))
}

fn write(guest: &mut GuestMemory<'_>, at: u32, bytes: &[u8]) -> Result<(), types::Error> {
    let len = u32::try_from(bytes.len()).map_err(|_| Errno::Overflow)?;
    guest.copy_from_slice(bytes, GuestPtr::<[u8]>::new((at, len)))?;
    Ok(())
}

#[cfg(test)]
#[path = "wasi_readdir_tests.rs"]
mod tests;
