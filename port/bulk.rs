//! A buffer shared with the BEAM for large memory reads and writes: a memfd of this
//! process, which the BEAM opens through `/proc/<pid>/fd/<fd>`. For a write the BEAM puts
//! the bytes into the file and the request names only their length; for a read the port
//! copies the bytes into the buffer and the BEAM reads them from the file after the reply.
//! Through the pipe, a megabyte did not fit at once (the pipe holds 1 MiB, the frame a
//! header more), so every such transfer waited once for the other side to drain it, and
//! the bytes were copied into the pipe, out of it and, for reads, decoded once more.
//!
//! One buffer per host; the BEAM lets one transfer use it at a time (`Wasmex.Host.Bulk`),
//! and the others go through the pipe. The port's own accesses also take a lock, so
//! Rust's aliasing rules hold even if the BEAM broke that rule.

use crate::term::Fallible;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

/// The buffer's size: transfers up to this size can use it.
pub const SIZE: usize = 4 << 20;

pub struct Bulk {
    file: OwnedFd,
    /// The mapping's address, behind the lock every access takes.
    map: Mutex<*mut u8>,
}

// SAFETY: the mapping lives as long as the process (it is never unmapped), and every
// access to it goes through the mutex.
unsafe impl Send for Bulk {}
// SAFETY: as above.
unsafe impl Sync for Bulk {}

impl Bulk {
    pub fn create() -> Fallible<Bulk> {
        let file = sealed_memfd(c"wasmex-bulk", SIZE)?;
        let map = map_shared(&file, SIZE)?;
        Ok(Bulk {
            file,
            map: Mutex::new(map),
        })
    }

    /// The file descriptor the BEAM opens (as `/proc/<pid>/fd/<fd>`).
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Runs `f` on the first `len` bytes of the buffer, which the BEAM filled (a write).
    pub fn read<T>(&self, len: u64, f: impl FnOnce(&[u8]) -> T) -> Fallible<T> {
        let len = fits(len)?;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the mapping is SIZE >= len bytes long, lives as long as `self`, and the
        // lock held keeps this the only access from this process.
        Ok(f(unsafe { std::slice::from_raw_parts(*map, len) }))
    }

    /// Runs `f` on the first `len` bytes of the buffer, for the BEAM to read (a read).
    pub fn write<T>(&self, len: u64, f: impl FnOnce(&mut [u8]) -> T) -> Fallible<T> {
        let len = fits(len)?;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as in `read`; the mapping is writable.
        Ok(f(unsafe { std::slice::from_raw_parts_mut(*map, len) }))
    }
}

/// A memfd of `len` zeroed bytes whose size is sealed: a file shortened by whoever opens
/// it would make this process's next access to a mapping past its end fail with SIGBUS.
pub fn sealed_memfd(name: &CStr, len: usize) -> Fallible<OwnedFd> {
    // SAFETY: a valid C string; the returned fd is owned here from now on.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain calls on our own fd.
    unsafe {
        if libc::ftruncate(fd, len as libc::off_t) != 0 {
            return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
        }
        if libc::fcntl(
            fd,
            libc::F_ADD_SEALS,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
        ) != 0
        {
            return Err(format!("sealing: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(file)
}

/// Maps the first `len` bytes of `file` shared and writable, for the rest of the
/// process's life (never unmapped). The file must be at least that long.
pub fn map_shared(file: &OwnedFd, len: usize) -> Fallible<*mut u8> {
    // SAFETY: maps a file we hold; the caller vouches for its length.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    Ok(map as *mut u8)
}

fn fits(len: u64) -> Fallible<usize> {
    if len > SIZE as u64 {
        return Err(format!(
            "{len} bytes do not fit the shared buffer of {SIZE}"
        ));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    #[test]
    fn what_is_written_to_the_file_is_read_from_the_buffer() {
        let bulk = Bulk::create().unwrap();
        let path = format!("/proc/self/fd/{}", bulk.fd());
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all(b"through the file").unwrap();
        assert_eq!(bulk.read(16, |b| b.to_vec()).unwrap(), b"through the file");
    }

    #[test]
    fn what_is_written_to_the_buffer_is_read_from_the_file() {
        let bulk = Bulk::create().unwrap();
        bulk.write(12, |b| b.copy_from_slice(b"to the file!"))
            .unwrap();
        let mut read = vec![0; 12];
        let path = format!("/proc/self/fd/{}", bulk.fd());
        let file = std::fs::File::open(path).unwrap();
        file.read_exact_at(&mut read, 0).unwrap();
        assert_eq!(read, b"to the file!");
    }

    #[test]
    fn the_file_cannot_be_shortened() {
        let bulk = Bulk::create().unwrap();
        let path = format!("/proc/self/fd/{}", bulk.fd());
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        assert!(file.set_len(0).is_err());
        assert_eq!(bulk.read(4, |b| b.len()).unwrap(), 4);
    }

    #[test]
    fn a_length_past_the_buffer_is_refused() {
        let bulk = Bulk::create().unwrap();
        let past = SIZE as u64 + 1;
        assert!(bulk.read(past, |_| ()).unwrap_err().contains("do not fit"));
        assert!(bulk.write(past, |_| ()).unwrap_err().contains("do not fit"));
    }
}
