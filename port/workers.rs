//! The worker threads that run stores. A store is not tied to a thread: when a message
//! reaches a store that is not running, the store is queued here and the next free worker
//! runs it until its inbox is empty (see `store::StoreTask`). So a host with many stores
//! needs few threads, and a busy worker goes from store to store without sleeping.
//!
//! Wake-ups cost tens of microseconds on a virtual machine, so a worker is woken only when
//! no other will get to the queue soon:
//!
//! * a worker that has just finished spins on the queue for the spin time (one spinner per
//!   process, see [`SpinSlot`]), reading stdin meanwhile, before it blocks;
//! * while a worker runs a store, newly queued stores wait for it to finish. The monitor
//!   thread looks at the queue every tick and adds a worker (wakes one, or starts one)
//!   when the queue did not move for a tick (a long call, a WASI read) or when the tasks
//!   run are long enough for a second CPU to pay off (calls of [`LONG_TASK`] or more);
//! * otherwise a queued store wakes an idle worker, or starts one if none is idle.
//!
//! A worker that finds work while spinning, while requests are short and overlap (see
//! [`Overlap`]), also takes over reading stdin from the main thread (see `input.rs`),
//! between its tasks and while it spins. It gives the reading back before it blocks,
//! waits in an import callback or a WASI read, or starts a long task, and the monitor
//! takes it back from a worker that has been busy for a tick. Requests that come one at
//! a time are left to the main thread, and the spinning worker keeps off its CPU (see
//! `affinity.rs`).
//!
//! A worker waiting in an import callback does not count as running (see [`waiting`]).
//! Workers that stay idle for [`IDLE_EXIT`] end, down to one.

use crate::input;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Work a worker runs: a store with messages waiting.
pub trait Task: Send + Sync + 'static {
    /// Runs until the task has nothing left to do.
    fn run(self: Arc<Self>);
    /// Called instead of finishing `run` when it panicked (a bug): the task must answer
    /// what it still holds and refuse what comes later.
    fn abort(self: Arc<Self>);
}

/// How long an idle worker waits for work before it ends.
pub const IDLE_EXIT: Duration = Duration::from_secs(10);

/// How often the monitor looks at the queue while workers are busy.
const MONITOR_TICK: Duration = Duration::from_micros(500);
const TICK_NS: u64 = MONITOR_TICK.as_nanos() as u64;

/// Nanoseconds from the first use of the pool to `at` (never 0).
fn since_epoch(at: Instant) -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    at.saturating_duration_since(*EPOCH).as_nanos() as u64 + 1
}

/// Ticks the monitor goes on for once the queue is empty, before parking.
const MONITOR_LINGER: u32 = 20;

/// Tasks that run this long on average make the monitor add a worker while others wait:
/// the wake-up then costs little next to the work it parallelises.
pub const LONG_TASK: Duration = Duration::from_micros(50);

/// Starts the monitor thread, once.
static MONITOR_START: Mutex<()> = Mutex::new(());

struct Pool {
    state: Mutex<PoolState>,
    /// Idle workers wait here.
    wake: Condvar,
    /// Tasks queued (mirrors `state.queue.len()`, read by spinners without the lock).
    queued: AtomicUsize,
    /// Tasks taken from the queue so far: the monitor's measure of progress.
    taken: AtomicU64,
    /// Tasks finished so far, and the time they ran in all (nanoseconds).
    finished: AtomicU64,
    busy_ns: AtomicU64,
    /// How long recent tasks ran (a moving average, nanoseconds).
    recent_task_ns: AtomicU64,
    /// How long recent requests ran (a task may serve many; a moving average).
    recent_request_ns: AtomicU64,
    /// The worker reading stdin (see `input::take_reading`) while it runs something
    /// other than its spin: its reader token and since when (see [`since_epoch`]).
    reader_busy: Mutex<Option<(u64, u64)>>,
    /// Workers looking for a task (spinning, or about to block).
    searching: AtomicUsize,
    /// Workers running a task, not counting those waiting in a callback.
    running: AtomicUsize,
    /// How long a worker spins for a task before blocking, in nanoseconds.
    spin_ns: AtomicU64,
    /// When the last task ended, and when the last one was queued (see [`since_epoch`];
    /// 0: none yet).
    last_finish: AtomicU64,
    last_arrival: AtomicU64,
    /// How long before the latest task came the previous one came or a task ended
    /// (nanoseconds): the spacing of requests, which decides whether spinning for the
    /// next one pays.
    idle_gap_ns: AtomicU64,
    monitor: OnceLock<Thread>,
    monitor_parked: AtomicBool,
}

struct PoolState {
    queue: VecDeque<Arc<dyn Task>>,
    workers: usize,
    /// Workers blocked on `wake`.
    idle: usize,
    /// Idle workers already woken for a task and not yet up.
    woken: usize,
    /// Workers started and not yet looking for work.
    starting: usize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    state: Mutex::new(PoolState {
        queue: VecDeque::new(),
        workers: 0,
        idle: 0,
        woken: 0,
        starting: 0,
    }),
    wake: Condvar::new(),
    queued: AtomicUsize::new(0),
    taken: AtomicU64::new(0),
    finished: AtomicU64::new(0),
    busy_ns: AtomicU64::new(0),
    recent_task_ns: AtomicU64::new(0),
    recent_request_ns: AtomicU64::new(0),
    reader_busy: Mutex::new(None),
    searching: AtomicUsize::new(0),
    running: AtomicUsize::new(0),
    spin_ns: AtomicU64::new(0),
    last_finish: AtomicU64::new(0),
    last_arrival: AtomicU64::new(0),
    idle_gap_ns: AtomicU64::new(u64::MAX),
    monitor: OnceLock::new(),
    monitor_parked: AtomicBool::new(false),
});

/// Sets how long a worker that ran out of work spins before blocking.
pub fn set_spin(spin: Duration) {
    POOL.spin_ns.store(
        spin.as_nanos().min(u64::MAX as u128) as u64,
        Ordering::Relaxed,
    );
}

/// Queues `task` for the next free worker.
pub fn schedule(task: Arc<dyn Task>) {
    let pool = &*POOL;
    // Measured from arrivals too, not only from the end of tasks: while one store runs a
    // long task, the others' requests still say how closely they come.
    let now = since_epoch(Instant::now());
    let last = (pool.last_finish.load(Ordering::Relaxed))
        .max(pool.last_arrival.swap(now, Ordering::Relaxed));
    if last != 0 {
        pool.idle_gap_ns
            .store(now.saturating_sub(last), Ordering::Relaxed);
    }
    let mut state = pool.lock();
    state.queue.push_back(task);
    pool.queued.store(state.queue.len(), Ordering::SeqCst);
    // A searching worker takes a task each.
    if pool.searching.load(Ordering::SeqCst) >= state.queue.len() {
        return;
    }
    pool.need_worker(state);
}

/// Adds `ns` to a moving average. Races between workers lose an update at worst.
fn average_in(average: &AtomicU64, ns: u64) {
    let recent = average.load(Ordering::Relaxed);
    average.store(recent - recent / 8 + ns / 8, Ordering::Relaxed);
}

/// Records how long one request of a store ran.
pub fn note_request(ran: Duration) {
    average_in(
        &POOL.recent_request_ns,
        ran.as_nanos().min(u64::MAX as u128) as u64,
    );
}

/// Whether requests have lately been short enough for a worker that runs them to read
/// stdin in between (see `input.rs`).
fn short_requests() -> bool {
    POOL.recent_request_ns.load(Ordering::Relaxed) < LONG_TASK.as_nanos() as u64
}

/// Whether requests to stores come one at a time (each after the previous answer) or
/// overlap.
pub struct Overlap {
    /// Requests received and not yet answered.
    unanswered: AtomicUsize,
    /// How many of the recent requests came while others were unanswered (a moving
    /// average, in [`OVERLAP_ONE`]ths).
    recent: AtomicU64,
}

/// One request in [`Overlap::recent`].
const OVERLAP_ONE: u64 = 1024;

impl Overlap {
    pub const fn new() -> Overlap {
        Overlap {
            unanswered: AtomicUsize::new(0),
            recent: AtomicU64::new(0),
        }
    }

    /// A request came in.
    pub fn arrived(&self) {
        let overlaps = self.unanswered.fetch_add(1, Ordering::Relaxed) > 0;
        average_in(&self.recent, if overlaps { OVERLAP_ONE } else { 0 });
    }

    /// A request is about to be answered.
    pub fn answered(&self) {
        let _ = self
            .unanswered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Whether more than an eighth of the recent requests came while others were
    /// unanswered. Under concurrent callers that share was measured above it, and with
    /// one caller at a time it stays near zero.
    pub fn overlapping(&self) -> bool {
        self.recent.load(Ordering::Relaxed) > OVERLAP_ONE / 8
    }
}

impl Default for Overlap {
    fn default() -> Overlap {
        Overlap::new()
    }
}

/// The requests of this process.
static REQUESTS: Overlap = Overlap::new();

/// Records that a request for a store came in.
pub fn note_arrival() {
    REQUESTS.arrived();
}

/// Records that a request for a store is about to be answered. Called before the answer
/// is sent, so that the next request of a caller waiting for it finds it counted off.
pub fn note_answered() {
    REQUESTS.answered();
}

/// Whether requests overlap: then a worker reading stdin saves the main thread's wake-up
/// for each of them. Requests that come one at a time are answered sooner with the main
/// thread blocked on stdin: woken on the BEAM's CPU, it keeps that vCPU from halting
/// while the answer is made, and the answer then wakes the BEAM at less cost. Measured
/// (A/B, alternating binaries): sequential calls 19 - 25 -> 11.9 us, `start_link` 25 - 52
/// -> 16 - 47 us, 32 instances and 64 callers unchanged.
pub fn overlapping_requests() -> bool {
    REQUESTS.overlapping()
}

/// How often a worker that reads stdin and serves a long queue stops to read it.
pub const DRAIN_EVERY: Duration = Duration::from_micros(20);

/// Reads stdin if the calling worker is the one that does (see `input.rs`), between two
/// requests of a long run; its busy mark restarts.
pub fn drain_point() {
    if input::reading_here() {
        input::drain_if_free();
        POOL.reader_busy(Instant::now());
    }
}

/// Marks the calling worker as waiting (in an import callback, for the BEAM) rather than
/// running while the guard lives: stores queued meanwhile do not wait for it, and it
/// leaves stdin to the main thread.
pub fn waiting() -> WaitGuard {
    let pool = &*POOL;
    // Nested waits (a callback inside a call made from a waiting callback) count once.
    let was_running = ON_WORKER.with(|w| w.replace(false));
    // Stdin goes back to the main thread while a callback waits. Callback round trips
    // are sequential by nature, and the main thread woken by each answer keeps the other
    // vCPU awake for the next one: measured, 3 of 8 runs of a callback loop at 13 us
    // per callback this way, 0 of 8 with the waiting worker reading (25 - 44 us).
    input::give_back_reading();
    pool.reader_draining();
    if was_running {
        pool.running.fetch_sub(1, Ordering::SeqCst);
        if pool.queued.load(Ordering::SeqCst) > 0 {
            let state = pool.lock();
            if state.queue.len() > pool.searching.load(Ordering::SeqCst) {
                pool.need_worker(state);
            }
        }
    }
    WaitGuard { was_running }
}

pub struct WaitGuard {
    was_running: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.was_running {
            POOL.running.fetch_add(1, Ordering::SeqCst);
            ON_WORKER.with(|w| w.set(true));
        }
    }
}

thread_local! {
    /// Whether this thread is a worker running a task (counted in `running`).
    static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The right to spin, held by at most one thread of the process: two spinners on two
/// CPUs would leave none for the BEAM.
pub struct SpinSlot;

static SPINNING: AtomicBool = AtomicBool::new(false);

impl SpinSlot {
    pub fn take() -> Option<SpinSlot> {
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

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queued tasks need a worker beyond the searching ones. A worker woken or started
    /// and not yet up gets to the queue soon, and so does a running one while tasks are
    /// short (the monitor sees to it if that takes longer than a tick); otherwise one is
    /// added now.
    fn need_worker(&self, state: MutexGuard<'_, PoolState>) {
        let short_tasks = self.recent_task_ns.load(Ordering::Relaxed) < LONG_TASK.as_nanos() as u64;
        let busy =
            self.running.load(Ordering::SeqCst) > 0 || self.searching.load(Ordering::SeqCst) > 0;
        let coming = state.woken > 0 || state.starting > 0 || (short_tasks && busy);
        if coming {
            drop(state);
            self.wake_monitor();
        } else {
            self.add_worker(state);
        }
    }

    /// Wakes an idle worker not yet woken, or starts a worker.
    fn add_worker(&self, mut state: MutexGuard<'_, PoolState>) {
        if state.idle > state.woken {
            state.woken += 1;
            self.wake.notify_one();
            return;
        }
        state.workers += 1;
        state.starting += 1;
        drop(state);
        let started = thread::Builder::new()
            .name("store-worker".into())
            .spawn(work);
        if started.is_err() {
            // Out of threads (an OS limit): the workers there are take the queue in
            // turn, and the monitor tries again every tick.
            let mut state = self.lock();
            state.workers -= 1;
            state.starting -= 1;
            drop(state);
            self.wake_monitor();
        }
    }

    /// The next task, taken from the queue under the lock.
    fn take(&self, state: &mut PoolState) -> Option<Arc<dyn Task>> {
        let task = state.queue.pop_front()?;
        self.queued.store(state.queue.len(), Ordering::SeqCst);
        self.taken.fetch_add(1, Ordering::Relaxed);
        Some(task)
    }

    /// Records that the calling thread, if it reads stdin, runs something else from `at`.
    fn reader_busy(&self, at: Instant) {
        if input::reading_here() {
            let busy = Some((input::reader_token(), since_epoch(at)));
            *self
                .reader_busy
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = busy;
        }
    }

    /// Records that the calling thread drains stdin again (if it was the busy reader).
    fn reader_draining(&self) {
        let me = input::reader_token();
        let mut busy = self
            .reader_busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if matches!(*busy, Some((token, _)) if token == me) {
            *busy = None;
        }
    }

    fn wake_monitor(&self) {
        match self.monitor.get() {
            Some(monitor) => {
                if self.monitor_parked.load(Ordering::SeqCst) {
                    monitor.unpark();
                }
            }
            None => {
                // Started awake. If it cannot start now, the next call tries again.
                let _once = MONITOR_START.lock().unwrap_or_else(PoisonError::into_inner);
                if self.monitor.get().is_none() {
                    let started = thread::Builder::new()
                        .name("store-monitor".into())
                        .spawn(monitor);
                    if let Ok(handle) = started {
                        let _ = self.monitor.set(handle.thread().clone());
                    }
                }
            }
        }
    }

    /// Finds the next task for a worker (counted in `searching` by the caller), spinning
    /// and then blocking; `None` when the worker has been idle for long enough to end.
    fn find(&self) -> Option<Arc<dyn Task>> {
        let spin = self.spin_ns.load(Ordering::Relaxed);
        // Spin only while requests come close together; one spinner per process. The
        // gap measured after a worker blocked includes the wake-up of the thread that
        // read the request (tens of microseconds on a VM): up to twice the spin time
        // counts as close, or a pool that once blocked would never spin again.
        let worth_it =
            spin != 0 && self.idle_gap_ns.load(Ordering::Relaxed) <= spin.saturating_mul(2);
        let spin = Duration::from_nanos(spin);
        let start = Instant::now();
        if let Some(_slot) = worth_it.then(SpinSlot::take).flatten() {
            loop {
                if self.queued.load(Ordering::SeqCst) > 0 {
                    if let Some(task) = self.take(&mut self.lock()) {
                        // Runs, and starts threads, with the CPUs it had.
                        crate::affinity::restore();
                        // Requests keep coming: from now on this worker reads stdin
                        // while it spins, and the BEAM's writes wake no thread. Only
                        // while tasks are short, and with a monitor running, which
                        // takes the reading back from a worker that got busy.
                        if short_requests() && overlapping_requests() {
                            self.wake_monitor();
                            if self.monitor.get().is_some() {
                                input::take_reading();
                            }
                        } else {
                            input::give_back_reading();
                        }
                        return Some(self.found(task));
                    }
                }
                // Requests that come one at a time are read by the main thread, which
                // wakes on the CPU of the BEAM scheduler that wrote them: a worker
                // spinning there would be preempted for each, so it moves off that CPU.
                crate::affinity::spin_turn(!overlapping_requests() && input::reader() == 0);
                if start.elapsed() >= spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        crate::affinity::restore();
        // Whoever blocks leaves the reading of stdin to the main thread.
        input::give_back_reading();
        let mut state = self.lock();
        self.searching.fetch_sub(1, Ordering::SeqCst);
        loop {
            if let Some(task) = self.take(&mut state) {
                self.searching.fetch_add(1, Ordering::SeqCst);
                return Some(self.found(task));
            }
            state.idle += 1;
            let (next, waited) = self
                .wake
                .wait_timeout(state, IDLE_EXIT)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if state.woken > 0 {
                state.woken -= 1;
            } else if waited.timed_out() && state.queue.is_empty() && state.workers > 1 {
                // No longer searching (since blocking) nor running: gone without a trace.
                state.workers -= 1;
                return None;
            }
        }
    }

    fn found(&self, task: Arc<dyn Task>) -> Arc<dyn Task> {
        // Counted as running before no longer searching: `schedule` never sees neither
        // while this worker is about to run.
        self.running.fetch_add(1, Ordering::SeqCst);
        self.searching.fetch_sub(1, Ordering::SeqCst);
        task
    }
}

/// A worker's life: run tasks until idle for [`IDLE_EXIT`].
fn work() {
    let pool = &*POOL;
    pool.searching.fetch_add(1, Ordering::SeqCst);
    pool.lock().starting -= 1;
    while let Some(task) = pool.find() {
        let start = Instant::now();
        if !short_requests() {
            // Stdin would wait for the task: the main thread reads meanwhile.
            input::give_back_reading();
        } else {
            pool.reader_busy(start);
        }
        ON_WORKER.with(|w| w.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| task.clone().run()));
        ON_WORKER.with(|w| w.set(false));
        // A callback's wait restores the affinity it narrowed; a panic in between may not.
        crate::affinity::restore();
        if outcome.is_err() {
            task.abort();
        }
        // Back to draining stdin, if it reads (it may have started to in a callback).
        pool.reader_draining();
        let end = Instant::now();
        pool.last_finish.store(since_epoch(end), Ordering::Relaxed);
        let ran = (end - start).as_nanos().min(u64::MAX as u128) as u64;
        pool.busy_ns.fetch_add(ran, Ordering::Relaxed);
        average_in(&pool.recent_task_ns, ran);
        pool.finished.fetch_add(1, Ordering::Relaxed);
        // Searching before no longer running (see `found`).
        pool.searching.fetch_add(1, Ordering::SeqCst);
        pool.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Adds a worker when queued tasks wait on busy workers for a whole tick, or wait behind
/// long tasks (see the module's documentation). Parks while the queue stays empty.
fn monitor() {
    let pool = &*POOL;
    let mut last_taken = pool.taken.load(Ordering::Relaxed);
    let mut last_finished = pool.finished.load(Ordering::Relaxed);
    let mut last_busy = pool.busy_ns.load(Ordering::Relaxed);
    let mut quiet = 0;
    loop {
        thread::sleep(MONITOR_TICK);
        let taken = pool.taken.load(Ordering::Relaxed);
        let finished = pool.finished.load(Ordering::Relaxed);
        let busy = pool.busy_ns.load(Ordering::Relaxed);
        let queued = pool.queued.load(Ordering::SeqCst) > 0;
        let stalled = taken == last_taken;
        let long_tasks = finished > last_finished
            && (busy - last_busy) / (finished - last_finished) >= LONG_TASK.as_nanos() as u64;
        if queued && (stalled || long_tasks) {
            let state = pool.lock();
            // One helper at a time: a worker woken or started and not yet running may
            // only be waiting for a CPU.
            if !state.queue.is_empty() && state.woken == 0 && state.starting == 0 {
                pool.add_worker(state);
            }
        }
        (last_taken, last_finished, last_busy) = (taken, finished, busy);
        // A worker reading stdin that has been running one task for a tick: stdin must
        // not wait for it.
        let busy = *pool
            .reader_busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((reader, since)) = busy {
            if since_epoch(Instant::now()).saturating_sub(since) > TICK_NS {
                input::revoke_reading(reader);
            }
        }
        if queued || input::reader() != 0 {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet > MONITOR_LINGER {
            // Announce the park before the last look: a task queued (or a worker taking
            // up stdin) now either is seen here or sees `monitor_parked` and unparks
            // this thread.
            pool.monitor_parked.store(true, Ordering::SeqCst);
            if pool.queued.load(Ordering::SeqCst) == 0 && input::reader() == 0 {
                thread::park();
            }
            pool.monitor_parked.store(false, Ordering::SeqCst);
            quiet = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Overlap;

    /// `n` requests that come before any is answered.
    fn all_at_once(overlap: &Overlap, n: usize) {
        for _ in 0..n {
            overlap.arrived();
        }
    }

    /// `n` requests, each answered before the next comes.
    fn one_at_a_time(overlap: &Overlap, n: usize) {
        for _ in 0..n {
            overlap.arrived();
            overlap.answered();
        }
    }

    #[test]
    fn requests_answered_before_the_next_comes_do_not_overlap() {
        let overlap = Overlap::new();
        one_at_a_time(&overlap, 100);
        assert!(!overlap.overlapping());
    }

    #[test]
    fn requests_that_come_while_others_wait_overlap() {
        let overlap = Overlap::new();
        all_at_once(&overlap, 4);
        assert!(overlap.overlapping());
    }

    #[test]
    fn overlap_fades_once_requests_come_one_at_a_time_again() {
        let overlap = Overlap::new();
        all_at_once(&overlap, 100);
        for _ in 0..100 {
            overlap.answered();
        }
        one_at_a_time(&overlap, 40);
        assert!(!overlap.overlapping());
    }

    #[test]
    fn an_answer_without_a_request_counts_nothing() {
        let overlap = Overlap::new();
        overlap.answered();
        one_at_a_time(&overlap, 8);
        assert!(!overlap.overlapping());
    }
}
