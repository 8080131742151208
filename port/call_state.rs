//! What decides whether a store's running call must stop: the request it serves at the
//! top level, that call's deadline, and the requests the BEAM cancelled.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The request the store is serving at the top level, its deadline, and the requests that
/// were cancelled. Shared with the store's stdin stream, whose reads waiting for input
/// must stop too.
#[derive(Default)]
pub struct CallState {
    request: AtomicU64,
    /// The deadline and the timeout it came from.
    deadline: Mutex<Option<(Instant, Duration)>>,
    pub cancellations: Cancellations,
}

impl CallState {
    pub fn with_cancellations(cancellations: Cancellations) -> CallState {
        CallState {
            cancellations,
            ..CallState::default()
        }
    }

    pub fn begin(&self, request: u64) {
        self.request.store(request, Ordering::Release);
    }

    pub fn set_timeout(&self, timeout: Option<Duration>) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = timeout.map(|t| (Instant::now() + t, t));
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.lock().ok().and_then(|d| d.map(|(at, _)| at))
    }

    /// Whether the running call must stop, and why.
    pub fn stop(&self) -> Option<Stop> {
        if self
            .cancellations
            .contains(self.request.load(Ordering::Acquire))
        {
            return Some(Stop::Cancelled);
        }
        match self.deadline.lock().ok().and_then(|d| *d) {
            Some((at, timeout)) if Instant::now() >= at => Some(Stop::TimedOut(timeout)),
            _ => None,
        }
    }

    /// Whether the running call must stop, and why, in words.
    pub fn stop_reason(&self) -> Option<String> {
        self.stop().map(|stop| stop.message())
    }
}

/// Why a running call must stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Its caller stopped waiting.
    Cancelled,
    /// Its timeout passed.
    TimedOut(Duration),
}

impl Stop {
    pub fn message(self) -> String {
        match self {
            Stop::Cancelled => CANCELLED.into(),
            Stop::TimedOut(timeout) => format!(
                "timed out: the call did not finish within {} ms and was stopped",
                timeout.as_millis()
            ),
        }
    }
}

/// Why a cancelled request was stopped or skipped.
pub const CANCELLED: &str = "cancelled: the caller stopped waiting";

/// Ids of requests the BEAM stopped waiting for (their caller went away). Shared with the
/// dispatcher, which adds to it; the store skips such requests, or interrupts the one
/// it is running.
#[derive(Clone, Default)]
pub struct Cancellations(Arc<Mutex<HashSet<u64>>>);

impl Cancellations {
    pub fn cancel(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(request);
        }
    }

    pub fn contains(&self, request: u64) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(&request))
    }

    /// Forgets `request` (a host-wide request that has been answered).
    pub fn forget(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&request);
        }
    }

    /// Forgets `request` and every earlier one: requests are served in the order their
    /// ids were given, so cancellations of those can no longer matter.
    pub fn settle(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.retain(|&id| id > request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_request_must_stop_and_a_settled_one_no_longer_counts() {
        let call = CallState::default();
        call.begin(7);
        call.cancellations.cancel(7);
        assert_eq!(call.stop_reason().as_deref(), Some(CANCELLED));
        call.cancellations.settle(7);
        assert_eq!(call.stop_reason(), None);
    }

    #[test]
    fn a_call_past_its_deadline_must_stop() {
        let call = CallState::default();
        call.set_timeout(Some(Duration::ZERO));
        assert!(call.stop_reason().unwrap().starts_with("timed out"));
        call.set_timeout(None);
        assert_eq!(call.stop_reason(), None);
    }
}
