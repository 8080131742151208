//! One task, one store after another: when the BEAM drops an idle store and opens a new
//! one in the same breath (a fresh store per request), the new store is handed to the
//! dropped store's task instead of a task of its own.
//!
//! Why: the runtime wakes a second worker thread whenever one thread has two tasks ready
//! at once, and a drop (the old store's task woken) read together with an open (a new
//! task spawned) is exactly that. On a machine where waking a thread costs tens of
//! microseconds, that wake-up was the larger part of a fresh store and instance. Handed
//! over, the drop and the new store run one after the other on the thread that read them.
//!
//! A task's [`Succession`] says what it does once its store has ended: run the store it
//! was given, or end. The host hands a store over only to a task whose store it dropped
//! while idle (see `StoreHandle::idle`), so the new store never waits behind a call.

use std::sync::Mutex;

/// What a store's task does once its store has ended.
pub struct Succession<S>(Mutex<Next<S>>);

enum Next<S> {
    /// Still running its store; nothing handed over yet.
    Running,
    /// Runs this store next.
    Given(S),
    /// Has ended: takes nothing more.
    Ended,
}

impl<S> Default for Succession<S> {
    fn default() -> Self {
        Succession(Mutex::new(Next::Running))
    }
}

impl<S> Succession<S> {
    /// Hands `next` to the task, which runs it once its store has ended. Gives it back
    /// if the task has ended already or was given another store.
    pub fn hand_over(&self, next: S) -> Result<(), S> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match *state {
            Next::Running => {
                *state = Next::Given(next);
                Ok(())
            }
            Next::Given(_) | Next::Ended => Err(next),
        }
    }

    /// Called by the task once its store has ended: the store it runs next, or `None`,
    /// after which it takes nothing more.
    pub fn next(&self) -> Option<S> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, Next::Ended) {
            Next::Given(next) => {
                *state = Next::Running;
                Some(next)
            }
            Next::Running | Next::Ended => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_handed_over_while_running_is_run_next() {
        let s = Succession::default();
        assert_eq!(s.hand_over(7), Ok(()));
        assert_eq!(s.next(), Some(7));
    }

    #[test]
    fn a_task_given_nothing_ends_and_refuses_what_comes_later() {
        let s = Succession::default();
        assert_eq!(s.next(), None);
        assert_eq!(s.hand_over(7), Err(7));
    }

    #[test]
    fn a_task_takes_one_store_at_a_time() {
        let s = Succession::default();
        assert_eq!(s.hand_over(1), Ok(()));
        assert_eq!(s.hand_over(2), Err(2));
    }

    #[test]
    fn a_task_running_its_next_store_can_be_handed_another() {
        let s = Succession::default();
        s.hand_over(1).unwrap();
        assert_eq!(s.next(), Some(1));
        assert_eq!(s.hand_over(2), Ok(()));
        assert_eq!(s.next(), Some(2));
        assert_eq!(s.next(), None);
    }
}
