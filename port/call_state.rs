//! What decides whether a store's running call must stop: the request it serves at the
//! top level, that call's deadline, and the requests the BEAM cancelled.

use crate::errors::{failure_term, Failure};
use crate::outbox::Outbox;
use crate::protocol::reply_term;
use crate::term;
use crate::waiting::Waiting;
use eetf::Term;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The request the store is serving at the top level, its deadline, and the requests that
/// were cancelled. Shared with the store's stdin stream, whose reads waiting for input
/// must stop too.
#[derive(Default)]
pub struct CallState {
    request: AtomicU64,
    timing: Mutex<Timing>,
    pub cancellations: Cancellations,
    /// The store's requests with a timeout that wait for their turn, and where to answer
    /// those that pass their deadline meanwhile (see `waiting.rs`).
    pub waiting: Waiting,
    outbox: Option<Outbox>,
}

/// When the request came (its timeout counts from then, time spent queued behind other
/// requests included), the deadline with the timeout it came from, and the instance the
/// request calls, if any.
#[derive(Default)]
struct Timing {
    received: Option<Instant>,
    deadline: Option<(Instant, Duration)>,
    instance: Option<InstanceRef>,
}

/// An instance of a store: core instances and component instances are numbered apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InstanceRef {
    Core(u64),
    Component(u64),
}

impl CallState {
    pub fn new(
        cancellations: Cancellations,
        waiting: Waiting,
        outbox: Option<Outbox>,
    ) -> CallState {
        CallState {
            cancellations,
            waiting,
            outbox,
            ..CallState::default()
        }
    }

    /// The state of a request served inside the running call (through a callback's
    /// caller), which `request`, read at `received`, makes of `instance`: it stops on its
    /// own cancel, deadline or instance's stop, and with the store's release, leaving the
    /// call around it running. It shares the store's cancellations.
    pub fn nested(
        &self,
        request: u64,
        received: Instant,
        instance: Option<InstanceRef>,
    ) -> CallState {
        let nested = CallState {
            cancellations: self.cancellations.clone(),
            ..CallState::default()
        };
        nested.begin(request, received, instance);
        nested
    }

    /// Answers "timed out" for the requests waiting behind the running one whose
    /// deadline has passed (they are skipped when their turn comes).
    pub fn answer_expired(&self) {
        let Some(outbox) = &self.outbox else {
            return;
        };
        for expired in self.waiting.expire(Instant::now()) {
            let message = Stop::TimedOut(expired.timeout).message();
            outbox.send(&reply_term(
                expired.id,
                Err(failure_term(message, expired.kind)),
            ));
        }
    }

    /// Begins serving `request`, which came at `received` and calls `instance`, if any.
    pub fn begin(&self, request: u64, received: Instant, instance: Option<InstanceRef>) {
        self.request.store(request, Ordering::Release);
        if let Ok(mut timing) = self.timing.lock() {
            *timing = Timing {
                received: Some(received),
                deadline: None,
                instance,
            };
        }
    }

    /// Sets the deadline: `timeout` after the request came (or after now, for one that
    /// was not begun). Returns the time left until it.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        let mut timing = self.timing.lock().ok()?;
        let from = timing.received.unwrap_or_else(Instant::now);
        timing.deadline = timeout.map(|t| (from + t, t));
        timing
            .deadline
            .map(|(at, _)| at.saturating_duration_since(Instant::now()))
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.timing
            .lock()
            .ok()
            .and_then(|t| t.deadline.map(|(at, _)| at))
    }

    /// Whether the running call must stop, and why.
    pub fn stop(&self) -> Option<Stop> {
        if self.cancellations.all() {
            return Some(Stop::Released);
        }
        let (instance, deadline) = match self.timing.lock() {
            Ok(timing) => (timing.instance, timing.deadline),
            Err(_) => (None, None),
        };
        if instance.is_some_and(|i| self.cancellations.instance_stopped(i)) {
            return Some(Stop::InstanceStopped);
        }
        if self
            .cancellations
            .contains(self.request.load(Ordering::Acquire))
        {
            return Some(Stop::Cancelled);
        }
        match deadline {
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
    /// Its store was released (dropped) by the BEAM.
    Released,
    /// The server of the instance it calls stopped.
    InstanceStopped,
    /// Its timeout passed.
    TimedOut(Duration),
}

impl Stop {
    /// Why a request stopped before it began is refused; a timeout is a failure of
    /// `timeout_kind`, the kind the request's own stop at its deadline would be.
    pub fn refusal(self, timeout_kind: Failure) -> Term {
        match self {
            Stop::Released => term::string(crate::store::STORE_DROPPED),
            Stop::TimedOut(_) => failure_term(self.message(), timeout_kind),
            other => term::string(&other.message()),
        }
    }

    pub fn message(self) -> String {
        match self {
            Stop::Cancelled => CANCELLED.into(),
            Stop::Released => RELEASED.into(),
            Stop::InstanceStopped => INSTANCE_STOPPED.into(),
            Stop::TimedOut(timeout) => format!(
                "timed out: the call did not finish within {} ms and was stopped",
                timeout.as_millis()
            ),
        }
    }
}

/// Why a cancelled request was stopped or skipped.
pub const CANCELLED: &str = "cancelled: the caller stopped waiting";

/// Why a request of a released store was stopped or skipped.
pub const RELEASED: &str = "stopped: the store was released";

/// Why a call on an instance whose server stopped was stopped or refused.
pub const INSTANCE_STOPPED: &str = "stopped: the instance's server stopped";

/// Ids of requests the BEAM stopped waiting for (their caller went away). Shared with the
/// dispatcher, which adds to it; the store skips such requests, or interrupts the one
/// it is running.
#[derive(Clone, Default)]
pub struct Cancellations(
    Arc<Mutex<HashSet<u64>>>,
    Arc<AtomicBool>,
    /// Instances whose server stopped.
    Arc<Mutex<HashSet<InstanceRef>>>,
);

impl Cancellations {
    pub fn cancel(&self, request: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(request);
        }
    }

    /// Cancels every request, the running one and those to come (the store was released).
    pub fn cancel_all(&self) {
        self.1.store(true, Ordering::Release);
    }

    /// Stops the calls on `instance`, the running one and those to come.
    pub fn stop_instance(&self, instance: InstanceRef) {
        if let Ok(mut set) = self.2.lock() {
            set.insert(instance);
        }
    }

    /// Whether `instance`'s server stopped.
    pub fn instance_stopped(&self, instance: InstanceRef) -> bool {
        self.2.lock().is_ok_and(|set| set.contains(&instance))
    }

    /// Whether every request is cancelled.
    pub fn all(&self) -> bool {
        self.1.load(Ordering::Acquire)
    }

    pub fn contains(&self, request: u64) -> bool {
        self.all() || self.0.lock().is_ok_and(|set| set.contains(&request))
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
        call.begin(7, Instant::now(), None);
        call.cancellations.cancel(7);
        assert_eq!(call.stop_reason().as_deref(), Some(CANCELLED));
        call.cancellations.settle(7);
        assert_eq!(call.stop_reason(), None);
    }

    #[test]
    fn every_request_of_a_released_store_must_stop() {
        let call = CallState::default();
        call.begin(7, Instant::now(), None);
        call.cancellations.cancel_all();
        assert_eq!(
            (
                call.stop_reason().as_deref(),
                call.cancellations.contains(8)
            ),
            (Some(RELEASED), true)
        );
    }

    #[test]
    fn a_call_on_an_instance_whose_server_stopped_must_stop() {
        let call = CallState::default();
        call.begin(7, Instant::now(), Some(InstanceRef::Core(0)));
        call.cancellations.stop_instance(InstanceRef::Core(0));
        assert_eq!(call.stop_reason().as_deref(), Some(INSTANCE_STOPPED));
        call.begin(8, Instant::now(), Some(InstanceRef::Core(1)));
        assert_eq!(call.stop_reason(), None);
        call.begin(9, Instant::now(), None);
        assert_eq!(call.stop_reason(), None);
    }

    #[test]
    fn a_stopped_component_instance_is_not_the_core_instance_of_the_same_number() {
        let call = CallState::default();
        call.cancellations.stop_instance(InstanceRef::Component(0));
        call.begin(7, Instant::now(), Some(InstanceRef::Core(0)));
        assert_eq!(call.stop_reason(), None);
        call.begin(8, Instant::now(), Some(InstanceRef::Component(0)));
        assert_eq!(call.stop_reason().as_deref(), Some(INSTANCE_STOPPED));
    }

    #[test]
    fn a_refusal_at_the_deadline_is_a_failure_of_the_kind_given() {
        let stop = Stop::TimedOut(Duration::from_millis(5));
        assert_eq!(
            stop.refusal(Failure::Timeout),
            failure_term(stop.message(), Failure::Timeout)
        );
    }

    #[test]
    fn a_nested_request_stops_on_its_own_instance_and_with_the_store() {
        let call = CallState::default();
        call.begin(7, Instant::now(), Some(InstanceRef::Core(0)));
        let nested = call.nested(8, Instant::now(), Some(InstanceRef::Core(1)));
        call.cancellations.stop_instance(InstanceRef::Core(1));
        assert_eq!(
            (call.stop_reason(), nested.stop_reason().as_deref()),
            (None, Some(INSTANCE_STOPPED))
        );
        call.cancellations.cancel_all();
        assert_eq!(nested.stop_reason().as_deref(), Some(RELEASED));
    }

    #[test]
    fn a_call_past_its_deadline_must_stop() {
        let call = CallState::default();
        call.set_timeout(Some(Duration::ZERO));
        assert!(call.stop_reason().unwrap().starts_with("timed out"));
        call.set_timeout(None);
        assert_eq!(call.stop_reason(), None);
    }

    #[test]
    fn a_timeout_counts_from_when_the_request_came() {
        let call = CallState::default();
        let came = Instant::now() - Duration::from_millis(300);
        call.begin(7, came, None);
        let left = call.set_timeout(Some(Duration::from_millis(500)));
        assert_eq!(
            (
                call.deadline(),
                left.is_some_and(|l| l <= Duration::from_millis(200))
            ),
            (Some(came + Duration::from_millis(500)), true)
        );
    }

    #[test]
    fn a_request_that_waited_longer_than_its_timeout_must_stop_at_once() {
        let call = CallState::default();
        call.begin(7, Instant::now() - Duration::from_millis(300), None);
        let left = call.set_timeout(Some(Duration::from_millis(200)));
        assert_eq!(left, Some(Duration::ZERO));
        assert!(call.stop_reason().unwrap().starts_with("timed out"));
    }
}
