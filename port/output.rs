//! A store's WASI output (stdout, stderr) on its way to the BEAM: buffered, windowed and,
//! for a `Wasmex.Pipe`, bounded by the pipe's room.
//!
//! * Buffered: writes land in one buffer per store, in the order the program made them,
//!   and leave as `{stdio, StoreId, Handler, Bytes}` frames (one per run of writes to the
//!   same destination) when the buffer holds [`FLUSH_SIZE`] bytes, [`LINGER`] after its
//!   first byte, when a call ends (before its reply), before an import callback, before a
//!   stdin read waits, and when a write has to wait. A small `fd_write` costs a copy.
//! * Windowed: each destination (a sink, named by its handler) has at most `window`
//!   bytes sent or buffered and not yet acknowledged (`output_ack`). A write that does
//!   not fit waits (see `output_stream.rs`); dropping the call's future at its deadline
//!   or on a cancel ends that wait, leaving nothing behind.
//! * Bounded by a pipe's room: the BEAM tells a pipe sink its room (capacity minus
//!   cursor) when the store is made and in every acknowledgement. A write past it keeps
//!   what fits and fails with `ENOSPC`, after asking the pipe again (a probe: an empty
//!   frame the pipe acknowledges with its room) so that room freed meanwhile counts.
//!
//! Acknowledgements reach a store's output through a registry by store id (one host per
//! process): the host hands them over without involving the store, which may be blocked
//! in the very write that waits for them.

use crate::outbox::Outbox;
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::task::Waker;
use std::time::Duration;

/// A store's output is sent once this many bytes wait.
pub const FLUSH_SIZE: usize = 64 << 10;

/// Output waits at most this long in the port before it is sent.
pub const LINGER: Duration = Duration::from_millis(1);

/// While a write waits for acknowledgements, the sink is probed this often: a probe
/// finds out whether its receiver is still there (and a pipe's room).
pub const PROBE_EVERY: Duration = Duration::from_millis(200);

/// Unacknowledged bytes a sink may have when the options name no window.
pub const DEFAULT_WINDOW: u64 = 1 << 20;

/// What a sink is, from the store's WASI options.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    pub handler: Vec<u8>,
    pub window: u64,
    /// `Some(room)` for a pipe: the bytes it may still take.
    pub room: Option<u64>,
}

/// An acknowledgement from the BEAM: `{StoreId, Handler, Bytes, Room}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub store_id: u64,
    pub handler: Vec<u8>,
    pub bytes: u64,
    pub room: AckRoom,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AckRoom {
    /// `nil`: a message receiver consumed `bytes`.
    None,
    /// A pipe took the bytes and has this much room left.
    Pipe(u64),
    /// `closed`: the receiver (a process or a pipe) is gone.
    Closed,
}

impl Ack {
    pub fn parse(args: &[Term]) -> Fallible<Ack> {
        let [store_id, handler, bytes, room] = args else {
            return Err(format!(
                "output_ack expects 4 arguments, got {}",
                args.len()
            ));
        };
        let room = match term::as_atom(room) {
            Some("nil") => AckRoom::None,
            Some("closed") => AckRoom::Closed,
            _ => AckRoom::Pipe(term::as_u64(room, "output_ack room")?),
        };
        Ok(Ack {
            store_id: term::as_u64(store_id, "store id")?,
            handler: term::as_bytes(handler, "output_ack handler")?.to_vec(),
            bytes: term::as_u64(bytes, "output_ack bytes")?,
            room,
        })
    }
}

/// Gives `ack` to the store it names. Acknowledgements for a store that has ended, or
/// naming a handler the store does not write to (another process, another stream), are
/// ignored: they free nothing.
pub fn ack(ack: Ack) {
    if let Some(output) = lookup(ack.store_id) {
        output.apply(&ack);
    }
}

/// Sends what store `store_id` has buffered, and returns once every frame of its output
/// so far is written: a reply sent next comes after them.
pub fn flush_store(store_id: u64) {
    if let Some(output) = lookup(store_id) {
        output.flush();
    }
}

type Registry = RwLock<HashMap<u64, Weak<Shared>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn lookup(store_id: u64) -> Option<Outputs> {
    let map = registry().read().unwrap_or_else(PoisonError::into_inner);
    map.get(&store_id).and_then(Weak::upgrade).map(Outputs)
}

/// All the output of one store.
#[derive(Clone)]
pub struct Outputs(Arc<Shared>);

struct Shared {
    store_id: u64,
    outbox: Outbox,
    state: Mutex<State>,
    /// Held while frames are written, taken before the state lock is let go: frames
    /// leave in buffer order, and a flush returns after every earlier frame is out.
    sending: Mutex<()>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) sinks: Vec<Sink>,
    /// Buffered writes in program order: (sink, bytes).
    segments: VecDeque<(usize, Vec<u8>)>,
    buffered: usize,
    /// A timer will flush the buffer (see [`LINGER`]).
    linger_armed: bool,
    /// Counts acknowledgements (and closings): a waiting write looks for a change.
    pub(crate) acks: u64,
    wakers: Vec<Waker>,
}

/// One destination: a message receiver or a pipe.
pub(crate) struct Sink {
    handler: Arc<Vec<u8>>,
    window: u64,
    /// Bytes sent, acknowledged and buffered.
    sent: u64,
    acked: u64,
    buffered: u64,
    /// Probes of a pipe not yet answered.
    probes: u64,
    /// A pipe's room as of its last acknowledgement; `None` for a message receiver.
    room: Option<u64>,
    closed: bool,
}

impl Sink {
    /// Bytes sent or buffered and not acknowledged.
    fn unacked(&self) -> u64 {
        self.sent - self.acked + self.buffered
    }

    /// Bytes a write may add now without overrunning the window.
    pub(crate) fn window_left(&self) -> u64 {
        self.window.saturating_sub(self.unacked())
    }

    /// Bytes a write may add now without overrunning the pipe's room (as far as known).
    pub(crate) fn room_left(&self) -> Option<u64> {
        self.room.map(|r| r.saturating_sub(self.unacked()))
    }

    /// What a write may add now: the smaller of the two.
    pub(crate) fn permit(&self) -> u64 {
        self.room_left()
            .map_or(self.window_left(), |r| r.min(self.window_left()))
    }

    /// Whether every byte and probe sent has been answered, and nothing is buffered.
    pub(crate) fn settled(&self) -> bool {
        self.unacked() == 0 && self.probes == 0
    }

    pub(crate) fn is_pipe(&self) -> bool {
        self.room.is_some()
    }

    pub(crate) fn closed(&self) -> bool {
        self.closed
    }
}

impl Outputs {
    pub fn new(outbox: Outbox, store_id: u64) -> Outputs {
        let shared = Arc::new(Shared {
            store_id,
            outbox,
            state: Mutex::new(State::default()),
            sending: Mutex::new(()),
        });
        // Dropping the output removes it (see `Drop for Shared`).
        let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
        map.insert(store_id, Arc::downgrade(&shared));
        Outputs(shared)
    }

    /// The sink for `spec`: streams writing to the same handler (stdout and stderr to
    /// one pipe) share one, so they share its window and room.
    pub fn sink(&self, spec: SinkSpec) -> usize {
        let mut state = self.lock();
        if let Some(i) = state.sinks.iter().position(|s| *s.handler == spec.handler) {
            return i;
        }
        state.sinks.push(Sink {
            handler: Arc::new(spec.handler),
            window: spec.window.max(1),
            sent: 0,
            acked: 0,
            buffered: 0,
            probes: 0,
            room: spec.room,
            closed: false,
        });
        state.sinks.len() - 1
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Buffers `bytes` for `sink` (the caller checked the permit), and sends the buffer
    /// if it is full or arms the timer that will.
    pub(crate) fn buffer(&self, mut state: MutexGuard<'_, State>, sink: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        state.sinks[sink].buffered += bytes.len() as u64;
        state.buffered += bytes.len();
        match state.segments.back_mut() {
            Some((last, data)) if *last == sink => data.extend_from_slice(bytes),
            _ => state.segments.push_back((sink, bytes.to_vec())),
        }
        if state.buffered >= FLUSH_SIZE {
            self.send_buffered(state, None);
        } else if !state.linger_armed {
            state.linger_armed = true;
            drop(state);
            self.arm_linger();
        }
    }

    fn arm_linger(&self) {
        let output = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(LINGER).await;
                    output.lock().linger_armed = false;
                    output.flush();
                });
            }
            // No timers here (a test outside a runtime): send at once.
            Err(_) => {
                output.lock().linger_armed = false;
                output.flush();
            }
        }
    }

    /// Sends what is buffered; returns once it, and every frame sent before, is out.
    pub fn flush(&self) {
        self.send_buffered(self.lock(), None);
    }

    /// Sends the buffer's frames in order, then, with `probe`, an empty frame to that
    /// sink: a pipe answers it with its room; for a message receiver the BEAM only checks
    /// that the receiver is alive (and says when not). The state lock is let go before
    /// writing (an acknowledgement must not wait for a write to the BEAM), the sending
    /// lock held.
    pub(crate) fn send_buffered(&self, mut state: MutexGuard<'_, State>, probe: Option<usize>) {
        let segments = std::mem::take(&mut state.segments);
        let mut frames = Vec::with_capacity(segments.len() + 1);
        for (sink, bytes) in segments {
            let s = &mut state.sinks[sink];
            s.buffered -= bytes.len() as u64;
            s.sent += bytes.len() as u64;
            frames.push((s.handler.clone(), bytes));
        }
        state.buffered = 0;
        if let Some(sink) = probe {
            let s = &mut state.sinks[sink];
            if s.is_pipe() {
                s.probes += 1;
            }
            frames.push((s.handler.clone(), Vec::new()));
        }
        let sending = self
            .0
            .sending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        drop(state);
        for (handler, bytes) in frames {
            self.send_frame(&handler, bytes);
        }
        drop(sending);
    }

    fn send_frame(&self, handler: &[u8], bytes: Vec<u8>) {
        self.0.outbox.send(&term::tuple(vec![
            term::atom("stdio"),
            term::uint(self.0.store_id),
            term::binary(handler.to_vec()),
            term::binary(bytes),
        ]));
    }

    /// Wakes `waker` at the next acknowledgement.
    pub(crate) fn wake_on_ack(state: &mut State, waker: &Waker) {
        if !state.wakers.iter().any(|w| w.will_wake(waker)) {
            state.wakers.push(waker.clone());
        }
    }

    fn apply(&self, ack: &Ack) {
        let mut state = self.lock();
        let Some(sink) = state.sinks.iter_mut().find(|s| *s.handler == ack.handler) else {
            return;
        };
        // Never more than was sent: an early or repeated acknowledgement frees nothing
        // that is not out yet.
        sink.acked = sink.acked.saturating_add(ack.bytes).min(sink.sent);
        match ack.room {
            AckRoom::None => {}
            AckRoom::Closed => sink.closed = true,
            AckRoom::Pipe(room) if sink.is_pipe() => {
                sink.room = Some(room);
                if ack.bytes == 0 {
                    sink.probes = sink.probes.saturating_sub(1);
                }
            }
            AckRoom::Pipe(_) => return,
        }
        state.acks += 1;
        for waker in std::mem::take(&mut state.wakers) {
            waker.wake();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
        let this: *const Shared = self;
        if map.get(&self.store_id).is_some_and(|w| w.as_ptr() == this) {
            map.remove(&self.store_id);
        }
    }
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
