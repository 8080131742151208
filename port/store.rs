//! A store and the worker thread that owns it. Requests for a store queue on its
//! channel and run one at a time; while Wasm waits in an import callback, the callback
//! keeps serving requests addressed to its caller (see `callback.rs`).

use crate::host::Shared;
use crate::protocol::{reply, reply_term, Context, Request};
use crate::stdio::StdinReceiver;
use crate::term::{self, Fallible};
use crate::{global, instance, memory, wasi};
use eetf::Term;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use wasmtime::{
    AsContextMut, Instance, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;

pub enum StoreMsg {
    Request(Request),
    CallbackReturn {
        callback_id: u64,
        result: Term,
    },
    /// Wakes a waiting callback so it notices a cancellation.
    Cancel,
    Drop,
}

/// The request the store is serving at the top level, its deadline, and the requests that
/// were cancelled: what decides whether the running call must stop. Shared with the
/// store's stdin stream, whose reads waiting for input must stop too.
#[derive(Default)]
pub struct CallState {
    request: AtomicU64,
    /// The deadline and the timeout it came from.
    deadline: Mutex<Option<(Instant, Duration)>>,
    pub cancellations: Cancellations,
}

impl CallState {
    fn begin(&self, request: u64) {
        self.request.store(request, Ordering::Release);
    }

    fn set_timeout(&self, timeout: Option<Duration>) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = timeout.map(|t| (Instant::now() + t, t));
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.lock().ok().and_then(|d| d.map(|(at, _)| at))
    }

    /// Whether the running call must stop, and why.
    pub fn stop_reason(&self) -> Option<String> {
        if self
            .cancellations
            .contains(self.request.load(Ordering::Acquire))
        {
            return Some("cancelled: the caller stopped waiting".into());
        }
        match self.deadline.lock().ok().and_then(|d| *d) {
            Some((at, timeout)) if Instant::now() >= at => Some(format!(
                "timed out: the call did not finish within {} ms and was stopped",
                timeout.as_millis()
            )),
            _ => None,
        }
    }
}

/// Ids of requests the BEAM stopped waiting for (their caller went away). Shared with the
/// reader thread, which adds to it; the store skips such requests, or interrupts the one
/// it is running.
#[derive(Clone, Default)]
pub struct Cancellations(Arc<Mutex<HashSet<u64>>>);

impl Cancellations {
    pub fn cancel(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(request);
        }
    }

    pub fn contains(&self, request: u64) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(&request))
    }

    /// Forgets `request` (a host-wide request that has been answered).
    pub fn forget(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&request);
        }
    }

    /// Forgets `request` and every earlier one: requests are served in the order their
    /// ids were given, so cancellations of those can no longer matter.
    fn settle(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.retain(|&id| id > request);
        }
    }
}

pub struct StoreData {
    pub id: u64,
    pub shared: Arc<Shared>,
    pub inbox: Receiver<StoreMsg>,
    pub limits: StoreLimits,
    pub wasi: WasiP1Ctx,
    /// Whether instances of this store get the WASI imports.
    pub wasi_enabled: bool,
    pub instances: Vec<Instance>,
    /// Nesting of calls (a callback that calls back into Wasm adds one).
    pub depth: u32,
    /// Callers of the import callbacks now waiting, innermost last.
    pub callers: Vec<u64>,
    pub next_callback_id: u64,
    /// Requests for the store itself that arrived while a callback was waiting.
    pub deferred: VecDeque<Request>,
    pub dropped: bool,
    pub call: Arc<CallState>,
    /// How long the last wait for a message took (see `receive`).
    pub last_wait: Duration,
}

pub type Cx<'a> = StoreContextMut<'a, StoreData>;

/// What a new store starts from.
pub struct StoreInit {
    pub limits: Term,
    pub wasi: Term,
    pub stdin: StdinReceiver,
    pub cancellations: Cancellations,
    /// Told the store's id when its thread ends.
    pub ended: Sender<u64>,
}

/// Creates store `id` on a new thread; the reply to `reply_id` says whether it worked.
pub fn spawn(shared: Arc<Shared>, id: u64, reply_id: u64, init: StoreInit) -> Sender<StoreMsg> {
    let (tx, rx) = channel();
    let outbox = shared.outbox.clone();
    let spawned = thread::Builder::new()
        .name(format!("store-{id}"))
        .spawn(move || {
            let outbox = shared.outbox.clone();
            let ended = init.ended.clone();
            let (deferred, inbox) = match prepare(&shared, id, init) {
                Ok(parts) => {
                    let mut store = create(shared, id, parts, rx);
                    outbox.send(&reply(reply_id, Ok(term::uint(id))));
                    serve(&mut store);
                    let data = store.into_data();
                    (data.deferred, data.inbox)
                }
                Err(e) => {
                    outbox.send(&reply(reply_id, Err(e)));
                    (VecDeque::new(), rx)
                }
            };
            // The host forgets the store (later requests get "unknown store") and then
            // drops its sender; until then every request that still comes is refused, so
            // none is left unanswered.
            let _ = ended.send(id);
            let queued = inbox.into_iter().filter_map(|msg| match msg {
                StoreMsg::Request(req) => Some(req),
                _ => None,
            });
            refuse(&outbox, deferred.into_iter().chain(queued));
        });
    if let Err(e) = spawned {
        outbox.send(&reply(
            reply_id,
            Err(format!("cannot start a store thread: {e}")),
        ));
    }
    tx
}

/// Answers requests a store will never serve, so that no caller waits forever.
fn refuse(outbox: &crate::outbox::Outbox, requests: impl Iterator<Item = Request>) {
    for req in requests {
        outbox.send(&reply(
            req.id,
            Err("the store was dropped before serving this request".into()),
        ));
    }
}

/// What a store is made of, checked before it is made.
struct StoreParts {
    limits: StoreLimits,
    wasi: WasiP1Ctx,
    wasi_enabled: bool,
    call: Arc<CallState>,
}

fn prepare(shared: &Shared, id: u64, init: StoreInit) -> Fallible<StoreParts> {
    let limits = parse_limits(&init.limits)?;
    let wasi_enabled = !term::is_nil(&init.wasi);
    let call = Arc::new(CallState {
        cancellations: init.cancellations,
        ..CallState::default()
    });
    let stdio = wasi::Stdio {
        outbox: shared.outbox.clone(),
        store_id: id,
        stdin: init.stdin,
        call: call.clone(),
    };
    let wasi = wasi::build(wasi_enabled.then_some(&init.wasi), stdio)?;
    Ok(StoreParts {
        limits,
        wasi,
        wasi_enabled,
        call,
    })
}

fn create(
    shared: Arc<Shared>,
    id: u64,
    parts: StoreParts,
    inbox: Receiver<StoreMsg>,
) -> Store<StoreData> {
    let engine = shared.engine.clone();
    let data = StoreData {
        id,
        shared,
        inbox,
        limits: parts.limits,
        wasi: parts.wasi,
        wasi_enabled: parts.wasi_enabled,
        instances: Vec::new(),
        depth: 0,
        callers: Vec::new(),
        next_callback_id: 1,
        deferred: VecDeque::new(),
        dropped: false,
        call: parts.call,
        last_wait: Duration::ZERO,
    };
    let mut store = Store::new(&engine, data);
    store.limiter(|d| &mut d.limits);
    store.epoch_deadline_callback(|cx| {
        Ok(if cx.data().call.stop_reason().is_some() {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        })
    });
    store
}

/// `nil` or `%{memory_size, table_elements, instances, tables, memories}` (each optional).
fn parse_limits(t: &Term) -> Fallible<StoreLimits> {
    let mut b = StoreLimitsBuilder::new();
    if term::is_nil(t) {
        return Ok(b.build());
    }
    let m = term::as_map(t, "store limits")?;
    let get = |k: &str| Ok::<_, String>(term::map_u64(m, k)?.map(|n| n as usize));
    if let Some(n) = get("memory_size")? {
        b = b.memory_size(n);
    }
    if let Some(n) = get("table_elements")? {
        b = b.table_elements(n);
    }
    if let Some(n) = get("instances")? {
        b = b.instances(n);
    }
    if let Some(n) = get("tables")? {
        b = b.tables(n);
    }
    if let Some(n) = get("memories")? {
        b = b.memories(n);
    }
    Ok(b.build())
}

fn serve(store: &mut Store<StoreData>) {
    loop {
        let next = match store.data_mut().deferred.pop_front() {
            Some(req) => StoreMsg::Request(req),
            None => match receive(store.data_mut(), None) {
                Ok(msg) => msg,
                Err(_) => return,
            },
        };
        match next {
            StoreMsg::Request(req) => answer(store.as_context_mut(), &req),
            // A late answer to a callback whose call already ended, or a wake-up for a
            // cancellation that came after the call: nobody waits.
            StoreMsg::CallbackReturn { .. } | StoreMsg::Cancel => {}
            StoreMsg::Drop => return,
        }
        if store.data().dropped {
            return;
        }
    }
}

static SPINNING: AtomicBool = AtomicBool::new(false);

/// The right to spin, held by at most one thread of the process.
struct SpinSlot;

impl SpinSlot {
    fn take() -> Option<SpinSlot> {
        SPINNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| SpinSlot)
    }
}

impl Drop for SpinSlot {
    fn drop(&mut self) {
        SPINNING.store(false, Ordering::Release);
    }
}

/// The next message for the store, waiting at most until `deadline`. Spins on the channel
/// for the host's spin time before blocking: a request that follows a reply within that
/// time (sequential calls, callback answers) then costs no thread wake-up.
pub fn receive(
    data: &mut StoreData,
    deadline: Option<Instant>,
) -> Result<StoreMsg, RecvTimeoutError> {
    let spin = data.shared.spin;
    let start = Instant::now();
    let msg = wait_for_message(data, spin, deadline);
    data.last_wait = start.elapsed();
    msg
}

fn wait_for_message(
    data: &StoreData,
    spin: Duration,
    deadline: Option<Instant>,
) -> Result<StoreMsg, RecvTimeoutError> {
    // Spin only while requests come back-to-back (the last one arrived within the spin
    // time): when the CPUs are contended, waits grow and spinning stops by itself. And one
    // spinner per process at most; the slot is given back before blocking.
    let worth_it = !spin.is_zero() && data.last_wait <= spin;
    if let Some(_slot) = worth_it.then(SpinSlot::take).flatten() {
        let start = Instant::now();
        loop {
            match data.inbox.try_recv() {
                Ok(msg) => return Ok(msg),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            // Read stdin from here while the main thread does not: a request for this
            // store then arrives without a thread wake-up.
            crate::input::drain_if_free();
            if start.elapsed() >= spin {
                break;
            }
            std::hint::spin_loop();
        }
    }
    match deadline {
        Some(d) => data
            .inbox
            .recv_timeout(d.saturating_duration_since(Instant::now())),
        None => data
            .inbox
            .recv()
            .map_err(|_| RecvTimeoutError::Disconnected),
    }
}

/// What a request is answered with: a value, or a reply frame already made (memory reads
/// can be megabytes: their frame is built around the bytes, not through a term).
enum Answer {
    Value(Term),
    Frame(Vec<u8>),
}

/// Runs a request against the store (or a waiting caller) and sends its reply.
/// Notifications never reach a store: the host handles them.
pub fn answer(mut cx: Cx<'_>, req: &Request) {
    let top_level = cx.data().depth == 0;
    if top_level {
        cx.data().call.begin(req.id);
    }
    let result = if top_level && cx.data().call.cancellations.contains(req.id) {
        Err(term::string("cancelled: the caller stopped waiting"))
    } else {
        handle(&mut cx, req)
    };
    let outbox = &cx.data().shared.outbox;
    match result {
        Ok(Answer::Frame(frame)) => outbox.send_frame(frame),
        Ok(Answer::Value(value)) => outbox.send(&reply_term(req.id, Ok(value))),
        Err(reason) => outbox.send(&reply_term(req.id, Err(reason))),
    }
    if top_level {
        cx.data().call.cancellations.settle(req.id);
    }
}

/// The answer to a request, or the reason it failed: a message binary, or `{exit, Code}`
/// for a WASI program that exited with a non-zero code.
fn handle(cx: &mut Cx<'_>, req: &Request) -> Result<Answer, Term> {
    check_caller(cx, req).map_err(|e| term::string(&e))?;
    match req.op.as_str() {
        "call" => instance::call(cx, req).map(Answer::Value),
        "memory_read" => memory::read_reply(cx, req)
            .map(Answer::Frame)
            .map_err(|e| term::string(&e)),
        _ => handle_op(cx, req)
            .map(Answer::Value)
            .map_err(|e| term::string(&e)),
    }
}

fn check_caller(cx: &Cx<'_>, req: &Request) -> Fallible<()> {
    if let Context::Caller { caller, .. } = Context::parse(req.arg(0)?)? {
        if !cx.data().callers.contains(&caller) {
            return Err(
                "the caller is no longer valid: it may only be used inside its import callback"
                    .into(),
            );
        }
    }
    Ok(())
}

fn handle_op(cx: &mut Cx<'_>, req: &Request) -> Fallible<Term> {
    match req.op.as_str() {
        "instantiate" => instance::instantiate(cx, req),
        "memory_size" => memory::size(cx, req),
        "memory_grow" => memory::grow(cx, req),
        "memory_write" => memory::write(cx, req),
        "global_get" => global::get(cx, req),
        "global_set" => global::set(cx, req),
        "fuel_get" => {
            req.expect_arity(1)?;
            cx.get_fuel()
                .map(term::uint)
                .map_err(|e| format!("Could not get fuel: {e}"))
        }
        "fuel_set" => {
            req.expect_arity(2)?;
            let fuel = term::as_u64(req.arg(1)?, "fuel")?;
            cx.set_fuel(fuel)
                .map_err(|e| format!("Could not set fuel: {e}"))?;
            Ok(term::atom("ok"))
        }
        other => Err(format!("unknown op: {other}")),
    }
}

/// Runs `f` under the call's deadline. Only the outermost call sets the deadline; calls
/// nested inside callbacks share it.
pub fn with_deadline<R>(
    cx: &mut Cx<'_>,
    timeout: Option<Duration>,
    f: impl FnOnce(&mut Cx<'_>) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let outermost = cx.data().depth == 0;
    let _ticking = if outermost {
        cx.data().call.set_timeout(timeout);
        cx.set_epoch_deadline(1);
        Some(cx.data().shared.ticker.running())
    } else {
        None
    };
    cx.data_mut().depth += 1;
    let result = f(cx);
    cx.data_mut().depth -= 1;
    result
}

/// `infinity` or milliseconds.
pub fn parse_timeout(t: &Term) -> Fallible<Option<Duration>> {
    if term::as_atom(t) == Some("infinity") {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(term::as_u64(t, "timeout")?)))
}
