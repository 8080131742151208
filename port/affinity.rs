//! Keeping a spinning worker off the CPU where the BEAM writes what it waits for.
//!
//! A callback's answer, and a request when requests come one at a time, wake the main
//! thread (see `input.rs`), which the kernel places on the CPU of the BEAM scheduler that
//! wrote it. A worker spinning on that same CPU is then preempted every time, and the
//! BEAM's CPU, left with nothing in between, sleeps: a callback loop ran at 30 - 40 us
//! per callback that way, against 13 - 15 us with the worker on the other CPU. So a
//! spinning worker (for a callback's answer, see `store::receive`, or for its next task,
//! see `workers.rs`) that finds itself on the main thread's CPU moves off it while it
//! spins, and gets every CPU back before it runs or blocks. While moved it only spins: a
//! thread or process started from it would inherit the narrowed affinity.
//!
//! The main thread, for its part, moves to the CPU of the BEAM's busiest scheduler before
//! it waits for requests (see `beam_cpu.rs`), so that it wakes there.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// The CPU the main thread last woke up on (-1: not known).
static MAIN_CPU: AtomicI32 = AtomicI32::new(-1);

/// The CPUs this process may run on, as it started (`None` with one CPU: nothing to move
/// to). Taken by `main` before any thread is moved.
pub fn allowed() -> Option<&'static libc::cpu_set_t> {
    static ALLOWED: OnceLock<Option<libc::cpu_set_t>> = OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            // SAFETY: a zeroed cpu_set_t is a valid empty set, filled by the call.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: `set` is a valid cpu_set_t of `size` bytes.
            let ok = unsafe { libc::sched_getaffinity(0, size, &mut set) } == 0;
            // SAFETY: reads a valid set.
            (ok && unsafe { libc::CPU_COUNT(&set) } > 1).then_some(set)
        })
        .as_ref()
}

thread_local! {
    /// Whether this thread's affinity is narrowed (and must be restored).
    static NARROWED: Cell<bool> = const { Cell::new(false) };
}

fn current_cpu() -> i32 {
    // SAFETY: no arguments; -1 on failure.
    unsafe { libc::sched_getcpu() }
}

/// Called by the main thread after it wakes up.
pub fn note_main_cpu() {
    MAIN_CPU.store(current_cpu(), Ordering::Relaxed);
}

/// Called by the main thread before it waits for requests: moves it to the CPU of the
/// BEAM's busiest scheduler if it is elsewhere (see `beam_cpu.rs`), so that the next
/// request wakes it there; only while requests come one at a time, and at most once per
/// look at the schedulers. Stops watching when the BEAM's threads cannot be read. The
/// CPU it moved to, if it moved.
pub fn main_to_beams_cpu(watch: &mut Option<crate::beam_cpu::BeamWatch>) -> Option<i32> {
    // Under concurrent requests a worker reads, and both CPUs are busy anyway.
    if crate::workers::overlapping_requests() {
        return None;
    }
    move_to_beams_cpu(watch)
}

fn move_to_beams_cpu(watch: &mut Option<crate::beam_cpu::BeamWatch>) -> Option<i32> {
    let beam = watch.as_mut()?;
    let Some(allowed) = allowed() else {
        *watch = None;
        return None;
    };
    let cpu = match beam.look(std::time::Instant::now()) {
        Err(_) => {
            *watch = None;
            return None;
        }
        Ok(cpu) => cpu?,
    };
    // SAFETY: a CPU number the kernel gave (< CPU_SETSIZE).
    if cpu == current_cpu() || !unsafe { libc::CPU_ISSET(cpu as usize, allowed) } {
        return None;
    }
    // Moved at once (a running thread leaves a CPU it may no longer use), then free
    // again: it stays where it is until it waits, and wakes there.
    if !set_affinity(&only_cpu(cpu as usize)) {
        return None;
    }
    if !set_affinity(allowed) {
        // Held on one CPU (the process's CPUs changed?): threads it starts would inherit
        // that. Watching ends; whatever restores this thread's CPUs later may.
        NARROWED.with(|n| n.set(true));
        *watch = None;
        return None;
    }
    MAIN_CPU.store(cpu, Ordering::Relaxed);
    Some(cpu)
}

/// Whether this thread is moved off the main thread's CPU.
pub fn narrowed() -> bool {
    NARROWED.with(Cell::get)
}

/// Moves the calling worker off the main thread's CPU if it is on it (one system call,
/// only then). Whether it is moved.
pub fn keep_off_main_cpu() -> bool {
    if narrowed() {
        return true;
    }
    let main = MAIN_CPU.load(Ordering::Relaxed);
    if main < 0 || current_cpu() != main {
        return false;
    }
    let Some(allowed) = allowed() else {
        return false;
    };
    let mut set = *allowed;
    // SAFETY: `main` is a CPU number the kernel gave (< CPU_SETSIZE).
    unsafe { libc::CPU_CLR(main as usize, &mut set) };
    // SAFETY: reads a valid set.
    let moved = unsafe { libc::CPU_COUNT(&set) } > 0 && set_affinity(&set);
    NARROWED.with(|n| n.set(moved));
    moved
}

/// One turn of a worker's spin: moved off the main thread's CPU if `keep_off` and it is
/// there (then it reads nothing: what it would start, a thread or a compile child, would
/// inherit the narrowed affinity); otherwise with every CPU, reading stdin if free.
pub fn spin_turn(keep_off: bool) {
    if keep_off && keep_off_main_cpu() {
        return;
    }
    restore();
    crate::input::drain_if_free();
}

/// Gives a moved worker back every CPU the process started with.
pub fn restore() {
    if narrowed() {
        if let Some(allowed) = allowed() {
            if set_affinity(allowed) {
                NARROWED.with(|n| n.set(false));
            }
        }
    }
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
    use crate::beam_cpu::{ended_thread_id, thread_id, BeamWatch};

    fn my_cpus() -> libc::cpu_set_t {
        // SAFETY: as in `allowed`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid set of the right size.
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        set
    }

    fn has(set: &libc::cpu_set_t, cpu: i32) -> bool {
        // SAFETY: a CPU number the kernel gave.
        unsafe { libc::CPU_ISSET(cpu as usize, set) }
    }

    #[test]
    fn the_main_thread_stops_watching_a_beam_it_cannot_read() {
        let mut watch = Some(BeamWatch::of_threads(
            std::process::id(),
            &[ended_thread_id()],
        ));
        move_to_beams_cpu(&mut watch);
        assert!(watch.is_none());
    }

    #[test]
    fn the_main_thread_moves_to_the_cpu_of_the_busiest_scheduler() {
        let Some(allowed) = allowed() else { return };
        // A thread held on one CPU plays the BEAM's scheduler; this one plays the main
        // thread, held on another CPU until it moves.
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU numbers below CPU_SETSIZE.
            .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, allowed) })
            .collect();
        let (scheduler_cpu, main_cpu) = (cpus[0], cpus[1]);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let scheduler = std::thread::spawn(move || {
            assert!(set_affinity(&only_cpu(scheduler_cpu)));
            tid_tx.send(thread_id()).unwrap();
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(40) {
                std::hint::spin_loop();
            }
        });
        let tid = tid_rx.recv().unwrap();
        let moved = std::thread::spawn(move || {
            assert!(set_affinity(&only_cpu(main_cpu)));
            let mut watch = Some(BeamWatch::of_threads(std::process::id(), &[tid]));
            move_to_beams_cpu(&mut watch);
            std::thread::sleep(std::time::Duration::from_millis(20));
            let moved = move_to_beams_cpu(&mut watch);
            // SAFETY: reads valid sets.
            let all = unsafe { libc::CPU_COUNT(&my_cpus()) == libc::CPU_COUNT(allowed) };
            (moved, all)
        })
        .join()
        .unwrap();
        scheduler.join().unwrap();
        assert_eq!(moved, (Some(scheduler_cpu as i32), true));
    }

    #[test]
    fn a_thread_on_the_main_threads_cpu_moves_off_it_until_restored() {
        std::thread::spawn(|| {
            // With one CPU there is nowhere to move to.
            let Some(allowed) = allowed() else { return };
            // This thread plays the main thread too; the kernel may move it in between,
            // so it tries until it found itself on "the main thread's" CPU.
            let main = (0..1000)
                .find_map(|_| {
                    note_main_cpu();
                    let main = MAIN_CPU.load(Ordering::Relaxed);
                    keep_off_main_cpu().then_some(main)
                })
                .expect("moved off at least once");
            assert!(!has(&my_cpus(), main));
            assert_ne!(current_cpu(), main);
            restore();
            // SAFETY: reads valid sets.
            let (now, before) = unsafe { (libc::CPU_COUNT(&my_cpus()), libc::CPU_COUNT(allowed)) };
            assert_eq!(now, before);
        })
        .join()
        .unwrap();
    }
}
