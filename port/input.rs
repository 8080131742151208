//! The port's stdin, read by whichever thread is free to. The main thread blocks on it;
//! a store thread spinning for its next request (see `store::receive`) reads it too, so
//! a request for that store is read, dispatched and run without waking another thread.
//!
//! Frames are read and dispatched under one lock, a frame at a time, until neither the
//! buffer nor the pipe holds more: whoever holds the lock leaves nothing behind, so a
//! thread blocked in `poll` never sleeps on data already read.

use crate::frame::{self, read_frame, Frame};
use crate::host::Host;
use std::fs::File;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock, PoisonError, TryLockError};

struct Input {
    reader: BufReader<File>,
    host: Host,
}

static INPUT: OnceLock<Mutex<Input>> = OnceLock::new();

/// Serves `reader` with `host` on the calling thread, for good: the process exits when
/// stdin ends.
pub fn serve(reader: BufReader<File>, host: Host) -> ! {
    let fd = reader.get_ref().as_raw_fd();
    let input = INPUT.get_or_init(|| Mutex::new(Input { reader, host }));
    loop {
        wait_readable(fd, -1);
        input.lock().unwrap_or_else(PoisonError::into_inner).drain();
    }
}

/// Reads and dispatches the frames waiting on stdin, unless another thread is reading.
/// Does nothing in a process that does not serve stdin (tests, fuzz targets).
pub fn drain_if_free() {
    let Some(input) = INPUT.get() else { return };
    // A thread that panicked while reading (a bug) leaves the frames where they were.
    let mut input = match input.try_lock() {
        Ok(input) => input,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    input.drain();
}

impl Input {
    fn drain(&mut self) {
        let fd = self.reader.get_ref().as_raw_fd();
        while !self.reader.buffer().is_empty() || wait_readable(fd, 0) {
            match read_frame(&mut self.reader) {
                Ok(Some(Frame::Data(payload))) => self.host.handle_frame(payload),
                Ok(Some(Frame::TooLarge(len))) => self.host.reject(format!(
                    "frame of {len} bytes is larger than the limit of {} bytes",
                    frame::MAX_FRAME
                )),
                // stdin closed: the BEAM is gone or closed the port. Exit at once, even
                // while Wasm is running on other threads.
                Ok(None) | Err(_) => std::process::exit(0),
            }
        }
    }
}

/// Whether `fd` has something to read (data, or its end) within `timeout_ms` (-1: wait).
fn wait_readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    n > 0 && pfd.revents != 0
}
