//! The WASI output stream of a store's stdout or stderr: what wasmtime's preview 1
//! `fd_write` calls. Writes go into the store's output buffer (`output.rs`) within the
//! sink's window and room; a write that does not fit waits in [`Pollable::ready`] for
//! acknowledgements, and a write past a pipe's room fails with `ENOSPC` (what fits is
//! kept), one to a receiver that is gone with `EPIPE`.
//!
//! Preview 1's `fd_write` cuts a write into 4 KiB pieces and, for each, waits for room
//! (`ready`, then `check_write`), writes, and at the end flushes and waits again. The
//! bytes are in the port's buffer by then, which is delivered on its own (see
//! `output.rs`): so the wait after a flush returns at once, and the next write waits
//! instead. A pipe filled exactly to its room is therefore not an error; the next write is.

use crate::output::{Outputs, SinkSpec};
use bytes::Bytes;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Largest write accepted at once; p1 `fd_write` already cuts writes into 4 KiB pieces.
const WRITE_BUDGET: usize = 1 << 20;

/// A store's stdout or stderr.
#[derive(Clone)]
pub struct EventOutput {
    output: Outputs,
    sink: usize,
    /// The last call was a flush: the wait that follows it returns at once.
    after_flush: bool,
}

impl EventOutput {
    pub fn new(output: &Outputs, spec: SinkSpec) -> EventOutput {
        EventOutput {
            sink: output.sink(spec),
            output: output.clone(),
            after_flush: false,
        }
    }
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn failed(code: i32) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::from(errno(code)))
}

impl IsTerminal for EventOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for EventOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for EventOutput {
    /// Returns once a write may proceed, or must fail: the sink has a permit, its
    /// receiver is gone, or (for a pipe) its room, asked again, is 0. Dropping this
    /// future (the call's deadline, a cancel) leaves nothing to undo.
    async fn ready(&mut self) {
        if self.after_flush {
            return;
        }
        let start = self.output.lock().acks;
        let mut timed_out = false;
        loop {
            let seen = {
                let state = self.output.lock();
                let sink = &state.sinks[self.sink];
                if sink.closed() || sink.permit() > 0 {
                    return;
                }
                // A pipe's room of 0 counts once every write to it is answered, by an
                // answer that came during this wait.
                let fresh = sink.settled() && state.acks != start;
                if sink.is_pipe() && fresh {
                    return;
                }
                let probe = (sink.is_pipe() && sink.settled()) || timed_out;
                let seen = state.acks;
                self.output.send_buffered(state, probe.then_some(self.sink));
                seen
            };
            let acked = poll_fn(|cx| {
                let mut state = self.output.lock();
                if state.acks != seen {
                    return Poll::Ready(());
                }
                Outputs::wake_on_ack(&mut state, cx.waker());
                Poll::Pending
            });
            timed_out = tokio::time::timeout(crate::output::PROBE_EVERY, acked)
                .await
                .is_err();
        }
    }
}

impl OutputStream for EventOutput {
    /// Buffers `bytes`, or what fits in a pipe's room (then fails with `ENOSPC`). The
    /// window is kept by `check_write` and `ready`, which bound each write; a write they
    /// did not bound (one after a poll that consumed the wait after a flush) overruns it
    /// by at most that write (4 KiB from preview 1).
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.after_flush = false;
        let state = self.output.lock();
        let sink = &state.sinks[self.sink];
        if sink.closed() {
            return Err(failed(libc::EPIPE));
        }
        let fits = match sink.room_left() {
            Some(room) => bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX)),
            None => bytes.len(),
        };
        self.output.buffer(state, self.sink, &bytes[..fits]);
        if fits < bytes.len() {
            return Err(failed(libc::ENOSPC));
        }
        Ok(())
    }

    /// The bytes are in the store's output buffer, which is sent on its own.
    fn flush(&mut self) -> StreamResult<()> {
        self.after_flush = true;
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if std::mem::take(&mut self.after_flush) {
            return Ok(WRITE_BUDGET);
        }
        let state = self.output.lock();
        let sink = &state.sinks[self.sink];
        if sink.closed() {
            return Err(failed(libc::EPIPE));
        }
        let permit = sink.permit();
        if permit == 0 && sink.room_left() == Some(0) && sink.window_left() > 0 {
            return Err(failed(libc::ENOSPC));
        }
        Ok(usize::try_from(permit)
            .unwrap_or(usize::MAX)
            .min(WRITE_BUDGET))
    }
}

/// Only used by WASI preview 3, which this program does not run; kept correct anyway.
impl tokio::io::AsyncWrite for EventOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.output.lock();
        let sink = &state.sinks[self.sink];
        if sink.closed() {
            return Poll::Ready(Err(errno(libc::EPIPE)));
        }
        let permit = usize::try_from(sink.permit()).unwrap_or(usize::MAX);
        if permit == 0 && sink.room_left() == Some(0) && sink.settled() {
            return Poll::Ready(Err(errno(libc::ENOSPC)));
        }
        if permit == 0 {
            Outputs::wake_on_ack(&mut state, cx.waker());
            self.output.send_buffered(state, None);
            return Poll::Pending;
        }
        let n = buf.len().min(permit);
        self.output.buffer(state, self.sink, &buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.output.flush();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.output.flush();
        Poll::Ready(Ok(()))
    }
}
