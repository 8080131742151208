//! The port's stdin, read by whichever thread is free to. The main thread blocks on it;
//! a worker spinning for its next task (see `workers.rs`) or a callback spinning for its
//! answer (see `store::receive`) reads it too, so a request is read, dispatched and run
//! without waking another thread.
//!
//! While a spinning worker has taken over the reading (see [`take_reading`]), the main
//! thread does not wait on stdin at all: every write of the BEAM would wake it for
//! nothing, costing both sides. The worker gives the reading back before it blocks, and
//! the worker monitor takes it back from a worker busy for longer than a tick.
//!
//! Frames are read and dispatched under one lock, a frame at a time, until neither the
//! buffer nor the pipe holds more: whoever holds the lock leaves nothing behind, so a
//! thread blocked in `poll` never sleeps on data already read.

use crate::frame::{self, read_buffered_frame, Frame};
use crate::host::Host;
use std::fs::File;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError, TryLockError};

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
    let mut beam = crate::affinity::watch_beam();
    loop {
        wait_while_a_worker_reads();
        crate::affinity::main_to_beams_cpu(&mut beam);
        wait_readable(fd, -1);
        crate::affinity::note_main_cpu();
        input.lock().unwrap_or_else(PoisonError::into_inner).drain();
    }
}

/// The worker that reads stdin in place of the main thread (a token, see `reader_token`),
/// or 0: the main thread does.
static READER: AtomicU64 = AtomicU64::new(0);

/// Where the main thread waits while a worker reads; true while it waits.
static MAIN_WAITS: Mutex<bool> = Mutex::new(false);
static READING_GIVEN_BACK: Condvar = Condvar::new();

/// This thread's token for [`READER`]: unique, never 0.
pub fn reader_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// Takes over reading stdin from the main thread; true if this thread took it now (not
/// if it already had it, or another thread has it). The caller must drain stdin often (it
/// spins), and give the reading back before it blocks or runs anything long.
pub fn take_reading() -> bool {
    INPUT.get().is_some()
        && READER
            .compare_exchange(0, reader_token(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}

/// The token of the worker reading stdin, or 0.
pub fn reader() -> u64 {
    READER.load(Ordering::SeqCst)
}

/// Gives the reading back to the main thread if this thread has it.
pub fn give_back_reading() {
    revoke_reading(reader_token());
}

/// Takes the reading back from the thread with token `holder`, if it still has it.
pub fn revoke_reading(holder: u64) {
    if holder == 0
        || READER
            .compare_exchange(holder, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
    {
        return;
    }
    if *MAIN_WAITS.lock().unwrap_or_else(PoisonError::into_inner) {
        READING_GIVEN_BACK.notify_one();
    }
}

/// Whether this thread reads stdin in place of the main thread.
pub fn reading_here() -> bool {
    reader() == reader_token()
}

fn wait_while_a_worker_reads() {
    if READER.load(Ordering::SeqCst) == 0 {
        return;
    }
    let mut waits = MAIN_WAITS.lock().unwrap_or_else(PoisonError::into_inner);
    *waits = true;
    while READER.load(Ordering::SeqCst) != 0 {
        waits = READING_GIVEN_BACK
            .wait(waits)
            .unwrap_or_else(PoisonError::into_inner);
    }
    *waits = false;
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
            match read_buffered_frame(&mut self.reader) {
                Ok(Some(Frame::Data(payload))) if payload.first() == Some(&frame::BATCH) => {
                    match frame::batch_parts(&payload[1..]) {
                        Ok(parts) => {
                            for part in parts {
                                self.dispatch(part.to_vec());
                            }
                        }
                        Err(error) => self.host.reject(error),
                    }
                }
                Ok(Some(Frame::Data(payload))) => self.dispatch(payload),
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

    fn dispatch(&mut self, payload: Vec<u8>) {
        // A panic here would be a bug; it must not take the reading thread (maybe a
        // worker holding the reading) down with it.
        let host = &mut self.host;
        if catch_unwind(AssertUnwindSafe(|| host.handle_frame(payload))).is_err() {
            host.reject("internal error while dispatching a frame".into());
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
