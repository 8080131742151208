//! Tuning for small virtual machines, off by default: one switch, the environment
//! variable `WASMEX_PORT_TUNING` (`1`, `true` or `on`), read once when the runtime
//! starts. See docs/tuning.md for what it does, what it costs and when to turn it on.
//!
//! With it on, the light runtime's worker about to park (see `roam.rs`) first moves
//! itself to the CPU of the BEAM's busiest scheduler
//! (`beam_cpu.rs`, `affinity.rs`), so that the next request wakes it there instead of on
//! a halted vCPU. With it off, nothing here runs: the runtime's park hook is the spin
//! alone (see `executor::spin`).

mod affinity;
mod beam_cpu;

use std::sync::{Mutex, OnceLock};

/// The switch's name.
pub const SWITCH: &str = "WASMEX_PORT_TUNING";

/// Whether the tuning is on (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var(SWITCH).is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "on"))
    })
}

/// The BEAM's schedulers, once looked for (`None` inside: none to follow).
static BEAM: Mutex<Option<Option<beam_cpu::BeamWatch>>> = Mutex::new(None);

/// Called by the light worker about to park, after its spin.
pub fn before_park() {
    // One mover at a time; another parking thread just parks.
    let Ok(mut beam) = BEAM.try_lock() else {
        return;
    };
    let watch = beam.get_or_insert_with(affinity::watch_beam);
    affinity::move_to_beams_cpu(watch);
}

/// Called by a worker that woke up.
pub fn after_unpark() {
    // A move that could not give the thread its CPUs back is undone here.
    affinity::restore();
}

/// Forgets the BEAM's schedulers (tests).
#[cfg(test)]
fn forget_beam() {
    *BEAM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_not_started_by_a_beam_parks_without_moving() {
        forget_beam();
        let before = affinity::cpu_count();
        before_park();
        after_unpark();
        assert_eq!(affinity::cpu_count(), before);
        // No BEAM to follow: nothing is watched.
        assert!(matches!(
            *BEAM
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Some(None)
        ));
    }
}
