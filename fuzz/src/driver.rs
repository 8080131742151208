//! Drives one `Host` the way the port's `main` does, with a fuzz input as its stdin, and
//! checks the wire's promise on what comes out: every frame is a well-formed event and
//! every request gets exactly one reply with its id (docs/protocol.md).
//!
//! One host serves the whole run: `init` starts an epoch-ticker thread that lives as long
//! as the process (the port has one host for its life), so a host per input would leak a
//! thread and an engine per input. To keep inputs independent and reproducible anyway:
//!
//! * store ids in an input are relative: `1` is the first store the input creates. The
//!   driver adds the number of stores created before the input to the store id of every
//!   store request (a small integer in `Ctx`, `{caller, S, C}`, `store_drop`,
//!   `callback_return`);
//! * at the end of an input the driver waits for every reply, then drops the stores the
//!   input created and every module key it mentioned.
//!
//! And to keep every input short:
//!
//! * `call` and `instantiate` timeouts (`infinity` or more than [`MAX_TIMEOUT_MS`]) are
//!   lowered to [`MAX_TIMEOUT_MS`], so Wasm stuck in a loop or a callback that is never
//!   answered ends at that deadline;
//! * stores get at most [`MAX_MEMORY`] bytes of linear memory and [`MAX_TABLE`] table
//!   elements (limits the input did not set, or set higher, are replaced);
//! * at most [`MAX_STORES`] `store_new` per input are sent; later ones are skipped;
//! * WASI `preopen` entries are removed (fuzzed Wasm must not reach the host's files);
//! * at the end of an input, before waiting for the last replies, every store of the
//!   input gets `stdin_eof`: a WASI read of stdin waits for the BEAM and not for the
//!   call's deadline, so without it a program reading stdin would hold its reply forever.
//!
//! Requests that were changed are re-encoded; the original bytes went through
//! `decode_request` first, so the decoder still sees exactly the fuzzer's bytes.

use crate::request;
use eetf::Term;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use wasmex_port::frame::{read_frame, Frame, MAX_FRAME};
use wasmex_port::host::Host;
use wasmex_port::outbox::Outbox;
use wasmex_port::protocol::decode_request;
use wasmex_port::term;

pub const MAX_TIMEOUT_MS: u64 = 50;
pub const MAX_STORES: usize = 4;
pub const MAX_MEMORY: u64 = 16 << 20;
pub const MAX_TABLE: u64 = 10_000;
/// How long a request may stay unanswered, with nothing else arriving, before the driver
/// calls it lost (and panics, so libFuzzer keeps the input).
pub const HANG: Duration = Duration::from_secs(20);
/// The longest wait for the replies to one frame before the next frame is sent (a reply
/// may be waiting for a later frame: stdin data, a callback's answer).
const PAYLOAD_WAIT: Duration = Duration::from_secs(2);
/// With an import callback waiting for an answer that only a later frame of the input
/// can give, the driver moves on once the outbox has been quiet this long.
const SETTLE: Duration = Duration::from_millis(5);

pub struct Driver {
    host: Host,
    rx: Receiver<Vec<u8>>,
    /// The id the host will give its next store (it counts from 1, one per `store_new`
    /// with two arguments after `init`, whether the store could be built or not).
    next_store: u64,
    inputs: u64,
}

/// What one input has in flight and must clean up.
#[derive(Default)]
struct Input {
    /// Replies still owed, by request id.
    owed: HashMap<u64, usize>,
    /// Replies that may come or not, by request id: `cancel` is sent by the BEAM as a
    /// notification (id 0) but is not one for the port, which answers it only on error.
    maybe: HashMap<u64, usize>,
    stores: Vec<u64>,
    keys: HashSet<Vec<u8>>,
    /// A `callback` event arrived since the last time nothing was owed.
    callback: bool,
}

impl Input {
    fn owe(&mut self, id: u64) {
        *self.owed.entry(id).or_default() += 1;
    }
    fn owing(&self) -> usize {
        self.owed.values().sum()
    }
}

impl Default for Driver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver {
    /// A host after `{1, init, {#{}}}` (the engine of `Wasmex.EngineConfig`'s defaults).
    pub fn new() -> Driver {
        let (outbox, rx) = Outbox::channel();
        let mut host = Host::new(outbox);
        host.handle_payload(&request(1, "init", vec![term::map(vec![])]));
        let frame = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("init replies");
        let reply = Term::decode(&frame[4..]).expect("init reply decodes");
        // `{reply, 1, {ok, {Fd, Size}}}`: the shared buffer for large writes (port/bulk.rs).
        let succeeded = (|| {
            let r = term::as_tuple(&reply, 3, "reply").ok()?;
            let result = term::as_tuple(&r[2], 2, "result").ok()?;
            let bulk = term::as_tuple(&result[1], 2, "bulk").ok()?;
            Some(
                r[0] == term::atom("reply")
                    && r[1] == term::uint(1)
                    && result[0] == term::atom("ok")
                    && term::as_i64(&bulk[0]).is_some()
                    && bulk[1] == term::uint(wasmex_port::bulk::SIZE as u64),
            )
        })();
        assert_eq!(succeeded, Some(true), "init must succeed: {reply:?}");
        Driver {
            host,
            rx,
            next_store: 1,
            inputs: 0,
        }
    }

    /// Feeds `stream` (frames as on the port's stdin) to the host, then checks and cleans up.
    pub fn run(&mut self, stream: &[u8]) {
        let base = self.next_store - 1;
        let mut input = Input::default();
        let mut reader = stream;
        loop {
            match read_frame(&mut reader) {
                Ok(Some(Frame::Data(payload))) => self.send(&payload, base, &mut input),
                Ok(Some(Frame::TooLarge(len))) => {
                    // As main.rs answers it.
                    input.owe(0);
                    self.host.reject(format!(
                        "frame of {len} bytes is larger than the limit of {MAX_FRAME} bytes"
                    ));
                }
                Ok(None) => break,
                Err(e) => panic!("reading from memory cannot fail: {e}"),
            }
            self.pump(&mut input, false);
        }
        for &id in &input.stores {
            self.host
                .handle_payload(&request(0, "stdin_eof", vec![term::uint(id)]));
        }
        self.pump(&mut input, true);
        for id in std::mem::take(&mut input.stores) {
            self.host
                .handle_payload(&request(0, "store_drop", vec![term::uint(id)]));
        }
        for key in std::mem::take(&mut input.keys) {
            self.host
                .handle_payload(&request(0, "module_drop", vec![term::binary(key)]));
        }
        // Notifications: nothing is owed, but a malformed one would log. Take what is there.
        while let Ok(frame) = self.rx.try_recv() {
            check_frame(&frame, &mut input);
        }
        self.inputs += 1;
        if self.inputs % 256 == 0 {
            check_threads();
        }
    }

    fn send(&mut self, payload: &[u8], base: u64, input: &mut Input) {
        let mut req = match decode_request(payload) {
            Ok(req) => req,
            Err(rejected) => {
                input.owe(rejected.id);
                self.host.handle_frame(payload.to_vec());
                return;
            }
        };
        let mut changed = false;
        let mut new_store = false;
        match req.op.as_str() {
            "init" | "module_compile" | "module_serialize" | "precompile" | "module_drop" => {}
            "store_new" => {
                if req.args.len() == 2 {
                    if input.stores.len() >= MAX_STORES {
                        return;
                    }
                    new_store = true;
                    changed |= limit_store(&mut req.args[0]);
                    changed |= strip_preopens(&mut req.args[1]);
                }
            }
            _ => {
                if let Some(ctx) = req.args.first_mut() {
                    changed |= relocate(ctx, base);
                }
                let timeout = match (req.op.as_str(), req.args.len()) {
                    ("call", 5) => Some(4),
                    ("instantiate", 7) => Some(6),
                    _ => None,
                };
                if let Some(i) = timeout {
                    changed |= cap_timeout(&mut req.args[i]);
                }
            }
        }
        for a in &req.args {
            collect_binaries(a, &mut input.keys);
        }
        if new_store {
            input.stores.push(self.next_store);
            self.next_store += 1;
        }
        if req.op == "cancel" {
            *input.maybe.entry(req.id).or_default() += 1;
        } else if !req.is_notification() {
            input.owe(req.id);
        }
        let rewritten = if changed {
            crate::encode(&term::tuple(vec![
                term::uint(req.id),
                term::atom(&req.op),
                term::tuple(req.args),
            ]))
        } else {
            None
        };
        let bytes = rewritten.as_deref().unwrap_or(payload);
        if trace() {
            match Term::decode(bytes) {
                Ok(t) => eprintln!("-> {t}"),
                Err(_) => eprintln!("-> {} bytes that do not decode", bytes.len()),
            }
        }
        self.host.handle_frame(bytes.to_vec());
    }

    /// Takes frames from the outbox until nothing is owed. With `all` false it also stops
    /// when a callback is waiting and the outbox is quiet (a later frame may answer it) or
    /// after [`PAYLOAD_WAIT`]; with `all` true a request unanswered for [`HANG`] is a
    /// failure.
    fn pump(&mut self, input: &mut Input, all: bool) {
        let mut last = Instant::now();
        while input.owing() > 0 {
            let wait = if all {
                HANG.saturating_sub(last.elapsed())
            } else if input.callback {
                SETTLE
            } else {
                PAYLOAD_WAIT.saturating_sub(last.elapsed())
            };
            match self.rx.recv_timeout(wait) {
                Ok(frame) => {
                    check_frame(&frame, input);
                    last = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) if !all => return,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "requests got no reply within {HANG:?}: {:?} (id => count)",
                    input.owed
                ),
                Err(RecvTimeoutError::Disconnected) => unreachable!("the host owns an outbox"),
            }
        }
        input.callback = false;
    }
}

/// Every frame is a tuple tagged by an atom; `{reply, Id, {ok, _} | {error, Reason}}`
/// with a reply owed for `Id`, `{callback, ...}` (7 elements), `{log, Binary}` checked
/// closely, other events (`stdio`, `stdin_read`, `callback_abandoned`) only for the tag.
fn check_frame(frame: &[u8], input: &mut Input) {
    assert!(frame.len() >= 4, "frame without a length prefix");
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(
        len,
        frame.len() - 4,
        "length prefix does not match the payload"
    );
    let t = Term::decode(&frame[4..]).expect("every outgoing frame decodes");
    if trace() {
        eprintln!("<- {t}");
    }
    let Term::Tuple(tuple) = &t else {
        panic!("outgoing frame is not a tuple: {}", term::show(&t))
    };
    let e = &tuple.elements;
    match (e.first().and_then(term::as_atom), e.len()) {
        (Some("reply"), 3) => {
            let id = term::as_u64(&e[1], "reply id").expect("reply id");
            let result = term::as_tuple(&e[2], 2, "result").expect("reply result");
            match term::as_atom(&result[0]) {
                Some("ok") => {}
                // A message, or `{exit, Code}` for a WASI program that exited non-zero.
                Some("error") => match &result[1] {
                    Term::Binary(_) => {}
                    Term::Tuple(x)
                        if x.elements.len() == 2
                            && term::as_atom(&x.elements[0]) == Some("exit")
                            && term::as_i64(&x.elements[1]).is_some() => {}
                    other => panic!("error reason is not a message: {}", term::show(other)),
                },
                _ => panic!("reply result is not ok/error: {}", term::show(&e[2])),
            }
            match input.owed.get_mut(&id) {
                Some(n) if *n > 0 => *n -= 1,
                _ if input.maybe.get(&id).is_some_and(|n| *n > 0) => {
                    *input.maybe.get_mut(&id).unwrap() -= 1;
                }
                _ => panic!(
                    "reply for request {id}, which is not owed one: {}",
                    term::show(&t)
                ),
            }
            input.owed.retain(|_, n| *n > 0);
        }
        // Events that wait for the BEAM: a later frame of the input may answer them.
        (Some("callback"), 7) | (Some("stdin_read"), 3) => input.callback = true,
        (Some("log"), 2) => {
            term::as_bytes(&e[1], "log message").expect("log message is a binary");
        }
        (Some("reply"), _) => panic!("malformed reply: {}", term::show(&t)),
        // Other events (stdio, callback_abandoned, ...) only need to be tagged tuples.
        (Some(_), _) => {}
        _ => panic!("outgoing frame is not a tagged tuple: {}", term::show(&t)),
    }
}

/// `WASMEX_FUZZ_TRACE=1` prints every frame in and out (to replay one input by hand).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WASMEX_FUZZ_TRACE").is_ok_and(|v| v == "1"))
}

/// A small non-negative integer store id `n` becomes `base + n`; `{caller, S, C}` too.
fn relocate(ctx: &mut Term, base: u64) -> bool {
    match ctx {
        Term::FixInteger(i) if i.value > 0 => {
            *ctx = term::uint(base + i.value as u64);
            true
        }
        Term::Tuple(t)
            if t.elements.len() == 3 && term::as_atom(&t.elements[0]) == Some("caller") =>
        {
            relocate(&mut t.elements[1], base)
        }
        _ => false,
    }
}

fn cap_timeout(t: &mut Term) -> bool {
    let too_long = match term::as_atom(t) {
        Some("infinity") => true,
        _ => term::as_u64(t, "timeout").is_ok_and(|ms| ms > MAX_TIMEOUT_MS),
    };
    if too_long {
        *t = term::uint(MAX_TIMEOUT_MS);
    }
    too_long
}

/// `nil` or a map of limits gets `memory_size` and `table_elements` no higher than ours.
fn limit_store(limits: &mut Term) -> bool {
    let mut pairs: Vec<(Term, Term)> = match limits {
        Term::Map(m) => m.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ref t if term::is_nil(t) => Vec::new(),
        _ => return false, // an error reply; nothing is created
    };
    let mut changed = false;
    for (key, max) in [("memory_size", MAX_MEMORY), ("table_elements", MAX_TABLE)] {
        let k = term::atom(key);
        match pairs.iter_mut().find(|(pk, _)| *pk == k) {
            Some((_, v)) => {
                if term::is_nil(v) || term::as_u64(v, key).is_ok_and(|n| n > max) {
                    *v = term::uint(max);
                    changed = true;
                }
            }
            None => {
                pairs.push((k, term::uint(max)));
                changed = true;
            }
        }
    }
    *limits = term::map(pairs);
    changed
}

/// WASI options without `preopen`.
fn strip_preopens(wasi: &mut Term) -> bool {
    let Term::Map(m) = wasi else { return false };
    m.map.remove(&term::atom("preopen")).is_some()
}

/// Every binary in a term (module keys are among them), without recursion.
fn collect_binaries(t: &Term, out: &mut HashSet<Vec<u8>>) {
    let mut stack = vec![t];
    while let Some(t) = stack.pop() {
        match t {
            Term::Binary(b) => {
                out.insert(b.bytes.clone());
            }
            Term::Tuple(x) => stack.extend(&x.elements),
            Term::List(x) => stack.extend(&x.elements),
            Term::ImproperList(x) => {
                stack.extend(&x.elements);
                stack.push(&x.last);
            }
            Term::Map(m) => {
                for (k, v) in &m.map {
                    stack.push(k);
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
}

/// Store and compile threads end with their input; a steady rise is a leak.
fn check_threads() {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(threads < 200, "{threads} threads alive: store threads leak");
}
