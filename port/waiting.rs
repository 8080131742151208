//! Requests with a timeout waiting for their store's turn. The dispatcher notes each as
//! it passes it on; the store, busy with an earlier request, answers "timed out" for any
//! whose deadline passes before its turn comes (`executor::stoppable` looks whenever the
//! running call wakes, and wakes for the earliest deadline); a request so answered is
//! skipped when its turn comes. A pure data structure, shared by the two.

use crate::errors::Failure;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Waiting(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    queued: Vec<Entry>,
    /// Answered while waiting: skipped when their turn comes.
    expired: HashSet<u64>,
}

struct Entry {
    id: u64,
    deadline: Instant,
    timeout: Duration,
    kind: Failure,
}

/// A request answered while it waited: its timeout passed.
#[derive(Debug, PartialEq, Eq)]
pub struct Expired {
    pub id: u64,
    pub timeout: Duration,
    /// The kind of failure its answer says (a call's timeout is counted as one).
    pub kind: Failure,
}

impl Waiting {
    /// Notes request `id`, read at `received`, which must stop after `timeout` with a
    /// failure of `kind`.
    pub fn note(&self, id: u64, received: Instant, timeout: Duration, kind: Failure) {
        if let Ok(mut state) = self.0.lock() {
            state.queued.push(Entry {
                id,
                deadline: received + timeout,
                timeout,
                kind,
            });
        }
    }

    /// Takes request `id` off the list as its turn comes: false when it was answered
    /// already, while it waited.
    pub fn take_turn(&self, id: u64) -> bool {
        let Ok(mut state) = self.0.lock() else {
            return true;
        };
        if state.expired.remove(&id) {
            return false;
        }
        if let Some(at) = state.queued.iter().position(|e| e.id == id) {
            state.queued.swap_remove(at);
        }
        true
    }

    /// Takes off the list the requests whose deadline has passed at `now`, to answer.
    pub fn expire(&self, now: Instant) -> Vec<Expired> {
        let Ok(mut state) = self.0.lock() else {
            return Vec::new();
        };
        if !state.queued.iter().any(|e| e.deadline <= now) {
            return Vec::new();
        }
        let (due, left): (Vec<Entry>, Vec<Entry>) =
            state.queued.drain(..).partition(|e| e.deadline <= now);
        state.queued = left;
        state.expired.extend(due.iter().map(|e| e.id));
        due.into_iter()
            .map(|e| Expired {
                id: e.id,
                timeout: e.timeout,
                kind: e.kind,
            })
            .collect()
    }

    /// The earliest deadline of the requests waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        let state = self.0.lock().ok()?;
        state.queued.iter().map(|e| e.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_request_whose_turn_comes_in_time_is_taken_off_the_list() {
        let waiting = Waiting::default();
        let now = Instant::now();
        waiting.note(1, now, 100 * MS, Failure::Timeout);
        assert!(waiting.take_turn(1));
        assert_eq!(
            (waiting.expire(now + 200 * MS), waiting.next_deadline()),
            (vec![], None)
        );
    }

    #[test]
    fn requests_past_their_deadline_expire_and_are_then_skipped() {
        let waiting = Waiting::default();
        let now = Instant::now();
        waiting.note(1, now, 100 * MS, Failure::Timeout);
        waiting.note(2, now, 300 * MS, Failure::Timeout);
        assert_eq!(
            waiting.expire(now + 200 * MS),
            vec![Expired {
                id: 1,
                timeout: 100 * MS,
                kind: Failure::Timeout
            }]
        );
        assert_eq!((waiting.take_turn(1), waiting.take_turn(2)), (false, true));
    }

    #[test]
    fn the_next_deadline_is_the_earliest_one_waiting() {
        let waiting = Waiting::default();
        let now = Instant::now();
        waiting.note(1, now, 300 * MS, Failure::Other);
        waiting.note(2, now, 100 * MS, Failure::Timeout);
        assert_eq!(waiting.next_deadline(), Some(now + 100 * MS));
    }

    #[test]
    fn an_expired_request_keeps_the_kind_of_failure_it_was_noted_with() {
        let waiting = Waiting::default();
        let now = Instant::now();
        waiting.note(1, now, MS, Failure::Other);
        let kinds: Vec<Failure> = waiting.expire(now + MS).iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![Failure::Other]);
    }

    #[test]
    fn requests_never_noted_take_their_turn() {
        assert!(Waiting::default().take_turn(7));
    }
}
