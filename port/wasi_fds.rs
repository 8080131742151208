//! A budget of open files per WASI store.
//!
//! Every file or directory a WASI program opens holds a descriptor of the port process, and
//! all the stores of a host share the process's descriptors. Without a budget, one guest
//! opening files in a loop would take them all, and the other stores of its host could no
//! longer preopen a directory or start a compile child. So each store may hold at most
//! `max_open_files` (`Wasmex.Wasi.WasiOptions`) besides its standard streams and preopened
//! directories; an open past that fails inside the program with `EMFILE`, as at the
//! operating system's own limit, and nobody else notices.
//!
//! wasmtime-wasi has no such limit, so this module puts its own `path_open` (the only
//! preview 1 function that gives a program a new descriptor: `sock_accept` is not
//! implemented) in front of wasmtime-wasi's. It counts what the store's resource table
//! holds, where wasmtime-wasi keeps every open file, directory and stream, and calls
//! wasmtime-wasi's implementation with the caller's memory only when there is room. The
//! table's own capacity, set a little above the budget in `wasi.rs`, backs this up.

use crate::wasi_wrap::{errno, guest};
use wasmtime::{Caller, Linker};
use wasmtime_wasi::p1::types::{self, Errno};
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiView;
use wiggle::{GuestMemory, GuestPtr};

/// What a store holds before its program opens anything: stdin, stdout and stderr.
pub const STDIO: usize = 3;

/// The open-file budget of a store: how many table entries its program may fill.
#[derive(Debug, Default, Clone, Copy)]
pub struct FdBudget {
    /// Entries the store's table may hold when `path_open` is asked for another.
    pub max_entries: usize,
}

/// A store's data that holds a WASI context and its budget (the store's `StoreData`).
pub trait FdHost: Send + 'static {
    fn wasi_and_budget(&mut self) -> (&mut WasiP1Ctx, FdBudget);
}

/// `path_open`'s parameters, as the guest passes them.
type PathOpenArgs = (i32, i32, i32, i32, i32, i64, i64, i32, i32);

/// Puts the budgeted `path_open` in front of wasmtime-wasi's in a linker that has WASI.
pub fn add_to_linker<T: FdHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "path_open",
        |mut caller: Caller<'_, T>, args: PathOpenArgs| {
            Box::new(async move { path_open(&mut caller, args).await })
        },
    )?;
    Ok(())
}

async fn path_open<T: FdHost>(
    caller: &mut Caller<'_, T>,
    args: PathOpenArgs,
) -> wasmtime::Result<i32> {
    let (dirfd, dirflags, path, path_len, oflags, rights, inheriting, fdflags, opened) = args;
    let (bytes, data, fuel) = guest(caller)?;
    let (wasi, budget) = data.wasi_and_budget();
    if open_entries(wasi) >= budget.max_entries {
        return Ok(Errno::Mfile as i32);
    }
    wasi.set_hostcall_fuel(fuel);
    let mut memory = GuestMemory::Unshared(bytes);
    let lifted = (|| {
        Ok::<_, wiggle::GuestError>((
            types::Lookupflags::try_from(dirflags)?,
            types::Oflags::try_from(oflags)?,
            types::Rights::try_from(rights)?,
            types::Rights::try_from(inheriting)?,
            types::Fdflags::try_from(fdflags)?,
        ))
    })();
    let (dirflags, oflags, rights, inheriting, fdflags) = match lifted {
        Ok(lifted) => lifted,
        Err(e) => return errno(types::Error::from(e)),
    };
    let path = GuestPtr::<str>::new((path as u32, path_len as u32));
    let result = wasi
        .path_open(
            &mut memory,
            types::Fd::from(dirfd as u32),
            dirflags,
            path,
            oflags,
            rights,
            inheriting,
            fdflags,
        )
        .await;
    match result {
        Ok(fd) => match memory.write(GuestPtr::<types::Fd>::new(opened as u32), fd) {
            Ok(()) => Ok(Errno::Success as i32),
            Err(e) => errno(types::Error::from(e)),
        },
        Err(e) => errno(e),
    }
}

/// The entries the store's resource table holds now: its streams, directories and files.
fn open_entries(wasi: &mut WasiP1Ctx) -> usize {
    wasi.ctx().table.iter_mut().count()
}
