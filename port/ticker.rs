//! The epoch ticker: the thread that advances the engine's epoch, which is what lets a
//! running call be interrupted at its deadline (and yield its worker to other tasks).
//!
//! It ticks every millisecond while a call runs. Between calls it only looks, every
//! 20 ms, for as long as calls keep coming (a call started since the last look counts,
//! however short), and parks after two looks without one. A call that starts while it
//! looks gets its first tick within 20 ms without having to wake it; only a call that
//! finds it parked, whose timeout is shorter than a look, or that is expected to compute
//! for long (its store's last request did) wakes it (see [`must_wake`]). So a short
//! timeout is kept as closely as before, and a long call moves off the thread that reads
//! requests (`roam.rs`) after about two milliseconds, not twenty: its neighbours' calls
//! wait that much less. Each look is a thread wake-up, which on a VM costs tens of
//! microseconds of CPU: calls a few milliseconds apart cost a look for every ten calls,
//! and an idle host costs nothing.
//! [`Pace`] decides, and is tested without a thread.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::Duration;
use wasmtime::Engine;

/// Between ticks while a call runs.
pub const FINE: Duration = Duration::from_millis(1);
/// Between looks once no call runs.
pub const COARSE: Duration = Duration::from_millis(20);
/// Looks in a row that saw no call (none running, none started since the last look)
/// before the ticker parks.
const LOOKS_BEFORE_PARKING: u32 = 2;

/// What the ticker does next (and, once chosen, what it is waiting in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    /// Sleep [`FINE`], then advance the epoch.
    Tick,
    /// Sleep [`COARSE`], then advance the epoch.
    Look,
    /// Sleep until a call wakes it.
    Park,
}

impl Step {
    fn from_u8(code: u8) -> Step {
        match code {
            0 => Step::Tick,
            1 => Step::Look,
            _ => Step::Park,
        }
    }
}

/// When the ticker ticks, from what it sees at each look: a pure state machine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Looks in a row that saw no call.
    idle_looks: u32,
    /// Calls started, as counted at the last look.
    started: u64,
}

impl Pace {
    /// The next step, given whether a call is running now and how many calls were
    /// started so far.
    pub fn next(&mut self, running: bool, started: u64) -> Step {
        let new_calls = std::mem::replace(&mut self.started, started) != started;
        if running {
            self.idle_looks = 0;
            return Step::Tick;
        }
        if new_calls {
            self.idle_looks = 0;
            return Step::Look;
        }
        if self.idle_looks >= LOOKS_BEFORE_PARKING {
            self.idle_looks = 0;
            return Step::Park;
        }
        self.idle_looks += 1;
        Step::Look
    }
}

/// Whether a call starting now, with `timeout`, wakes the ticker waiting in `waiting`:
/// when it is parked, or when it looks only every [`COARSE`] and the call must stop sooner
/// than that or is expected to compute for `long`.
pub fn must_wake(waiting: Step, timeout: Option<Duration>, long: bool) -> bool {
    match waiting {
        Step::Park => true,
        Step::Look => long || timeout.is_some_and(|t| t < COARSE),
        Step::Tick => false,
    }
}

/// Advances an engine's epoch while calls run (see the module's documentation).
pub struct Ticker {
    running: AtomicUsize,
    /// Calls started so far.
    started: AtomicU64,
    /// The [`Step`] the ticker thread is waiting in (`Park`: parked or about to park).
    waiting: AtomicU8,
    /// Epoch increments so far.
    ticks: AtomicU64,
    thread: Thread,
}

impl Ticker {
    pub fn start(engine: Engine) -> Arc<Ticker> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Ticker>>();
        let handle = thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                if let Ok(ticker) = rx.recv() {
                    ticker.tick_for(&engine);
                }
            })
            .expect("spawn the epoch ticker thread");
        let ticker = Arc::new(Ticker {
            running: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            waiting: AtomicU8::new(Step::Tick as u8),
            ticks: AtomicU64::new(0),
            thread: handle.thread().clone(),
        });
        let _ = tx.send(ticker.clone());
        ticker
    }

    fn tick_for(&self, engine: &Engine) {
        let mut pace = Pace::default();
        loop {
            let running = self.running.load(Ordering::SeqCst) > 0;
            let step = pace.next(running, self.started.load(Ordering::Relaxed));
            // Announced before the wait (for `Park`, before the last look at `running`):
            // a call starting now either is seen below or sees the step and wakes us.
            self.waiting.store(step as u8, Ordering::SeqCst);
            match step {
                // A call with a short timeout may cut a pause short (see `running`);
                // ticking early does no harm.
                Step::Tick | Step::Look => {
                    thread::park_timeout(if step == Step::Tick { FINE } else { COARSE });
                    engine.increment_epoch();
                    self.ticks.fetch_add(1, Ordering::Relaxed);
                }
                Step::Park => {
                    if self.running.load(Ordering::SeqCst) == 0 {
                        thread::park();
                    }
                }
            }
        }
    }

    /// Marks a call that must stop after `timeout`, and is expected to compute for `long`
    /// or not, as running for as long as the guard lives.
    pub fn running(self: &Arc<Self>, timeout: Option<Duration>, long: bool) -> TickGuard {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::Relaxed);
        if must_wake(
            Step::from_u8(self.waiting.load(Ordering::SeqCst)),
            timeout,
            long,
        ) {
            self.thread.unpark();
        }
        TickGuard(self.clone())
    }

    /// How many times the epoch was advanced.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Whether the ticker thread is parked, waiting for a call.
    pub fn is_parked(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) == Step::Park as u8
    }
}

pub struct TickGuard(Arc<Ticker>);

impl Drop for TickGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn ticks_every_millisecond_while_a_call_runs() {
        let mut pace = Pace::default();
        let steps: Vec<Step> = (0..10).map(|_| pace.next(true, 1)).collect();
        assert_eq!(steps, vec![Step::Tick; 10]);
    }

    #[test]
    fn looks_coarsely_a_few_times_after_the_last_call_then_parks() {
        let mut pace = Pace::default();
        pace.next(true, 1);
        let steps: Vec<Step> = (0..=LOOKS_BEFORE_PARKING)
            .map(|_| pace.next(false, 1))
            .collect();
        let mut expected = vec![Step::Look; LOOKS_BEFORE_PARKING as usize];
        expected.push(Step::Park);
        assert_eq!(steps, expected);
    }

    #[test]
    fn a_call_seen_while_looking_brings_back_the_fine_ticks_and_the_full_wait() {
        let mut pace = Pace::default();
        pace.next(false, 0);
        pace.next(false, 0);
        assert_eq!(pace.next(true, 1), Step::Tick);
        let steps: Vec<Step> = (0..LOOKS_BEFORE_PARKING)
            .map(|_| pace.next(false, 1))
            .collect();
        assert_eq!(steps, vec![Step::Look; LOOKS_BEFORE_PARKING as usize]);
    }

    #[test]
    fn calls_that_start_and_end_between_looks_keep_it_looking() {
        let mut pace = Pace::default();
        let steps: Vec<Step> = (1..=10).map(|started| pace.next(false, started)).collect();
        assert_eq!(steps, vec![Step::Look; 10]);
    }

    #[test]
    fn after_parking_the_pace_starts_over() {
        let mut pace = Pace::default();
        while pace.next(false, 0) != Step::Park {}
        assert_eq!(pace.next(false, 0), Step::Look);
    }

    #[test]
    fn only_a_parked_ticker_or_a_timeout_shorter_than_a_look_wakes_it() {
        let short = Some(COARSE - Duration::from_millis(1));
        let long = Some(Duration::from_secs(5));
        assert!(must_wake(Step::Park, long, false));
        assert!(must_wake(Step::Park, None, false));
        assert!(must_wake(Step::Look, short, false));
        assert!(!must_wake(Step::Look, long, false));
        assert!(!must_wake(Step::Look, None, false));
        assert!(!must_wake(Step::Tick, short, false));
    }

    #[test]
    fn a_call_expected_to_compute_for_long_wakes_a_looking_ticker() {
        assert!(must_wake(Step::Look, None, true));
        assert!(!must_wake(Step::Tick, None, true));
    }

    /// Waits up to 5 s for `done`, looking every millisecond.
    fn within_5s(done: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_call_wakes_the_parked_ticker_which_parks_again_once_it_ends() {
        let ticker = Ticker::start(Engine::default());
        assert!(within_5s(|| ticker.is_parked()), "idle, it never parked");
        let before = ticker.ticks();
        let call = ticker.running(None, false);
        assert!(
            within_5s(|| ticker.ticks() >= before + 3),
            "a running call got no ticks"
        );
        drop(call);
        assert!(
            within_5s(|| ticker.is_parked()),
            "it never parked after the call"
        );
    }
}
