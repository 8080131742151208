//! A store and its inbox. Requests for a store queue in its inbox and run one at a time,
//! on whichever worker thread runs the store (see `workers.rs`); while Wasm waits in an
//! import callback, the callback keeps serving requests addressed to its caller (see
//! `callback.rs`).

use crate::affinity;
use crate::host::Shared;
use crate::inbox::{Inbox, Pushed};
use crate::outbox::Outbox;
use crate::protocol::{reply, reply_term, Context, Request};
use crate::stdio::StdinReceiver;
use crate::term::{self, Fallible};
use crate::wasi_fds::FdBudget;
use crate::workers::{self, Task};
use crate::{executor, global, instance, memory, wasi};
use eetf::Term;
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
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

    pub fn set_timeout(&self, timeout: Option<Duration>) {
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
/// dispatcher, which adds to it; the store skips such requests, or interrupts the one
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
    pub inbox: Arc<Inbox<StoreMsg>>,
    pub limits: StoreLimits,
    pub wasi: WasiP1Ctx,
    /// How many files the WASI program may hold open (`wasi_fds.rs`).
    pub fds: FdBudget,
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
    /// Component instances and their WASI preview 2 context (`component/state.rs`).
    pub component: crate::component::ComponentState,
}

pub type Cx<'a> = StoreContextMut<'a, StoreData>;

/// What a new store starts from.
pub struct StoreInit {
    pub limits: Term,
    pub wasi: Term,
    pub stdin: StdinReceiver,
    pub cancellations: Cancellations,
    /// Told the store's id when it ends.
    pub ended: Sender<u64>,
}

/// Stores told to drop and not yet gone: their instances still hold slots of the
/// engine's pool (see `engine.rs`) until a worker gets to them. An instantiation that
/// finds the slots full waits for these (see `instance::instantiate`), so that one
/// that follows a drop (a restarted instance) does not fail for a slot about to be free.
#[derive(Default)]
pub struct Drops {
    counts: Mutex<DropCounts>,
    done: Condvar,
}

#[derive(Default)]
struct DropCounts {
    /// Stores whose drop is counted (their `drop_counted` mark is set).
    pending: u64,
    /// Drops done so far.
    finished: u64,
}

impl Drops {
    fn lock(&self) -> std::sync::MutexGuard<'_, DropCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a store's drop as pending, once: `counted` is the store's mark, changed
    /// only under the lock, so the count and the marks always agree.
    fn begin(&self, counted: &AtomicBool) {
        let mut counts = self.lock();
        if !counted.swap(true, Ordering::SeqCst) {
            counts.pending += 1;
        }
    }

    /// Counts a store's drop as done, if it was counted.
    fn end(&self, counted: &AtomicBool) {
        let mut counts = self.lock();
        if counted.swap(false, Ordering::SeqCst) {
            counts.pending -= 1;
            counts.finished += 1;
            self.done.notify_all();
        }
    }

    /// How many drops are done so far.
    pub fn done(&self) -> u64 {
        self.lock().finished
    }

    /// Waits until more than `seen` drops are done, or `until`; whether they are. Returns
    /// at once when none is pending (none would be done).
    pub fn wait_past(&self, seen: u64, until: Instant) -> bool {
        let mut counts = self.lock();
        while counts.finished == seen {
            let left = until.checked_duration_since(Instant::now());
            let Some(left) = left.filter(|_| counts.pending > 0) else {
                return false;
            };
            counts = self
                .done
                .wait_timeout(counts, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

/// A store and its inbox, run by the workers (see `workers.rs`) while messages wait.
pub struct StoreTask {
    id: u64,
    /// The host's pending drops, and whether this store's drop is counted there.
    drops: Arc<Drops>,
    drop_counted: AtomicBool,
    /// Whether the store ended in a panic (a bug): what it refuses then says so.
    failed: AtomicBool,
    inbox: Arc<Inbox<StoreMsg>>,
    slot: Mutex<Slot>,
    outbox: Outbox,
    /// Told the store's id when it ends.
    ended: Sender<u64>,
}

enum Slot {
    /// Not made yet: the first run makes it and answers `reply_id`.
    Starting {
        shared: Arc<Shared>,
        reply_id: u64,
        init: StoreInit,
    },
    Live(Box<Store<StoreData>>),
    Ended,
}

impl StoreTask {
    /// Store `id`, made by a worker; the reply to `reply_id` says whether it worked.
    pub fn start(shared: Arc<Shared>, id: u64, reply_id: u64, init: StoreInit) -> Arc<StoreTask> {
        let task = Arc::new(StoreTask {
            id,
            drops: shared.drops.clone(),
            drop_counted: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            inbox: Arc::new(Inbox::claimed()),
            outbox: shared.outbox.clone(),
            ended: init.ended.clone(),
            slot: Mutex::new(Slot::Starting {
                shared,
                reply_id,
                init,
            }),
        });
        // The first run makes the store.
        workers::schedule(task.clone());
        task
    }

    /// Gives `msg` to the store. A request for a store that has ended is refused at once.
    pub fn send(self: &Arc<Self>, msg: StoreMsg) {
        match self.inbox.push(msg) {
            Ok(Pushed::Schedule) => workers::schedule(self.clone()),
            Ok(Pushed::Queued) => {}
            Err(msg) => self.refuse(std::iter::once(msg)),
        }
    }

    /// Tells the store to drop once it has served what it holds. Counted as a pending
    /// drop until it has ended (see [`Drops`]).
    pub fn drop_store(self: &Arc<Self>) {
        self.drops.begin(&self.drop_counted);
        match self.inbox.push(StoreMsg::Drop) {
            Ok(Pushed::Schedule) => workers::schedule(self.clone()),
            Ok(Pushed::Queued) => {}
            // Already ended (and counted off, or about to be).
            Err(_) => self.settle_drop(),
        }
    }

    fn settle_drop(&self) {
        self.drops.end(&self.drop_counted);
    }

    /// Whether the store ended in a panic (a bug).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Answers requests the store will never serve, so that no caller waits forever.
    fn refuse(&self, msgs: impl IntoIterator<Item = StoreMsg>) {
        let reason = if self.failed() {
            STORE_FAILED
        } else {
            STORE_DROPPED
        };
        for msg in msgs {
            if let StoreMsg::Request(req) = msg {
                workers::note_answered();
                self.outbox.send(&reply(req.id, Err(reason.into())));
            }
        }
    }

    /// The store is gone: refuses what was still queued for it, and what comes later.
    /// Called once the wasmtime store is gone, with its instances.
    fn end(&self, deferred: VecDeque<Request>) {
        let queued = self.inbox.close();
        self.settle_drop();
        self.refuse(deferred.into_iter().map(StoreMsg::Request).chain(queued));
        let _ = self.ended.send(self.id);
    }

    /// Like `end`, after a panic: the requests it leaves, and later ones, learn why.
    fn end_failed(&self, deferred: VecDeque<Request>) {
        self.failed.store(true, Ordering::Relaxed);
        self.end(deferred);
    }
}

impl Task for StoreTask {
    fn run(self: Arc<Self>) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Left `Ended` while the store runs: a panic (a bug) leaves it ended.
            match std::mem::replace(&mut *slot, Slot::Ended) {
                Slot::Starting {
                    shared,
                    reply_id,
                    init,
                } => {
                    let made = catch_unwind(AssertUnwindSafe(|| {
                        let parts = prepare(&shared, self.id, init)?;
                        Ok(create(shared, self.id, parts, self.inbox.clone()))
                    }));
                    match made {
                        Ok(Ok(store)) => {
                            self.outbox.send(&reply(reply_id, Ok(term::uint(self.id))));
                            *slot = Slot::Live(Box::new(store));
                        }
                        Ok(Err(e)) => {
                            self.outbox.send(&reply(reply_id, Err(e)));
                            return self.end(VecDeque::new());
                        }
                        Err(_) => {
                            self.outbox.send(&reply(reply_id, Err(STORE_FAILED.into())));
                            return self.end_failed(VecDeque::new());
                        }
                    }
                }
                Slot::Live(mut store) => match catch_unwind(AssertUnwindSafe(|| serve(&mut store)))
                {
                    Ok(Served::Ended) => return self.end(store.into_data().deferred),
                    Ok(Served::Idle) => *slot = Slot::Live(store),
                    // A panic (a bug): the request it hit was answered (see `answer`);
                    // the requests deferred meanwhile are refused, and the store ends.
                    Err(_) => {
                        let deferred = std::mem::take(&mut store.data_mut().deferred);
                        // Its requests are answered even if the drop panics too.
                        let _ = catch_unwind(AssertUnwindSafe(|| drop(store)));
                        return self.end_failed(deferred);
                    }
                },
                Slot::Ended => return self.end(VecDeque::new()),
            }
            if self.inbox.release_if_empty() {
                return;
            }
        }
    }

    fn abort(self: Arc<Self>) {
        self.end_failed(VecDeque::new());
    }
}

/// The answer to a request a store will not serve because it was dropped first.
const STORE_DROPPED: &str = "the store was dropped before serving this request";

/// The answer to the request a store panicked on (a bug in this program), and to those
/// it left: the store is gone, the host and its other stores work on.
pub const STORE_FAILED: &str =
    "internal error: the Wasm host failed while serving this request, and dropped the store";

/// Whether this process was started with `WASMEX_PORT_FAULTS` set: tests then make a
/// store panic on purpose (op `fault_panic`), to check that nobody is left waiting.
fn faults_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("WASMEX_PORT_FAULTS").is_some())
}

/// What a store is made of, checked before it is made.
struct StoreParts {
    limits: StoreLimits,
    wasi: WasiP1Ctx,
    fds: FdBudget,
    wasi_enabled: bool,
    call: Arc<CallState>,
    component: crate::component::ComponentState,
}

fn prepare(shared: &Shared, id: u64, init: StoreInit) -> Fallible<StoreParts> {
    let limits = parse_limits(&init.limits)?;
    // `{p2, Options}`: WASI preview 2 for components (`component/wasi.rs`); preview 1 off.
    let p2 = crate::component::wasi::p2_options(&init.wasi);
    let wasi_enabled = !term::is_nil(&init.wasi) && p2.is_none();
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
    let (wasi, fds, component) = match p2 {
        Some(options) => (
            wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
            FdBudget::default(),
            crate::component::wasi::build(options, stdio)?,
        ),
        None => {
            let (wasi, fds) = wasi::build(wasi_enabled.then_some(&init.wasi), stdio)?;
            (wasi, fds, Default::default())
        }
    };
    Ok(StoreParts {
        limits,
        wasi,
        fds,
        wasi_enabled,
        call,
        component,
    })
}

fn create(
    shared: Arc<Shared>,
    id: u64,
    parts: StoreParts,
    inbox: Arc<Inbox<StoreMsg>>,
) -> Store<StoreData> {
    let engine = shared.engine.clone();
    let data = StoreData {
        id,
        shared,
        inbox,
        limits: parts.limits,
        wasi: parts.wasi,
        fds: parts.fds,
        wasi_enabled: parts.wasi_enabled,
        instances: Vec::new(),
        depth: 0,
        callers: Vec::new(),
        next_callback_id: 1,
        deferred: VecDeque::new(),
        dropped: false,
        call: parts.call,
        last_wait: Duration::ZERO,
        component: parts.component,
    };
    let mut store = Store::new(&engine, data);
    store.limiter(|d| &mut d.limits);
    store.epoch_deadline_callback(|cx| {
        Ok(if cx.data().call.stop_reason().is_some() {
            UpdateDeadline::Interrupt
        } else {
            // Lets the call's waiter (`executor::stoppable`) look at it every tick.
            UpdateDeadline::Yield(1)
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

#[derive(PartialEq)]
enum Served {
    /// Nothing left to do for now.
    Idle,
    /// Dropped: the store is to be freed.
    Ended,
}

/// Serves what is queued for the store: requests deferred by a callback first.
fn serve(store: &mut Store<StoreData>) -> Served {
    let mut drained = Instant::now();
    loop {
        // A store with a long queue keeps its worker; if that worker reads stdin, it
        // reads it here now and then (the main thread does not meanwhile).
        if drained.elapsed() >= workers::DRAIN_EVERY {
            workers::drain_point();
            drained = Instant::now();
        }
        let next = match store.data_mut().deferred.pop_front() {
            Some(req) => StoreMsg::Request(req),
            None => match store.data().inbox.try_pop() {
                Some(msg) => msg,
                None => return Served::Idle,
            },
        };
        match next {
            StoreMsg::Request(req) => {
                let start = Instant::now();
                executor::block_on(answer(store.as_context_mut(), &req));
                workers::note_request(start.elapsed());
            }
            // A late answer to a callback whose call already ended, or a wake-up for a
            // cancellation that came after the call: nobody waits.
            StoreMsg::CallbackReturn { .. } | StoreMsg::Cancel => {}
            StoreMsg::Drop => return Served::Ended,
        }
        if store.data().dropped {
            return Served::Ended;
        }
    }
}

/// The next message for the store, waiting at most until `deadline` (`None` once it has
/// passed). Used inside a run (an import callback waiting for its answer): spins for the
/// host's spin time first, reading stdin meanwhile, so that an answer that comes within
/// that time costs no thread wake-up.
pub fn receive(data: &mut StoreData, deadline: Option<Instant>) -> Option<StoreMsg> {
    // Spin only while messages come back-to-back (the last one arrived within the spin
    // time): when the CPUs are contended, waits grow and spinning stops by itself.
    let spin = data.shared.spin;
    let spin = if data.last_wait <= spin {
        spin
    } else {
        Duration::ZERO
    };
    let start = Instant::now();
    let _waiting = workers::waiting();
    let msg = data
        .inbox
        .pop_wait(spin, deadline, || affinity::spin_turn(true));
    affinity::restore();
    data.last_wait = start.elapsed();
    msg
}

/// What a request is answered with: a value, or a reply frame already made (memory reads
/// can be megabytes: their frame is built around the bytes, not through a term).
enum Answer {
    Value(Term),
    Frame(Vec<u8>),
}

/// Runs a request against the store (or a waiting caller) and sends its reply.
/// Notifications never reach a store: the host handles them.
pub async fn answer(mut cx: Cx<'_>, req: &Request) {
    let top_level = cx.data().depth == 0;
    if top_level {
        cx.data().call.begin(req.id);
    }
    // A nested request whose outer call is stopped is dropped unanswered: this answers it.
    let mut pending = Unanswered {
        outbox: cx.data().shared.outbox.clone(),
        call: cx.data().call.clone(),
        id: Some(req.id),
    };
    // A panic (a bug) ends the store (see `StoreTask::run`), but this request, and any it
    // is nested in, still get an answer on the way out.
    let mut panic = None;
    let result = if top_level && cx.data().call.cancellations.contains(req.id) {
        Err(term::string("cancelled: the caller stopped waiting"))
    } else {
        executor::catching(handle(&mut cx, req))
            .await
            .unwrap_or_else(|p| {
                panic = Some(p);
                Err(term::string(STORE_FAILED))
            })
    };
    pending.id = None;
    // The WASI output written so far goes out before the reply (see `output.rs`).
    if cx.data().wasi_enabled || cx.data().component.has_wasi() {
        crate::output::flush_store(cx.data().id);
    }
    let outbox = &cx.data().shared.outbox;
    workers::note_answered();
    match result {
        Ok(Answer::Frame(frame)) => outbox.send_frame(frame),
        Ok(Answer::Value(value)) => outbox.send(&reply_term(req.id, Ok(value))),
        Err(reason) => outbox.send(&reply_term(req.id, Err(reason))),
    }
    if let Some(panic) = panic {
        resume_unwind(panic);
    }
    if top_level {
        cx.data().call.cancellations.settle(req.id);
    }
}

/// Answers a request whose answer was dropped before it was sent (its outer call was
/// stopped): its caller learns why.
struct Unanswered {
    outbox: Outbox,
    call: Arc<CallState>,
    id: Option<u64>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let reason = self
                .call
                .stop_reason()
                .unwrap_or_else(|| "stopped: the call it was part of ended".into());
            workers::note_answered();
            self.outbox.send(&reply(id, Err(reason)));
        }
    }
}

/// The answer to a request, or the reason it failed: a message binary, or `{exit, Code}`
/// for a WASI program that exited with a non-zero code.
async fn handle(cx: &mut Cx<'_>, req: &Request) -> Result<Answer, Term> {
    check_caller(cx, req).map_err(|e| term::string(&e))?;
    match req.op.as_str() {
        "call" => instance::call(cx, req).await.map(Answer::Value),
        "instantiate" => instance::instantiate(cx, req)
            .await
            .map(Answer::Value)
            .map_err(|e| term::string(&e)),
        op if op.starts_with("component_") => crate::component::serve::handle(cx, req)
            .await
            .map(Answer::Value),
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
        "memory_size" => memory::size(cx, req),
        "memory_grow" => memory::grow(cx, req),
        "memory_write" => memory::write(cx, req),
        "memory_write_bulk" => memory::write_bulk(cx, req),
        "memory_read_bulk" => memory::read_bulk(cx, req),
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
        // No panic message: `resume_unwind` skips the panic hook.
        "fault_panic" if faults_enabled() => resume_unwind(Box::new("an injected fault")),
        other => Err(format!("unknown op: {other}")),
    }
}

/// A call or an instantiation of this store, from [`enter`] to [`leave`]. Only the
/// outermost one sets the deadline and may be stopped; calls nested inside callbacks
/// share it.
pub struct CallScope {
    outermost: bool,
    /// The outermost call's state, which says when it must stop.
    call: Option<Arc<CallState>>,
    _ticking: Option<crate::engine::TickGuard>,
}

/// Begins a call or an instantiation that must stop after `timeout`.
pub fn enter(cx: &mut Cx<'_>, timeout: Option<Duration>) -> CallScope {
    let outermost = cx.data().depth == 0;
    let ticking = if outermost {
        cx.data().call.set_timeout(timeout);
        cx.set_epoch_deadline(1);
        Some(cx.data().shared.ticker.running())
    } else {
        None
    };
    cx.data_mut().depth += 1;
    CallScope {
        outermost,
        call: outermost.then(|| cx.data().call.clone()),
        _ticking: ticking,
    }
}

/// Runs `future`, the Wasm of `scope`, and drops it if it is the outermost call and must
/// stop (see `executor::stoppable`).
pub async fn run<R>(
    scope: &CallScope,
    future: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    executor::stoppable(scope.call.clone(), future)
        .await
        .unwrap_or_else(|reason| Err(wasmtime::Error::msg(reason)))
}

/// Ends a call or an instantiation.
pub fn leave(cx: &mut Cx<'_>, scope: CallScope) {
    let data = cx.data_mut();
    data.depth -= 1;
    if scope.outermost {
        // A stopped call leaves no callback waiting and nothing nested.
        data.depth = 0;
        data.callers.clear();
    }
}

/// `infinity` or milliseconds.
pub fn parse_timeout(t: &Term) -> Fallible<Option<Duration>> {
    if term::as_atom(t) == Some("infinity") {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(term::as_u64(t, "timeout")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn waiting_for_a_drop_with_none_pending_returns_at_once() {
        let drops = Drops::default();
        assert!(!drops.wait_past(drops.done(), soon()));
    }

    #[test]
    fn a_drop_done_while_another_begins_ends_the_wait() {
        let drops = Arc::new(Drops::default());
        let (a, b) = (AtomicBool::new(false), AtomicBool::new(false));
        drops.begin(&a);
        let seen = drops.done();
        let waiter = {
            let drops = drops.clone();
            std::thread::spawn(move || drops.wait_past(seen, soon()))
        };
        // The count of pending drops is back where it was; one is done all the same.
        drops.begin(&b);
        drops.end(&a);
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn a_drop_counts_once_however_often_it_is_begun_or_ended() {
        let drops = Drops::default();
        let a = AtomicBool::new(false);
        drops.begin(&a);
        drops.begin(&a);
        drops.end(&a);
        drops.end(&a);
        assert_eq!(drops.lock().pending, 0);
        assert_eq!(drops.done(), 1);
    }

    #[test]
    fn waiting_for_a_drop_that_is_not_done_gives_up_at_the_deadline() {
        let drops = Drops::default();
        drops.begin(&AtomicBool::new(false));
        let until = Instant::now() + Duration::from_millis(20);
        assert!(!drops.wait_past(drops.done(), until));
    }
}
