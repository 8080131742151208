//! A store's inbox: the messages for the store, and whether a worker has the store
//! (see `workers.rs`). The first message to reach a store nobody runs tells the sender
//! to schedule it; the worker that runs it empties the inbox and then lets it go.

use crate::workers::SpinSlot;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub struct Inbox<T> {
    state: Mutex<State<T>>,
    /// A thread waiting for a message inside a run (an import callback) waits here.
    arrived: Condvar,
    /// Messages queued (mirrors `state.queue.len()`, read by spinners without the lock).
    len: AtomicUsize,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Queued for a worker or run by one: a message needs no scheduling.
    scheduled: bool,
    /// A thread blocks on `arrived`.
    waiting: bool,
    /// The store is gone: messages are refused.
    closed: bool,
}

/// What became of a message given to [`Inbox::push`].
#[derive(Debug, PartialEq)]
pub enum Pushed {
    /// Queued for a store that was idle: the sender must schedule it.
    Schedule,
    /// Queued for a store already scheduled or running.
    Queued,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Inbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                scheduled: false,
                waiting: false,
                closed: false,
            }),
            arrived: Condvar::new(),
            len: AtomicUsize::new(0),
        }
    }
}

impl<T> Inbox<T> {
    /// An inbox whose store is scheduled already (its first run is due).
    pub fn claimed() -> Self {
        let inbox = Inbox::default();
        inbox.lock().scheduled = true;
        inbox
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `msg`; gives it back if the inbox is closed.
    pub fn push(&self, msg: T) -> Result<Pushed, T> {
        let mut state = self.lock();
        if state.closed {
            return Err(msg);
        }
        state.queue.push_back(msg);
        self.len.store(state.queue.len(), Ordering::SeqCst);
        if state.waiting {
            state.waiting = false;
            self.arrived.notify_one();
        }
        if state.scheduled {
            return Ok(Pushed::Queued);
        }
        state.scheduled = true;
        Ok(Pushed::Schedule)
    }

    /// The next message, if one is queued.
    pub fn try_pop(&self) -> Option<T> {
        if self.len.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.pop(&mut self.lock())
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let msg = state.queue.pop_front()?;
        self.len.store(state.queue.len(), Ordering::SeqCst);
        Some(msg)
    }

    /// Lets the store go if nothing is queued (the next message schedules it again);
    /// false if messages wait.
    pub fn release_if_empty(&self) -> bool {
        let mut state = self.lock();
        if state.queue.is_empty() {
            state.scheduled = false;
            return true;
        }
        false
    }

    /// The next message, waiting for it until `deadline` (`None`: when it passed).
    /// Spins for `spin` first, with `while_spinning` called in between (the spinner reads
    /// stdin), if this thread gets the process's spin slot.
    pub fn pop_wait(
        &self,
        spin: Duration,
        deadline: Option<Instant>,
        while_spinning: impl Fn(),
    ) -> Option<T> {
        if let Some(_slot) = (!spin.is_zero()).then(SpinSlot::take).flatten() {
            let start = Instant::now();
            loop {
                if let Some(msg) = self.try_pop() {
                    return Some(msg);
                }
                while_spinning();
                if start.elapsed() >= spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let mut state = self.lock();
        loop {
            if let Some(msg) = self.pop(&mut state) {
                return Some(msg);
            }
            state.waiting = true;
            state = match deadline {
                None => self
                    .arrived
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.waiting = false;
                        return None;
                    }
                    self.arrived
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.waiting = false;
        }
    }

    /// Closes the inbox for good and returns what it still held.
    pub fn close(&self) -> VecDeque<T> {
        let mut state = self.lock();
        state.closed = true;
        self.len.store(0, Ordering::SeqCst);
        std::mem::take(&mut state.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn the_first_message_asks_for_scheduling_and_later_ones_queue() {
        let inbox = Inbox::default();
        assert_eq!(inbox.push(1), Ok(Pushed::Schedule));
        assert_eq!(inbox.push(2), Ok(Pushed::Queued));
        assert_eq!(inbox.try_pop(), Some(1));
        assert!(!inbox.release_if_empty());
        assert_eq!(inbox.try_pop(), Some(2));
        assert!(inbox.release_if_empty());
        assert_eq!(inbox.push(3), Ok(Pushed::Schedule));
    }

    #[test]
    fn a_closed_inbox_gives_back_what_it_held_and_refuses_more() {
        let inbox = Inbox::default();
        let _ = inbox.push("a");
        assert_eq!(inbox.close(), VecDeque::from(["a"]));
        assert_eq!(inbox.push("b"), Err("b"));
        assert_eq!(inbox.try_pop(), None);
    }

    #[test]
    fn a_waiting_thread_gets_a_message_sent_later() {
        let inbox = Arc::new(Inbox::default());
        let sender = inbox.clone();
        let waiter = thread::spawn(move || inbox.pop_wait(Duration::ZERO, None, || {}));
        thread::sleep(Duration::from_millis(20));
        let _ = sender.push(7);
        assert_eq!(waiter.join().unwrap(), Some(7));
    }

    #[test]
    fn a_wait_ends_at_its_deadline() {
        let inbox: Inbox<u8> = Inbox::default();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(inbox.pop_wait(Duration::ZERO, Some(deadline), || {}), None);
        assert!(Instant::now() >= deadline);
    }
}
