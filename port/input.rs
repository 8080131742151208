//! The port's stdin, read in one place: a task of the runtime (see `executor.rs`) that
//! reads frames as they come and hands each to the host's dispatcher. A request for a
//! store wakes that store's task on the reader's own thread, which runs it as soon as the
//! reader has read what there is and waits again: no other thread is woken.
//!
//! Frames are assembled from non-blocking reads; a large frame's payload is read
//! straight into its buffer. Stdin EOF (or a read error) ends the process at once.

use crate::frame::{self, Frame};
use crate::host::Host;
use crate::watch::{self, Woke};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Bytes read at once when no large payload is being read.
const CHUNK: usize = 1 << 20;

/// Serves stdin (fd 0) with `host`, for good: the process exits when stdin ends.
pub fn serve(host: Host) -> ! {
    // SAFETY: fd 0 is this process's stdin, owned by the reader from here on.
    let stdin = unsafe { File::from_raw_fd(0) };
    let fd = stdin.as_raw_fd();
    crate::executor::spin::watch_input(fd);
    // Its threads start with the host's, not during a call that computes for long.
    crate::executor::heavy_runtime();
    let reader = crate::executor::light_runtime().spawn(async move {
        if set_nonblocking(&stdin).is_err() {
            std::process::exit(1);
        }
        // SAFETY: a `File` owns its fd, open as long as the `File` lives and always the
        // same.
        let Ok(stdin) = (unsafe { AsyncFd::register_with_interest(stdin, Interest::READABLE) })
        else {
            std::process::exit(1);
        };
        read_loop(stdin, host).await
    });
    let _ = crate::executor::block_on(reader);
    std::process::exit(0)
}

fn set_nonblocking(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an fd this process owns.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) >= 0
    };
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

async fn read_loop(stdin: AsyncFd<File>, mut host: Host) {
    let mut frames = Frames::default();
    let fd = stdin.as_raw_fd();
    loop {
        while let Some(frame) = frames.next_frame() {
            dispatch_frame(&mut host, frame);
        }
        host.settle_retired();
        match watch::next_input(&stdin).await {
            Woke::Ready(mut ready) => match ready.try_io(|fd| frames.fill(fd.as_raw_fd())) {
                // Stdin closed: the BEAM is gone or closed the port. Exit at once, even
                // while Wasm runs on other threads.
                Ok(Ok(0)) | Ok(Err(_)) => std::process::exit(0),
                Ok(Ok(_)) | Err(_) => {}
            },
            // Kicked by a store that expects an answer soon: watch stdin from this task,
            // on this thread, for a bounded time, and read what comes (the store it wakes
            // then runs here too). Nothing come: wait as usual.
            Woke::Kicked => {
                if crate::executor::spin::until_readable(fd) {
                    match frames.fill(fd) {
                        Ok(0) => std::process::exit(0),
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                            std::process::exit(0)
                        }
                        _ => {}
                    }
                }
            }
            Woke::Failed => std::process::exit(0),
        }
    }
}

fn dispatch_frame(host: &mut Host, frame: Frame) {
    match frame {
        Frame::Data(payload) if payload.first() == Some(&frame::BATCH) => {
            match frame::batch_parts(&payload[1..]) {
                Ok(parts) => {
                    for part in parts {
                        dispatch(host, part.to_vec());
                    }
                }
                Err(error) => host.reject(error),
            }
        }
        Frame::Data(payload) => dispatch(host, payload),
        Frame::TooLarge(len) => host.reject(format!(
            "frame of {len} bytes is larger than the limit of {} bytes",
            frame::MAX_FRAME
        )),
    }
}

fn dispatch(host: &mut Host, payload: Vec<u8>) {
    // A panic here would be a bug (or the OS refusing a thread); it must not take the
    // reader down with it, and the request still gets its one reply.
    let id = crate::request_head::read(&payload).id;
    if catch_unwind(AssertUnwindSafe(|| host.handle_frame(payload))).is_err() {
        host.reject_request(id, "internal error while dispatching the request".into());
    }
}

/// Frames assembled from the bytes read so far.
#[derive(Default)]
pub struct Frames {
    /// Bytes read and not yet used, from `start`.
    buffer: Vec<u8>,
    start: usize,
    state: State,
}

#[derive(Default)]
enum State {
    /// Waiting for a frame's 4-byte length.
    #[default]
    Length,
    /// Reading a payload of `len` bytes.
    Payload { len: usize, payload: Vec<u8> },
    /// Skipping the payload of a frame over the limit: `left` of `len` bytes to go.
    Skip { len: usize, left: usize },
}

impl Frames {
    fn buffered(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// The next complete frame among the bytes read.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match &mut self.state {
                State::Length => {
                    let head: [u8; 4] = self.buffered().get(..4)?.try_into().ok()?;
                    self.start += 4;
                    let len = u32::from_be_bytes(head) as usize;
                    self.state = if len > frame::MAX_FRAME {
                        State::Skip { len, left: len }
                    } else {
                        State::Payload {
                            len,
                            payload: Vec::with_capacity(len),
                        }
                    };
                }
                State::Payload { len, payload } => {
                    let n = (*len - payload.len()).min(self.buffer.len() - self.start);
                    payload.extend_from_slice(&self.buffer[self.start..self.start + n]);
                    self.start += n;
                    if payload.len() < *len {
                        return None;
                    }
                    let State::Payload { payload, .. } = std::mem::take(&mut self.state) else {
                        unreachable!()
                    };
                    return Some(Frame::Data(payload));
                }
                State::Skip { len, left } => {
                    let n = (*left).min(self.buffer.len() - self.start);
                    self.start += n;
                    *left -= n;
                    if *left > 0 {
                        return None;
                    }
                    let len = *len;
                    self.state = State::Length;
                    return Some(Frame::TooLarge(len));
                }
            }
        }
    }

    /// Reads what `fd` holds (without blocking): a large payload straight into its
    /// buffer, anything else into the read buffer. The bytes read (0: the end).
    pub fn fill(&mut self, fd: i32) -> std::io::Result<usize> {
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        if let State::Payload { len, payload } = &mut self.state {
            if self.start == self.buffer.len() && *len - payload.len() >= CHUNK {
                let want = *len - payload.len();
                // SAFETY: reads at most `want` bytes into the payload's spare capacity
                // (its capacity is `len`), then counts exactly those as initialised.
                let n = unsafe {
                    let end = payload.as_mut_ptr().add(payload.len());
                    read_raw(fd, end, want)?
                };
                unsafe { payload.set_len(payload.len() + n) };
                return Ok(n);
            }
        }
        if self.start > 0 && self.buffer.capacity() - self.buffer.len() < CHUNK / 4 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.reserve(CHUNK);
        let room = self.buffer.capacity() - self.buffer.len();
        // SAFETY: as above, into the read buffer's spare capacity.
        let n = unsafe {
            let end = self.buffer.as_mut_ptr().add(self.buffer.len());
            read_raw(fd, end, room)?
        };
        unsafe { self.buffer.set_len(self.buffer.len() + n) };
        Ok(n)
    }

    /// Takes `bytes` as if read (tests).
    #[cfg(test)]
    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }
}

/// One `read(2)` of up to `len` bytes to `at`.
///
/// # Safety
/// `at` must be valid for writes of `len` bytes.
unsafe fn read_raw(fd: i32, at: *mut u8, len: usize) -> std::io::Result<usize> {
    loop {
        let n = libc::read(fd, at.cast(), len);
        if n >= 0 {
            return Ok(n as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_panic_while_dispatching_a_request_answers_it_under_its_id() {
        use crate::term;
        let (outbox, rx) = crate::outbox::Outbox::channel();
        let mut host = Host::new(outbox);
        let mut payload = Vec::new();
        term::tuple(vec![
            term::int(5),
            term::atom("fault_dispatch_panic"),
            term::tuple(vec![]),
        ])
        .encode(&mut payload)
        .unwrap();
        dispatch(&mut host, payload);
        let frame = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(
            eetf::Term::decode(&frame[4..]).unwrap(),
            crate::protocol::reply(
                5,
                Err("internal error while dispatching the request".into())
            )
        );
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut bytes = framed(b"one");
        bytes.extend(framed(&[7; 300]));
        bytes.extend(framed(b""));
        for cut in 0..bytes.len() {
            let mut frames = Frames::default();
            let mut got = Vec::new();
            for piece in [&bytes[..cut], &bytes[cut..]] {
                frames.push(piece);
                while let Some(Frame::Data(p)) = frames.next_frame() {
                    got.push(p);
                }
            }
            assert_eq!(
                got,
                vec![b"one".to_vec(), vec![7; 300], vec![]],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_skipped_and_the_next_one_read() {
        let mut frames = Frames::default();
        let len = frame::MAX_FRAME + 1;
        frames.push(&(len as u32).to_be_bytes());
        assert_eq!(frames.next_frame(), None);
        frames.state = State::Skip { len, left: 3 };
        frames.push(b"abc");
        frames.push(&framed(b"next"));
        assert_eq!(frames.next_frame(), Some(Frame::TooLarge(len)));
        assert_eq!(frames.next_frame(), Some(Frame::Data(b"next".to_vec())));
    }

    #[test]
    fn a_large_payload_is_read_from_the_fd_into_its_frame() {
        let mut fds = [0; 2];
        // SAFETY: a pipe of two fds this test owns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let payload = vec![9u8; 3 * CHUNK];
        let writer = {
            let bytes = framed(&payload);
            std::thread::spawn(move || {
                // SAFETY: the pipe's write end.
                let mut out = unsafe { File::from_raw_fd(fds[1]) };
                std::io::Write::write_all(&mut out, &bytes).unwrap();
            })
        };
        // SAFETY: the pipe's read end, closed when `input` goes.
        let input = unsafe { File::from_raw_fd(fds[0]) };
        let mut frames = Frames::default();
        let frame = loop {
            if let Some(frame) = frames.next_frame() {
                break frame;
            }
            assert!(frames.fill(input.as_raw_fd()).unwrap() > 0);
        };
        writer.join().unwrap();
        assert_eq!(frame, Frame::Data(payload));
    }
}
