//! Stores told to drop and not yet gone: their instances still hold slots of the engine's
//! pool (see `engine.rs`) until their task ends. An instantiation that finds the slots
//! full waits for these (see `instance::instantiate`), so that one that follows a drop (a
//! restarted instance) does not fail for a slot about to be free.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Drops {
    counts: Mutex<DropCounts>,
    done: Notify,
}

#[derive(Default)]
struct DropCounts {
    /// Stores whose drop is counted (their `drop_counted` mark is set).
    pending: u64,
    /// Drops done so far.
    finished: u64,
}

impl Drops {
    fn lock(&self) -> MutexGuard<'_, DropCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a store's drop as pending, once: `counted` is the store's mark, changed
    /// only under the lock, so the count and the marks always agree.
    pub fn begin(&self, counted: &AtomicBool) {
        let mut counts = self.lock();
        if !counted.swap(true, Ordering::SeqCst) {
            counts.pending += 1;
        }
    }

    /// Counts a store's drop as done, if it was counted.
    pub fn end(&self, counted: &AtomicBool) {
        let mut counts = self.lock();
        if counted.swap(false, Ordering::SeqCst) {
            counts.pending -= 1;
            counts.finished += 1;
            self.done.notify_waiters();
        }
    }

    /// How many drops are done so far.
    pub fn done(&self) -> u64 {
        self.lock().finished
    }

    /// Waits until more than `seen` drops are done, or `until`; whether they are. Returns
    /// at once when none is pending (none would be done). Holds no thread meanwhile.
    pub async fn wait_past(&self, seen: u64, until: Instant) -> bool {
        loop {
            // Registered before the look, so a drop done in between wakes it.
            let mut notified = pin!(self.done.notified());
            notified.as_mut().enable();
            {
                let counts = self.lock();
                if counts.finished != seen {
                    return true;
                }
                if counts.pending == 0 || Instant::now() >= until {
                    return false;
                }
            }
            let until = tokio::time::Instant::from_std(until);
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.lock().finished != seen;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::block_on;
    use std::sync::Arc;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn waiting_for_a_drop_with_none_pending_returns_at_once() {
        let drops = Drops::default();
        assert!(!block_on(drops.wait_past(drops.done(), soon())));
    }

    #[test]
    fn a_drop_done_while_another_begins_ends_the_wait() {
        let drops = Arc::new(Drops::default());
        let (a, b) = (AtomicBool::new(false), AtomicBool::new(false));
        drops.begin(&a);
        let seen = drops.done();
        let waiter = {
            let drops = drops.clone();
            std::thread::spawn(move || block_on(drops.wait_past(seen, soon())))
        };
        std::thread::sleep(Duration::from_millis(10));
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
        assert!(!block_on(drops.wait_past(drops.done(), until)));
        assert!(Instant::now() >= until);
    }
}
