//! How Wasm runs: on wasmtime's async API, driven by tokio. Every call and instantiation
//! is a future (`call_async`, `instantiate_async`, WASI preview 1 through the async
//! linker), polled by the thread that serves the store. The outermost one is wrapped in
//! [`stoppable`]: once its deadline passes or its request is cancelled, the future is
//! dropped wherever it waits (Wasm code, a WASI sleep, a stdin read, a start function),
//! and wasmtime unwinds it, leaving the store usable.

use crate::store::CallState;
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

/// The runtime whose timers and blocking pool WASI's async functions use. One thread
/// drives its timers; the futures themselves run on the threads that serve stores.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(8)
            .thread_name("wasi-io")
            .enable_all()
            .build()
            .expect("start the tokio runtime")
    })
}

/// Runs `future` to its end on this thread, inside the runtime's context.
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime().handle().block_on(future)
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
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    poll_fn(|cx| {
        if let Poll::Ready(r) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        loop {
            if let Some(reason) = call.stop_reason() {
                return Poll::Ready(Err(reason));
            }
            let next = Instant::now() + CANCEL_CHECK;
            let at = call.deadline().map_or(next, |d| d.min(next));
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
    fn a_panic_in_a_poll_is_caught() {
        let caught = block_on(catching(async {
            if true {
                panic!("a bug")
            }
        }));
        assert!(caught.is_err());
    }
}
