//! WASI standard streams connected to the BEAM.
//!
//! * Output (stdout, stderr): see `output.rs` and `output_stream.rs`.
//! * Input (stdin): reads wait on a channel fed by the `stdin_data` / `stdin_eof`
//!   notifications. In pull mode (a `Wasmex.Pipe`) the stream asks for data with a
//!   `{stdin_read, StoreId, Handler}` event whenever it runs dry; an empty answer is EOF
//!   for the read that asked (the next one asks again).
//!   In push mode the BEAM sends data whenever it likes.

use crate::call_state::CallState;
use crate::outbox::Outbox;
use crate::output::Outputs;
use crate::term;
use bytes::{Bytes, BytesMut};
use eetf::Term;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdinStream};
use wasmtime_wasi::p2::{InputStream, Pollable, StreamError, StreamResult};

/// What the BEAM sends to a store's stdin, and the host's nudge when the store's call was
/// cancelled (a read waiting for input then stops).
#[derive(Debug)]
pub enum StdinMsg {
    Data(Vec<u8>),
    Eof,
    Cancelled,
}

/// The most bytes of input a store holds that its program has not read yet: data past it
/// is refused (`Wasmex.Wasi.write_stdin/2` returns an error), so a caller writing faster
/// than the program reads cannot fill the port's memory.
pub const MAX_UNREAD_STDIN: usize = 16 << 20;

/// The dispatcher's end of a store's stdin, and the count of bytes sent and not yet read.
pub struct StdinSender {
    tx: UnboundedSender<StdinMsg>,
    unread: Arc<AtomicUsize>,
    /// Whether the store's program reads input the BEAM sends unasked (`stdin: :messages`).
    push: bool,
    /// Whether the BEAM ended the input (`Wasmex.Wasi.close_stdin/1`).
    closed: AtomicBool,
}

/// The store's end of its stdin.
pub struct StdinReceiver {
    rx: UnboundedReceiver<StdinMsg>,
    unread: Arc<AtomicUsize>,
}

/// A store's stdin channel; `push` when its program reads input sent unasked.
pub fn stdin_channel(push: bool) -> (StdinSender, StdinReceiver) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let unread = Arc::new(AtomicUsize::new(0));
    (
        StdinSender {
            tx,
            unread: unread.clone(),
            push,
            closed: AtomicBool::new(false),
        },
        StdinReceiver { rx, unread },
    )
}

impl StdinSender {
    /// Sends an end of input or a cancellation (a store already gone takes nothing).
    pub fn send(&self, msg: StdinMsg) {
        if let StdinMsg::Eof = msg {
            self.closed.store(true, Ordering::Relaxed);
        }
        let _ = self.tx.send(msg);
    }

    /// Sends input the program asked for (a `Wasmex.Pipe`'s answer to its read), however
    /// much.
    pub fn send_asked(&self, data: Vec<u8>) {
        self.unread.fetch_add(data.len(), Ordering::AcqRel);
        let _ = self.tx.send(StdinMsg::Data(data));
    }

    /// Sends input, unless the store would then hold more than [`MAX_UNREAD_STDIN`]
    /// bytes its program has not read.
    pub fn send_data(&self, data: Vec<u8>) -> Result<(), String> {
        if !self.push {
            return Err(
                "the store's stdin is not :messages: nothing would read this \
                        (a Wasmex.Pipe as stdin is written with Wasmex.Pipe.write/2)"
                    .into(),
            );
        }
        if self.closed.load(Ordering::Relaxed) {
            return Err("the store's stdin is closed (Wasmex.Wasi.close_stdin/1)".into());
        }
        let len = data.len();
        let unread = self.unread.fetch_add(len, Ordering::AcqRel);
        if unread.saturating_add(len) > MAX_UNREAD_STDIN {
            self.unread.fetch_sub(len, Ordering::AcqRel);
            return Err(format!(
                "stdin is full: {unread} bytes written to it are not read yet, and {len} more \
                 would pass the limit of {MAX_UNREAD_STDIN}"
            ));
        }
        let _ = self.tx.send(StdinMsg::Data(data));
        Ok(())
    }
}

/// Whether a store made with WASI options `wasi` (core, or `{p2, Options}` for
/// components) reads input sent unasked: its `stdin` is `push`.
pub fn pushes_stdin(wasi: &Term) -> bool {
    let options = crate::component::wasi::p2_options(wasi).unwrap_or(wasi);
    term::as_map(options, "wasi")
        .ok()
        .and_then(|m| term::map_get(m, "stdin"))
        .is_some_and(|t| term::as_atom(t) == Some("push"))
}

impl StdinReceiver {
    fn try_recv(&mut self) -> Option<StdinMsg> {
        self.rx.try_recv().ok()
    }

    async fn recv(&mut self) -> Option<StdinMsg> {
        self.rx.recv().await
    }

    /// The program read `n` bytes.
    fn read(&self, n: usize) {
        self.unread.fetch_sub(n, Ordering::AcqRel);
    }
}

struct InputState {
    rx: StdinReceiver,
    buffer: BytesMut,
    eof: bool,
    asked: bool,
}

/// Stdin fed from the BEAM. Every stream `p2_stream` makes shares one state.
#[derive(Clone)]
pub struct EventInput {
    state: Arc<Mutex<InputState>>,
    outbox: Outbox,
    store_id: u64,
    /// `Some` in pull mode: who to ask for more input.
    puller: Option<Arc<Vec<u8>>>,
    call: Arc<CallState>,
    /// The store's output, sent before a read waits (a prompt comes before its answer).
    output: Option<Outputs>,
}

impl EventInput {
    pub fn new(
        rx: StdinReceiver,
        outbox: Outbox,
        store_id: u64,
        puller: Option<Vec<u8>>,
        call: Arc<CallState>,
        output: Option<Outputs>,
    ) -> EventInput {
        let state = InputState {
            rx,
            buffer: BytesMut::new(),
            eof: false,
            asked: false,
        };
        let state = Arc::new(Mutex::new(state));
        EventInput {
            state,
            outbox,
            store_id,
            puller: puller.map(Arc::new),
            call,
            output,
        }
    }

    fn ask(&self) {
        if let Some(handler) = &self.puller {
            self.outbox.send(&term::tuple(vec![
                term::atom("stdin_read"),
                term::uint(self.store_id),
                term::binary(handler.to_vec()),
            ]));
        }
    }
}

impl InputState {
    fn accept(&mut self, msg: Option<StdinMsg>) {
        match msg {
            // A nudge: the waiter looks at its call's state (`EventInput::ready`).
            Some(StdinMsg::Cancelled) => {}
            Some(StdinMsg::Data(d)) if !d.is_empty() => {
                self.asked = false;
                self.buffer.extend_from_slice(&d);
            }
            _ => {
                self.asked = false;
                self.eof = true;
            }
        }
    }

    fn take(&mut self, size: usize) -> StreamResult<Bytes> {
        while let Some(msg) = self.rx.try_recv() {
            self.accept(Some(msg));
        }
        if self.buffer.is_empty() {
            return if self.eof {
                Err(StreamError::Closed)
            } else {
                Ok(Bytes::new())
            };
        }
        let n = size.min(self.buffer.len());
        self.rx.read(n);
        Ok(self.buffer.split_to(n).freeze())
    }
}

impl IsTerminal for EventInput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for EventInput {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(NoInput)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for EventInput {
    async fn ready(&mut self) {
        let mut state = self.state.lock().await;
        if state.buffer.is_empty() && !state.eof {
            if let Some(output) = &self.output {
                output.flush();
            }
        }
        while state.buffer.is_empty() && !state.eof {
            if !state.asked && self.puller.is_some() {
                state.asked = true;
                self.ask();
            }
            // Input, a cancellation (the host sends `Cancelled`) or the call's deadline.
            let msg = match self.call.deadline() {
                Some(deadline) => {
                    let deadline = tokio::time::Instant::from_std(deadline);
                    tokio::time::timeout_at(deadline, state.rx.recv()).await
                }
                None => Ok(state.rx.recv().await),
            };
            if let Ok(msg) = msg {
                state.accept(msg);
            }
            if self.call.stop_reason().is_some() {
                // The call must stop. Saying "ready" would let the program run on past
                // its deadline (a poll_oneoff would report input that is not there):
                // this waits instead, and `executor::stoppable` around the call, which
                // checks the call's state whenever the call waits, drops it at once.
                drop(state);
                return std::future::pending::<()>().await;
            }
        }
    }
}

impl InputStream for EventInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        match self.state.try_lock() {
            Ok(mut state) => {
                let taken = state.take(size);
                // A pipe's end of input is this read's: the pipe may be written to again
                // (as in Wasmex), so the next read asks it again.
                if self.puller.is_some() && matches!(taken, Err(StreamError::Closed)) {
                    state.eof = false;
                }
                taken
            }
            Err(_) => Ok(Bytes::new()),
        }
    }
}

/// Preview 3 input: always at end of stream (this program runs preview 1 only).
struct NoInput;

impl AsyncRead for NoInput {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
