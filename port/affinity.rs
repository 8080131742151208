//! Keeping a spinning worker off the CPU where the BEAM writes what it waits for.
//!
//! A callback's answer, and a request when requests come one at a time, wake the main
//! thread (see `input.rs`), which the kernel places on the CPU of the BEAM scheduler that
//! wrote it. A worker spinning on that same CPU is then preempted every time, and the
//! BEAM's CPU, left with nothing in between, sleeps: a callback loop ran at 30 - 40 us
//! per callback that way, against 13 - 15 us with the worker on the other CPU. So a
//! spinning worker (for a callback's answer, see `store::receive`, or for its next task,
//! see `workers.rs`) that finds itself on the main thread's CPU moves off it while it
//! spins, and gets its CPUs back before it runs or blocks. While moved it only spins: a
//! thread or process started from it would inherit the narrowed affinity.
//!
//! The main thread, for its part, moves to the CPU of the BEAM's busiest scheduler before
//! it waits for requests (see `beam_cpu.rs`), so that it wakes there.
//!
//! A thread narrows its affinity only within the CPUs it may use at that moment, and
//! gets back exactly those: an operator who restricts the running port (`taskset -a -p`)
//! is not undone.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// The CPU the main thread last woke up on (-1: not known).
static MAIN_CPU: AtomicI32 = AtomicI32::new(-1);

/// Whether this process could run on more than one CPU when it started (with one there
/// is nowhere to move, and no thread ever narrows its affinity). Taken by `main` first.
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

/// Called by the main thread after it wakes up.
pub fn note_main_cpu() {
    MAIN_CPU.store(current_cpu(), Ordering::Relaxed);
}

/// The BEAM's schedulers, for the main thread to follow (see [`main_to_beams_cpu`]);
/// none to watch with one CPU, where there is nowhere to move.
pub fn watch_beam() -> Option<crate::beam_cpu::BeamWatch> {
    several_cpus()
        .then(crate::beam_cpu::BeamWatch::find)
        .flatten()
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
    MAIN_CPU.store(cpu, Ordering::Relaxed);
    Some(cpu)
}

/// Moves the calling worker off the main thread's CPU if it is on it (two system calls,
/// only then). Whether it is moved (now or earlier in this spin).
fn keep_off_main_cpu() -> bool {
    if NARROWED.with(|n| n.get().is_some()) {
        return true;
    }
    let main = MAIN_CPU.load(Ordering::Relaxed);
    main >= 0 && current_cpu() == main && several_cpus() && move_off(main)
}

/// Narrows the calling thread's CPUs to those it may use now but `cpu`, if any are left;
/// remembers the CPUs it had, for `restore`. Whether it narrowed them.
fn move_off(cpu: i32) -> bool {
    let Some(mine) = current_cpus() else {
        return false;
    };
    let mut set = mine;
    // SAFETY: `cpu` is a CPU number the kernel gave (< CPU_SETSIZE).
    unsafe { libc::CPU_CLR(cpu as usize, &mut set) };
    // SAFETY: reads a valid set.
    let moved = unsafe { libc::CPU_COUNT(&set) } > 0 && set_affinity(&set);
    if moved {
        NARROWED.with(|n| n.set(Some(mine)));
    }
    moved
}

/// One turn of a worker's spin: moved off the main thread's CPU if `keep_off` and it is
/// there (then it reads nothing: what it would start, a thread or a compile child, would
/// inherit the narrowed affinity); otherwise with the CPUs it had, reading stdin if free.
pub fn spin_turn(keep_off: bool) {
    if keep_off && keep_off_main_cpu() {
        return;
    }
    restore();
    crate::input::drain_if_free();
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
    use crate::beam_cpu::{ended_thread_id, thread_id, BeamWatch};

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

    /// Runs `play_main` in a thread of its own while another, held on `scheduler_cpu`,
    /// spins and is watched as if it were the BEAM's scheduler.
    fn with_a_busy_scheduler_on<T: Send + 'static>(
        scheduler_cpu: usize,
        play_main: impl FnOnce(Option<BeamWatch>) -> T + Send + 'static,
    ) -> T {
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
        let watch = Some(BeamWatch::of_threads(std::process::id(), &[tid]));
        let played = std::thread::spawn(move || play_main(watch)).join().unwrap();
        scheduler.join().unwrap();
        played
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
        let Some((scheduler_cpu, main_cpu)) = two_cpus() else {
            return;
        };
        let all = my_cpus();
        let (moved, count) = with_a_busy_scheduler_on(scheduler_cpu, move |mut watch| {
            move_to_beams_cpu(&mut watch);
            std::thread::sleep(std::time::Duration::from_millis(20));
            // On the other CPU (a running thread stays where it is), free to move.
            assert!(set_affinity(&only_cpu(main_cpu)) && set_affinity(&all));
            let moved = move_to_beams_cpu(&mut watch);
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
    fn the_main_thread_stays_within_the_cpus_it_was_given() {
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

    #[test]
    fn a_thread_on_the_main_threads_cpu_moves_off_it_until_restored() {
        std::thread::spawn(|| {
            // With one CPU there is nowhere to move to.
            if !several_cpus() {
                return;
            }
            let before = my_cpus();
            // This thread plays the main thread too; the kernel may move it in between,
            // so it tries until it found itself on "the main thread's" CPU.
            let main = (0..1000)
                .find_map(|_| {
                    note_main_cpu();
                    let main = MAIN_CPU.load(Ordering::Relaxed);
                    keep_off_main_cpu().then_some(main)
                })
                .expect("moved off at least once");
            assert!(!has(&my_cpus(), main as usize));
            assert_ne!(current_cpu(), main);
            restore();
            assert_eq!(cpus_of(&my_cpus()), cpus_of(&before));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_held_on_one_cpu_does_not_move_off_it() {
        let Some((cpu, _)) = two_cpus() else {
            return;
        };
        let held = std::thread::spawn(move || {
            // Held by an operator on the CPU the main thread last ran on.
            assert!(set_affinity(&only_cpu(cpu)));
            let moved = move_off(cpu as i32);
            restore();
            (moved, cpus_of(&my_cpus()))
        })
        .join()
        .unwrap();
        assert_eq!(held, (false, vec![cpu]));
    }
}
