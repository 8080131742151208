//! Where a store's task runs: on the port's one *light* worker, with the stdin reader,
//! while its requests are short; on the *heavy* runtime while one of them computes for
//! long.
//!
//! Why two: on a small machine the BEAM needs a CPU of its own. A second worker of the
//! runtime that reads stdin is woken whenever the first has two tasks ready at once (the
//! reader and a store), and on a VM each such wake-up costs tens of microseconds; with
//! one worker, short requests (most of them: calls, instantiations, memory access,
//! callbacks) never cross threads. Wasm that computes for long must still run in
//! parallel, one store per CPU, and must not hold up the reader. So a store whose request
//! has run Wasm through [`HEAVY_AFTER_TICKS`] epoch ticks (at least a millisecond: see
//! `ticker.rs`) moves, at its next yield, to the heavy runtime (one worker per CPU), and
//! moves back once it waits with no request running.
//!
//! A move is between two polls of the store's future: the task on one runtime ends, and
//! a new task on the other polls the same (boxed, pinned) future next. What it waits on
//! (its channel, a timer, a callback's answer) is asked again by that poll, so nothing
//! is missed; wasmtime's futures may be polled from any thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Epoch ticks of Wasm within one request after which its store is heavy. The first
/// tick may come at once; the second comes a full tick later.
pub const HEAVY_AFTER_TICKS: u32 = 2;

/// How much Wasm the store's current request has run, in epoch ticks: counted by the
/// store's epoch callback, cleared when the store has answered a request.
#[derive(Debug, Default)]
pub struct Weight(AtomicU32, AtomicBool);

impl Weight {
    /// Counts one epoch tick of the running request.
    pub fn tick(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// Makes the running request heavy at once: its work is known to be long.
    pub fn make_heavy(&self) {
        self.0.fetch_max(HEAVY_AFTER_TICKS, Ordering::Relaxed);
    }

    /// The request has been answered (or waits for the BEAM): the next one starts light,
    /// remembering whether this one was heavy.
    pub fn clear(&self) {
        let was = self.0.swap(0, Ordering::Relaxed) >= HEAVY_AFTER_TICKS;
        self.1.store(was, Ordering::Relaxed);
    }

    /// Whether the request before the running one (or the part of it before its last
    /// callback) was heavy.
    pub fn was_heavy(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }

    /// Whether the running request belongs on the heavy runtime.
    pub fn heavy(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= HEAVY_AFTER_TICKS
    }
}

/// Moves the task of the store whose weight this is to the heavy runtime before it goes
/// on, for work known to be long that is not Wasm (a large memory read): a yield, after
/// which the task is polled on the heavy runtime. Nothing when it is heavy already.
pub async fn to_heavy(weight: &Weight) {
    if !weight.heavy() {
        weight.make_heavy();
        tokio::task::yield_now().await;
    }
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `future` as a task that moves between the light and the heavy runtime as
/// `weight` says.
pub fn spawn<F>(future: F, weight: Arc<Weight>)
where
    F: Future<Output = ()> + Send + 'static,
{
    start(Roaming {
        task: Some(Box::pin(future)),
        weight,
        heavy: false,
    });
}

fn start(roaming: Roaming) {
    let runtime = if roaming.heavy {
        crate::executor::heavy_runtime()
    } else {
        crate::executor::light_runtime()
    };
    drop(runtime.spawn(roaming));
}

/// A store's future, on the runtime it runs on now.
struct Roaming {
    task: Option<Task>,
    weight: Arc<Weight>,
    /// Whether it runs on the heavy runtime.
    heavy: bool,
}

impl Future for Roaming {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(task) = self.task.as_mut() else {
            return Poll::Ready(());
        };
        if task.as_mut().poll(cx).is_ready() {
            self.task = None;
            return Poll::Ready(());
        }
        let heavy = self.weight.heavy();
        if heavy != self.heavy {
            // This task ends; a task on the other runtime polls the future next.
            start(Roaming {
                task: self.task.take(),
                weight: self.weight.clone(),
                heavy,
            });
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "roam_tests.rs"]
mod integration_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    /// A future that reports the thread of each poll and yields until told to end.
    fn probe(
        polls: mpsc::Sender<String>,
        end: Arc<std::sync::atomic::AtomicBool>,
    ) -> impl Future<Output = ()> + Send {
        std::future::poll_fn(move |cx| {
            let _ = polls.send(thread_name());
            if end.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    fn next_poll_on(polls: &mpsc::Receiver<String>, prefix: &str) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            match polls.recv_timeout(Duration::from_secs(10)) {
                Ok(name) if name.starts_with(prefix) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
        false
    }

    #[test]
    fn a_weight_remembers_whether_the_request_it_cleared_was_heavy() {
        let weight = Weight::default();
        assert!(!weight.was_heavy());
        for _ in 0..HEAVY_AFTER_TICKS {
            weight.tick();
        }
        weight.clear();
        assert!(weight.was_heavy());
        weight.tick();
        weight.clear();
        assert!(!weight.was_heavy());
    }

    #[test]
    fn a_light_task_runs_on_the_light_worker() {
        let (tx, rx) = mpsc::channel();
        let end = Arc::new(std::sync::atomic::AtomicBool::new(false));
        spawn(probe(tx, end.clone()), Arc::default());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            "store-worker"
        );
        end.store(true, Ordering::Relaxed);
    }

    #[test]
    fn a_task_moves_to_the_heavy_runtime_and_back_as_its_weight_says() {
        let (tx, rx) = mpsc::channel();
        let end = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weight = Arc::new(Weight::default());
        spawn(probe(tx, end.clone()), weight.clone());
        assert!(next_poll_on(&rx, "store-worker"));
        for _ in 0..HEAVY_AFTER_TICKS {
            weight.tick();
        }
        assert!(next_poll_on(&rx, "heavy-worker"));
        weight.clear();
        assert!(next_poll_on(&rx, "store-worker"));
        end.store(true, Ordering::Relaxed);
    }

    #[test]
    fn to_heavy_moves_a_light_task_to_the_heavy_runtime_before_it_goes_on() {
        let (tx, rx) = mpsc::channel();
        let weight = Arc::new(Weight::default());
        let counted = weight.clone();
        spawn(
            async move {
                let before = thread_name();
                to_heavy(&counted).await;
                let _ = tx.send((before, thread_name()));
            },
            weight,
        );
        let (before, after) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (before.as_str(), after.as_str()),
            ("store-worker", "heavy-worker")
        );
    }

    #[test]
    fn make_heavy_is_heavy_at_once_and_cleared_like_ticks() {
        let weight = Weight::default();
        weight.make_heavy();
        assert!(weight.heavy());
        weight.clear();
        assert!(!weight.heavy());
    }

    #[test]
    fn one_tick_is_not_heavy() {
        let weight = Weight::default();
        weight.tick();
        assert!(!weight.heavy());
        weight.tick();
        assert!(weight.heavy());
        weight.clear();
        assert!(!weight.heavy());
    }
}
