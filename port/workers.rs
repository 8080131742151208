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
//! * while a worker runs a store, newly queued stores wait for it to finish; the monitor
//!   thread wakes another worker (or starts one) when the queue stops moving for a tick,
//!   so a long call or a callback that waits never holds up the other stores for more than
//!   a tick;
//! * otherwise a queued store wakes an idle worker, or starts one if none is idle.
//!
//! Workers that stay idle for [`IDLE_EXIT`] end, down to one.

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

/// Ticks the monitor goes on for once nothing runs, before parking.
const MONITOR_LINGER: u32 = 20;

struct Pool {
    state: Mutex<PoolState>,
    /// Idle workers wait here.
    wake: Condvar,
    /// Tasks queued (mirrors `state.queue.len()`, read by spinners without the lock).
    queued: AtomicUsize,
    /// Tasks taken from the queue so far: the monitor's measure of progress.
    taken: AtomicU64,
    /// Workers looking for a task (spinning, or about to block).
    searching: AtomicUsize,
    /// Workers running a task, not counting those waiting in a callback.
    running: AtomicUsize,
    /// How long a worker spins for a task before blocking, in nanoseconds.
    spin_ns: AtomicU64,
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
    searching: AtomicUsize::new(0),
    running: AtomicUsize::new(0),
    spin_ns: AtomicU64::new(0),
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
    let mut state = pool.lock();
    state.queue.push_back(task);
    pool.queued.store(state.queue.len(), Ordering::SeqCst);
    if pool.searching.load(Ordering::SeqCst) > 0 {
        return;
    }
    // A worker running, or woken or started and not yet up, gets to the queue soon; the
    // monitor sees to it if that takes longer than a tick.
    if pool.running.load(Ordering::SeqCst) > 0 || state.woken > 0 || state.starting > 0 {
        drop(state);
        pool.wake_monitor();
        return;
    }
    pool.add_worker(state);
}

/// Marks the calling worker as waiting (in an import callback, for the BEAM) rather than
/// running while the guard lives: stores queued meanwhile do not wait for it.
pub fn waiting() -> WaitGuard {
    let pool = &*POOL;
    // Nested waits (a callback inside a call made from a waiting callback) count once.
    let was_running = ON_WORKER.with(|w| w.replace(false));
    if was_running {
        pool.running.fetch_sub(1, Ordering::SeqCst);
        if pool.queued.load(Ordering::SeqCst) > 0 && pool.running.load(Ordering::SeqCst) == 0 {
            let state = pool.lock();
            if !state.queue.is_empty() && pool.searching.load(Ordering::SeqCst) == 0 {
                pool.add_worker(state);
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
            // Out of threads (an OS limit): the workers there are take the queue in turn.
            let mut state = self.lock();
            state.workers -= 1;
            state.starting -= 1;
        }
    }

    /// The next task, taken from the queue under the lock.
    fn take(&self, state: &mut PoolState) -> Option<Arc<dyn Task>> {
        let task = state.queue.pop_front()?;
        self.queued.store(state.queue.len(), Ordering::SeqCst);
        self.taken.fetch_add(1, Ordering::Relaxed);
        Some(task)
    }

    fn wake_monitor(&self) {
        let monitor = self.monitor.get_or_init(|| {
            thread::Builder::new()
                .name("store-monitor".into())
                .spawn(monitor)
                .map(|h| h.thread().clone())
                .unwrap_or_else(|_| thread::current())
        });
        if self.monitor_parked.load(Ordering::SeqCst) && monitor.id() != thread::current().id() {
            monitor.unpark();
        }
    }

    /// Finds the next task for a worker (counted in `searching` by the caller), spinning
    /// and then blocking; `None` when the worker has been idle for long enough to end.
    fn find(&self, last_idle: &mut Duration) -> Option<Arc<dyn Task>> {
        let start = Instant::now();
        let spin = Duration::from_nanos(self.spin_ns.load(Ordering::Relaxed));
        // Spin only while work comes back-to-back; one spinner per process.
        let worth_it = !spin.is_zero() && *last_idle <= spin;
        if let Some(_slot) = worth_it.then(SpinSlot::take).flatten() {
            loop {
                if self.queued.load(Ordering::SeqCst) > 0 {
                    if let Some(task) = self.take(&mut self.lock()) {
                        return Some(self.found(task, start, last_idle));
                    }
                }
                // Read stdin while the main thread does not: a request then reaches its
                // store without a thread wake-up.
                crate::input::drain_if_free();
                if start.elapsed() >= spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut state = self.lock();
        self.searching.fetch_sub(1, Ordering::SeqCst);
        loop {
            if let Some(task) = self.take(&mut state) {
                self.searching.fetch_add(1, Ordering::SeqCst);
                return Some(self.found(task, start, last_idle));
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
                state.workers -= 1;
                self.searching.fetch_add(1, Ordering::SeqCst);
                return None;
            }
        }
    }

    fn found(
        &self,
        task: Arc<dyn Task>,
        start: Instant,
        last_idle: &mut Duration,
    ) -> Arc<dyn Task> {
        // Counted as running before no longer searching: `schedule` never sees neither
        // while this worker is about to run.
        self.running.fetch_add(1, Ordering::SeqCst);
        self.searching.fetch_sub(1, Ordering::SeqCst);
        *last_idle = start.elapsed();
        task
    }
}

/// A worker's life: run tasks until idle for [`IDLE_EXIT`].
fn work() {
    let pool = &*POOL;
    let mut last_idle = Duration::ZERO;
    pool.searching.fetch_add(1, Ordering::SeqCst);
    pool.lock().starting -= 1;
    while let Some(task) = pool.find(&mut last_idle) {
        ON_WORKER.with(|w| w.set(true));
        let outcome = catch_unwind(AssertUnwindSafe(|| task.clone().run()));
        ON_WORKER.with(|w| w.set(false));
        if outcome.is_err() {
            task.abort();
        }
        // Searching before no longer running (see `found`).
        pool.searching.fetch_add(1, Ordering::SeqCst);
        pool.running.fetch_sub(1, Ordering::SeqCst);
    }
    pool.searching.fetch_sub(1, Ordering::SeqCst);
}

/// Wakes or starts a worker when queued tasks wait while every worker is busy (a long
/// call, a WASI read): at most a tick's delay for them.
fn monitor() {
    let pool = &*POOL;
    let mut last_taken = pool.taken.load(Ordering::Relaxed);
    let mut quiet = 0;
    loop {
        thread::sleep(MONITOR_TICK);
        let taken = pool.taken.load(Ordering::Relaxed);
        let queued = pool.queued.load(Ordering::SeqCst) > 0;
        if queued && taken == last_taken && pool.searching.load(Ordering::SeqCst) == 0 {
            let state = pool.lock();
            // One helper at a time: a worker woken or started and not yet running may
            // only be waiting for a CPU.
            if !state.queue.is_empty() && state.woken == 0 && state.starting == 0 {
                pool.add_worker(state);
            }
        }
        last_taken = taken;
        if queued || pool.running.load(Ordering::SeqCst) > 0 {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet > MONITOR_LINGER {
            // Announce the park before the last look: a task queued now either is seen
            // here or sees `monitor_parked` and unparks this thread.
            pool.monitor_parked.store(true, Ordering::SeqCst);
            if pool.queued.load(Ordering::SeqCst) == 0 && pool.running.load(Ordering::SeqCst) == 0 {
                thread::park();
            }
            pool.monitor_parked.store(false, Ordering::SeqCst);
            quiet = 0;
        }
    }
}
