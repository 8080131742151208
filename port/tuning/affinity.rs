//! Moving a worker thread to the CPU of the BEAM's busiest scheduler before it parks
//! (see `beam_cpu.rs`), so that the next request wakes it there.
//!
//! A thread narrows its affinity only within the CPUs it may use at that moment, and
//! gets back exactly those: an operator who restricts the running port (`taskset -a -p`)
//! is not undone.

use std::cell::Cell;
use std::sync::OnceLock;

/// Whether this process could run on more than one CPU when it started (with one there
/// is nowhere to move, and no thread ever narrows its affinity).
pub fn several_cpus() -> bool {
    static SEVERAL: OnceLock<bool> = OnceLock::new();
    *SEVERAL.get_or_init(|| cpu_count() > 1)
}

/// How many CPUs the calling thread may use now (1 when that cannot be read).
pub fn cpu_count() -> usize {
    // SAFETY: reads a valid set.
    current_cpus().map_or(1, |set| unsafe { libc::CPU_COUNT(&set) } as usize)
}

thread_local! {
    /// The CPUs this thread may use, while its affinity is narrowed (to be restored).
    static NARROWED: Cell<Option<libc::cpu_set_t>> = const { Cell::new(None) };
}

/// The CPUs the calling thread may use now.
fn current_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled by the call.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size given, for the calling thread (0).
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    ok.then_some(set)
}

fn current_cpu() -> i32 {
    // SAFETY: no arguments; -1 on failure.
    unsafe { libc::sched_getcpu() }
}

/// The BEAM's schedulers, for a parking worker to follow (see [`move_to_beams_cpu`]);
/// none to watch with one CPU, where there is nowhere to move.
pub fn watch_beam() -> Option<super::beam_cpu::BeamWatch> {
    several_cpus()
        .then(super::beam_cpu::BeamWatch::find)
        .flatten()
}

/// Moves the calling thread to the CPU of the BEAM's busiest scheduler if it is elsewhere
/// (see `beam_cpu.rs`), so that the next request wakes it there; at most once per look
/// at the schedulers. Stops watching when the BEAM's threads cannot be read. The CPU it
/// moved to, if it moved.
pub fn move_to_beams_cpu(watch: &mut Option<super::beam_cpu::BeamWatch>) -> Option<i32> {
    let beam = watch.as_mut()?;
    let cpu = match beam.look(std::time::Instant::now()) {
        Err(_) => {
            *watch = None;
            return None;
        }
        Ok(cpu) => cpu?,
    };
    let Some(mine) = current_cpus() else {
        *watch = None;
        return None;
    };
    // SAFETY: a CPU number the kernel gave (< CPU_SETSIZE).
    if cpu == current_cpu() || !unsafe { libc::CPU_ISSET(cpu as usize, &mine) } {
        return None;
    }
    // Moved at once (a running thread leaves a CPU it may no longer use), then free
    // again: it stays where it is until it waits, and wakes there.
    if !set_affinity(&only_cpu(cpu as usize)) {
        return None;
    }
    if !set_affinity(&mine) {
        // Held on one CPU (the process's CPUs changed?): threads it starts would inherit
        // that. Watching ends; whatever restores this thread's CPUs later may.
        NARROWED.with(|n| n.set(Some(mine)));
        *watch = None;
        return None;
    }
    Some(cpu)
}

/// Gives a moved thread back the CPUs it had before it moved.
pub fn restore() {
    NARROWED.with(|n| {
        if let Some(mine) = n.get() {
            if set_affinity(&mine) {
                n.set(None);
            }
        }
    });
}

/// The set of CPU `cpu` alone (`cpu` < CPU_SETSIZE).
fn only_cpu(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; `cpu` is in range.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: a valid set of the right size, for the calling thread (0).
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuning::beam_cpu::{ended_thread_id, thread_id, BeamWatch};

    fn my_cpus() -> libc::cpu_set_t {
        current_cpus().unwrap()
    }

    fn has(set: &libc::cpu_set_t, cpu: usize) -> bool {
        // SAFETY: a CPU number below CPU_SETSIZE.
        unsafe { libc::CPU_ISSET(cpu, set) }
    }

    /// The CPUs in `set`, in order.
    fn cpus_of(set: &libc::cpu_set_t) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            .filter(|cpu| has(set, *cpu))
            .collect()
    }

    /// Two of the CPUs this test may use (none with one: nowhere to move).
    fn two_cpus() -> Option<(usize, usize)> {
        match cpus_of(&my_cpus())[..] {
            [a, b, ..] => Some((a, b)),
            _ => None,
        }
    }

    /// Runs `play_main` (a parking worker) in a thread of its own while another, held on `scheduler_cpu`,
    /// spins and is watched as if it were the BEAM's scheduler.
    fn with_a_busy_scheduler_on<T: Send + 'static>(
        scheduler_cpu: usize,
        play_main: impl FnOnce(Option<BeamWatch>) -> T + Send + 'static,
    ) -> T {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinning = done.clone();
        let scheduler = std::thread::spawn(move || {
            assert!(set_affinity(&only_cpu(scheduler_cpu)));
            tid_tx.send(thread_id()).unwrap();
            while !spinning.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let tid = tid_rx.recv().unwrap();
        let watch = Some(BeamWatch::of_threads(std::process::id(), &[tid]));
        let played = std::thread::spawn(move || play_main(watch)).join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        scheduler.join().unwrap();
        played
    }

    #[test]
    fn a_parking_worker_stops_watching_a_beam_it_cannot_read() {
        let mut watch = Some(BeamWatch::of_threads(
            std::process::id(),
            &[ended_thread_id()],
        ));
        move_to_beams_cpu(&mut watch);
        assert!(watch.is_none());
    }

    #[test]
    fn a_parking_worker_moves_to_the_cpu_of_the_busiest_scheduler() {
        let Some((scheduler_cpu, main_cpu)) = two_cpus() else {
            return;
        };
        let all = my_cpus();
        let (moved, count) = with_a_busy_scheduler_on(scheduler_cpu, move |mut watch| {
            move_to_beams_cpu(&mut watch);
            // On a loaded machine the scheduler may not run between two looks, or this
            // thread may be put back on its CPU: it tries a few looks.
            let moved = (0..50).find_map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(12));
                // On the other CPU (a running thread stays where it is), free to move.
                assert!(set_affinity(&only_cpu(main_cpu)) && set_affinity(&all));
                move_to_beams_cpu(&mut watch)
            });
            // SAFETY: reads a valid set.
            (moved, unsafe { libc::CPU_COUNT(&my_cpus()) })
        });
        // SAFETY: reads a valid set.
        assert_eq!(
            (moved, count),
            (Some(scheduler_cpu as i32), unsafe { libc::CPU_COUNT(&all) })
        );
    }

    #[test]
    fn a_parking_worker_stays_within_the_cpus_it_was_given() {
        // An operator held the port on `main_cpu`; the BEAM runs elsewhere.
        let Some((scheduler_cpu, main_cpu)) = two_cpus() else {
            return;
        };
        let (moved, mine) = with_a_busy_scheduler_on(scheduler_cpu, move |mut watch| {
            assert!(set_affinity(&only_cpu(main_cpu)));
            move_to_beams_cpu(&mut watch);
            std::thread::sleep(std::time::Duration::from_millis(20));
            let moved = move_to_beams_cpu(&mut watch);
            (moved, cpus_of(&my_cpus()))
        });
        assert_eq!((moved, mine), (None, vec![main_cpu]));
    }
}
