//! Where a component instance's calls spend their time in the port, counted per instance
//! and read with `component_timing {Ctx, InstanceId}` (answered by `serve.rs`):
//! `{Calls, LookupNs, ParamsNs, CallNs, ResultsNs}`.
//!
//! - `lookup`: finding the export along the call's path;
//! - `params`: converting the params from terms to `Val`s by the function's WIT types;
//! - `call`: wasmtime's `call_async`: lowering the `Val`s into the guest, running it,
//!   lifting its results back to `Val`s;
//! - `results`: converting the results to terms.
//!
//! Only calls that reached wasmtime are counted (one whose params did not convert is
//! not); a call that failed in wasmtime counts its steps up to the failure.

use crate::term;
use eetf::Term;
use std::time::{Duration, Instant};

/// Totals over the calls of one instance, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub calls: u64,
    pub lookup_ns: u64,
    pub params_ns: u64,
    pub call_ns: u64,
    pub results_ns: u64,
}

/// The steps of one call, as measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallSteps {
    pub lookup: Duration,
    pub params: Duration,
    pub call: Duration,
    pub results: Duration,
}

impl Timing {
    /// Adds one call's steps (saturating: the totals never wrap).
    pub fn add(&mut self, steps: &CallSteps) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.calls = self.calls.saturating_add(1);
        self.lookup_ns = self.lookup_ns.saturating_add(ns(steps.lookup));
        self.params_ns = self.params_ns.saturating_add(ns(steps.params));
        self.call_ns = self.call_ns.saturating_add(ns(steps.call));
        self.results_ns = self.results_ns.saturating_add(ns(steps.results));
    }

    /// `{Calls, LookupNs, ParamsNs, CallNs, ResultsNs}`.
    pub fn to_term(self) -> Term {
        term::tuple(
            [
                self.calls,
                self.lookup_ns,
                self.params_ns,
                self.call_ns,
                self.results_ns,
            ]
            .into_iter()
            .map(term::uint)
            .collect(),
        )
    }
}

/// Runs `f` and returns its value with how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let value = f();
    (value, t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(lookup: u64, params: u64, call: u64, results: u64) -> CallSteps {
        CallSteps {
            lookup: Duration::from_nanos(lookup),
            params: Duration::from_nanos(params),
            call: Duration::from_nanos(call),
            results: Duration::from_nanos(results),
        }
    }

    #[test]
    fn add_sums_each_step_and_counts_the_call() {
        let mut t = Timing::default();
        t.add(&steps(1, 2, 3, 4));
        t.add(&steps(10, 20, 30, 40));
        assert_eq!(
            t,
            Timing {
                calls: 2,
                lookup_ns: 11,
                params_ns: 22,
                call_ns: 33,
                results_ns: 44
            }
        );
    }

    #[test]
    fn add_saturates_instead_of_wrapping() {
        let mut t = Timing {
            call_ns: u64::MAX - 1,
            ..Timing::default()
        };
        t.add(&steps(0, 0, 5, 0));
        assert_eq!(t.call_ns, u64::MAX);
        t.add(&CallSteps {
            call: Duration::MAX,
            ..CallSteps::default()
        });
        assert_eq!((t.calls, t.call_ns), (2, u64::MAX));
    }

    #[test]
    fn to_term_is_a_tuple_of_the_counts_in_order() {
        let mut t = Timing::default();
        t.add(&steps(1, 2, 3, 4_000_000_000));
        assert_eq!(
            t.to_term(),
            term::tuple(vec![
                term::uint(1),
                term::uint(1),
                term::uint(2),
                term::uint(3),
                term::uint(4_000_000_000),
            ])
        );
    }

    #[test]
    fn timed_returns_the_value_and_a_duration() {
        let (v, d) = timed(|| {
            std::thread::sleep(Duration::from_millis(2));
            7
        });
        assert_eq!(v, 7);
        assert!(d >= Duration::from_millis(2));
    }
}
