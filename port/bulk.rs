//! A buffer shared with the BEAM for large memory writes. The bytes of a write go into
//! this process's memfd (the BEAM opens it through `/proc/<pid>/fd/<fd>`) instead of
//! through the pipe, and the request that follows names only their length: the pipe held
//! a megabyte write but for its frame's header, so every such write waited once for the
//! port to drain it, and the bytes were copied into the pipe and out of it.
//!
//! One buffer per host; the BEAM lets one write use it at a time (`Wasmex.Memory`), and
//! the others go through the pipe.

use crate::term::Fallible;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The buffer's size: writes up to this size can use it.
pub const SIZE: usize = 4 << 20;

pub struct Bulk {
    file: OwnedFd,
    map: *const u8,
}

// SAFETY: the mapping is read-only here and lives as long as the process (never unmapped).
unsafe impl Send for Bulk {}
// SAFETY: as above; reads of it are plain memory reads.
unsafe impl Sync for Bulk {}

impl Bulk {
    pub fn create() -> Fallible<Bulk> {
        // SAFETY: a valid C string; the returned fd is owned here from now on.
        let fd = unsafe { libc::memfd_create(c"wasmex-bulk".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain calls on our own fd; the mapping's length is the file's size.
        let map = unsafe {
            if libc::ftruncate(fd, SIZE as libc::off_t) != 0 {
                return Err(format!("ftruncate: {}", std::io::Error::last_os_error()));
            }
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Bulk {
            file,
            map: map as *const u8,
        })
    }

    /// The file descriptor the BEAM opens (as `/proc/<pid>/fd/<fd>`).
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// The first `len` bytes of the buffer.
    pub fn bytes(&self, len: u64) -> Fallible<&[u8]> {
        if len > SIZE as u64 {
            return Err(format!(
                "{len} bytes do not fit the shared buffer of {SIZE}"
            ));
        }
        // SAFETY: the mapping is SIZE bytes long and lives as long as `self`.
        Ok(unsafe { std::slice::from_raw_parts(self.map, len as usize) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn what_is_written_to_the_file_is_read_from_the_buffer() {
        let bulk = Bulk::create().unwrap();
        let path = format!("/proc/self/fd/{}", bulk.fd());
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.write_all(b"through the file").unwrap();
        assert_eq!(bulk.bytes(16).unwrap(), b"through the file");
    }

    #[test]
    fn a_length_past_the_buffer_is_refused() {
        let bulk = Bulk::create().unwrap();
        assert!(bulk
            .bytes(SIZE as u64 + 1)
            .unwrap_err()
            .contains("do not fit"));
    }
}
