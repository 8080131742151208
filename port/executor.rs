//! How Wasm runs: on wasmtime's async API, driven by tokio. Every store is a task (see
//! `store/task.rs`), fed by a channel, on the light runtime or, while a request of its
//! computes for long, on the heavy one (see `roam.rs`); every call and instantiation
//! is a future (`call_async`, `instantiate_async`, WASI preview 1 through the async
//! linker). A store that waits (a WASI sleep, a stdin read, a callback's answer, a free
//! instance slot) is a parked task and holds no thread. Every call or instantiation (the
//! outermost one and those nested in it) is wrapped in [`stoppable`], with the state of
//! the request it serves (see `store/scope.rs`): once its deadline passes or its request is
//! cancelled, the future is dropped wherever it waits, and wasmtime unwinds it, leaving
//! the store usable.
//!
//! The port's stdin is read by a task of the light runtime (see `input.rs`), whose one
//! worker runs the store a request is for as soon as the reader waits again; the store
//! writes the reply itself. A sequential call thus costs one thread wake-up in the port,
//! or none: the worker, about to park, spins first for a bounded time while requests
//! come back-to-back (see [`spin`]).

use crate::call_state::CallState;
use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::runtime::{Builder, Runtime};

/// How often a waiting call looks for a cancellation (a deadline wakes it on time).
const CANCEL_CHECK: Duration = Duration::from_millis(5);

/// The runtime of the stdin reader and of every store while its requests are short (see
/// `roam.rs`), with WASI's timers and file I/O (its blocking pool): one worker thread, so
/// that a request and its reply never cross threads.
pub fn light_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut builder = Builder::new_multi_thread();
        builder
            .worker_threads(1)
            .max_blocking_threads(8)
            .thread_name("store-worker")
            .on_thread_start(|| LIGHT.with(|light| light.set(true)))
            .enable_all();
        // The tuning (docs/tuning.md), if switched on, runs in the same hooks; otherwise
        // they are the spin's alone.
        if crate::tuning::enabled() {
            builder
                .on_thread_park(|| {
                    spin::before_park();
                    crate::tuning::before_park();
                })
                .on_thread_unpark(|| {
                    spin::after_unpark();
                    crate::tuning::after_unpark();
                });
        } else {
            builder
                .on_thread_park(spin::before_park)
                .on_thread_unpark(spin::after_unpark);
        }
        builder.build().expect("start the tokio runtime")
    })
}

thread_local! {
    static LIGHT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is one of the light runtime's (see [`light_runtime`]).
pub fn on_light_runtime() -> bool {
    LIGHT.with(|light| light.get())
}

/// The runtime of stores while a request of theirs computes for long (see `roam.rs`):
/// one worker thread per CPU this process may use, so that such stores run in parallel.
/// Its workers never spin.
pub fn heavy_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Builder::new_multi_thread()
            .worker_threads(workers)
            .max_blocking_threads(8)
            .thread_name("heavy-worker")
            .enable_all()
            .build()
            .expect("start the heavy tokio runtime")
    })
}

/// Runs `future` to its end on this thread, inside the runtime's context (tests, and the
/// main thread waiting for the stdin reader).
pub fn block_on<F: Future>(future: F) -> F::Output {
    light_runtime().handle().block_on(future)
}

/// Runs `work`, which may block its thread for long (a compilation), without holding up
/// the other tasks of the worker it runs on (see `tokio::task::block_in_place`).
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

pub mod spin {
    //! The one place the port spins: the light runtime's worker about to park, while
    //! requests come back-to-back, first watches stdin and the runtime's queue for up to
    //! the host's spin time (`spin_us`); what arrives meanwhile then costs no wake-up (the
    //! spinner parks on the runtime's I/O driver, which has the request ready). It spins
    //! only if its last idle stretch was at most twice the spin time, so an idle or
    //! lightly loaded port does not spin at all, and one thread at a time (a thread that
    //! takes the worker's place during `block_in_place` may park too). The heavy
    //! runtime's workers never spin.

    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::LazyLock;
    use std::time::{Duration, Instant};

    static SPIN_NS: AtomicU64 = AtomicU64::new(0);
    static SPINNING: AtomicBool = AtomicBool::new(false);
    /// Nanoseconds the last worker to wake had been idle (u64::MAX: not known).
    static LAST_IDLE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
    /// The fd the BEAM's requests come on (-1: none, as in tests).
    static INPUT_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

    thread_local! {
        static PARKED_AT: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
    }

    /// Sets how long a worker spins before parking (0: never).
    pub fn set(spin: Duration) {
        SPIN_NS.store(
            spin.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Sets the fd requests are read from (see `input.rs`).
    pub fn watch_input(fd: i32) {
        INPUT_FD.store(fd, Ordering::Relaxed);
    }

    pub(super) fn before_park() {
        let spin = SPIN_NS.load(Ordering::Relaxed);
        let start = Instant::now();
        PARKED_AT.with(|p| p.set(Some(start)));
        let close = LAST_IDLE_NS.load(Ordering::Relaxed) <= spin.saturating_mul(2);
        if spin != 0 && close && !SPINNING.swap(true, Ordering::Acquire) {
            let spin = Duration::from_nanos(spin);
            let fd = INPUT_FD.load(Ordering::Relaxed);
            while start.elapsed() < spin && !work_waits(fd) {
                std::hint::spin_loop();
            }
            SPINNING.store(false, Ordering::Release);
        }
    }

    pub(super) fn after_unpark() {
        if let Some(at) = PARKED_AT.with(|p| p.take()) {
            let idle = at.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            LAST_IDLE_NS.store(idle, Ordering::Relaxed);
        }
    }

    /// Whether the spin is on (a spin time is set).
    pub fn enabled() -> bool {
        SPIN_NS.load(Ordering::Relaxed) != 0
    }

    /// Watches `fd` for up to the spin time, from a task: whether it became readable.
    /// Gives up early when a task waits in the runtime's shared queue, which this thread
    /// should run instead.
    pub fn until_readable(fd: i32) -> bool {
        let spin = Duration::from_nanos(SPIN_NS.load(Ordering::Relaxed));
        let start = Instant::now();
        loop {
            if readable(fd) {
                return true;
            }
            if start.elapsed() >= spin || metrics().global_queue_depth() > 0 {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    fn metrics() -> &'static tokio::runtime::RuntimeMetrics {
        static METRICS: LazyLock<tokio::runtime::RuntimeMetrics> =
            LazyLock::new(|| super::light_runtime().metrics());
        &METRICS
    }

    /// Whether a request waits on stdin or a task in the runtime's shared queue.
    fn work_waits(fd: i32) -> bool {
        metrics().global_queue_depth() > 0 || (fd >= 0 && readable(fd))
    }
    /// Whether `fd` has something to read (data, or its end) now.
    fn readable(fd: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd on the stack.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents != 0
    }
}

/// Runs `future`; if `call` is given, stops it (drops it) once that call must stop, and
/// returns why instead.
pub async fn stoppable<F, R>(call: Option<Arc<CallState>>, future: F) -> Result<R, String>
where
    F: Future<Output = R>,
{
    let mut future = pin!(future);
    let Some(call) = call else {
        return Ok(future.await);
    };
    // A request that waited past its deadline, or was cancelled, before it began does
    // not run at all.
    if let Some(reason) = call.stop_reason() {
        return Err(reason);
    }
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut resumed = false;
    poll_fn(|cx| {
        // Once the call must stop it is not resumed: what woke it (a WASI wait that ended
        // at the deadline) would let the program run on past it. (Its first poll comes
        // right after the check above.)
        if std::mem::replace(&mut resumed, true) {
            if let Some(reason) = call.stop_reason() {
                return Poll::Ready(Err(reason));
            }
        }
        if let Poll::Ready(r) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        loop {
            if let Some(reason) = call.stop_reason() {
                return Poll::Ready(Err(reason));
            }
            call.answer_expired();
            let next = Instant::now() + CANCEL_CHECK;
            let at = [call.deadline(), call.waiting.next_deadline()]
                .into_iter()
                .flatten()
                .fold(next, Instant::min);
            let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at.into())));
            if sleep.deadline() != at.into() {
                sleep.as_mut().reset(at.into());
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// Runs `future`, catching a panic in any of its polls (a bug) as the panic's payload.
pub async fn catching<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

/// Runs `future` to its end, with the times it yielded (returned `Pending`) on the way:
/// for tests of what yields.
#[cfg(test)]
pub async fn counting_yields<F: Future>(future: F) -> (F::Output, usize) {
    let mut future = pin!(future);
    let mut yields = 0;
    let output = poll_fn(|cx| {
        let poll = future.as_mut().poll(cx);
        yields += usize::from(poll.is_pending());
        poll
    })
    .await;
    (output, yields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_that_finishes_is_not_stopped() {
        let call = Arc::new(CallState::default());
        assert_eq!(block_on(stoppable(Some(call), async { 7 })), Ok(7));
    }

    #[test]
    fn a_future_waiting_past_its_deadline_is_dropped_on_time() {
        let call = Arc::new(CallState::default());
        call.set_timeout(Some(Duration::from_millis(30)));
        let start = Instant::now();
        let forever = std::future::pending::<()>();
        let stopped = block_on(stoppable(Some(call), forever));
        assert!(stopped.unwrap_err().starts_with("timed out"));
        assert!(start.elapsed() < Duration::from_millis(80));
    }

    #[test]
    fn a_future_woken_at_its_deadline_is_not_resumed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let call = Arc::new(CallState::default());
        call.set_timeout(Some(Duration::from_millis(20)));
        let deadline = call.deadline().expect("a deadline");
        let resumed = Arc::new(AtomicBool::new(false));
        let ran_on = resumed.clone();
        let stopped = block_on(stoppable(Some(call), async move {
            tokio::time::sleep_until(deadline.into()).await;
            ran_on.store(true, Ordering::Relaxed);
        }));
        assert_eq!(
            (stopped.is_err(), resumed.load(Ordering::Relaxed)),
            (true, false)
        );
    }

    #[test]
    fn a_panic_in_a_poll_is_caught() {
        let caught = block_on(catching(async {
            if true {
                panic!("a bug")
            }
        }));
        assert!(caught.is_err());
    }

    #[test]
    fn blocking_work_on_a_worker_leaves_the_other_tasks_running() {
        let (tx, rx) = std::sync::mpsc::channel();
        light_runtime().spawn(async move {
            let answered = blocking(|| rx.recv_timeout(Duration::from_secs(10)));
            assert_eq!(answered, Ok(1));
        });
        // Every worker blocked at once would starve this task.
        for _ in 0..4 {
            light_runtime()
                .spawn(async { blocking(|| std::thread::sleep(Duration::from_millis(50))) });
        }
        let tx2 = tx.clone();
        block_on(light_runtime().spawn(async move { tx2.send(1).unwrap() })).unwrap();
        drop(tx);
    }
}
