//! A short scheduler time slice for the port's store workers, the threads that spin.
//!
//! Linux's EEVDF scheduler lets the thread running on a CPU use up its time slice (1.4 ms
//! by default on a machine of 2 CPUs; the end of a slice is seen at a timer tick, 4 ms
//! apart with `HZ=250`) before a thread that wakes on that CPU gets it. A store worker
//! spins while round trips come close together (for its next task, see `workers.rs`, or
//! for a callback's answer, see `store::receive`), and the threads it waits for can wake
//! on its CPU: the port's main thread, which reads the BEAM's writes (see `input.rs`), or
//! a BEAM scheduler. Traced in a callback loop (`perf sched`), the main thread waited
//! 2.4 ms behind the spinning worker in the middle of a 13 µs round trip.
//!
//! Since Linux 6.12 a thread may ask for a slice of its own (`sched_setattr`'s
//! `sched_runtime`, 0.1 – 100 ms); a thread with a short slice holds its CPU only that
//! long against a thread that wakes there. Each worker asks for the shortest when it
//! starts (threads and processes a worker starts inherit it). The main thread keeps the
//! default: with all threads on a short slice, sequential calls were slower in two runs
//! of three and 64 callers no faster (`docs/performance.md`, Session 13). Only a thread
//! under the normal policy asks, with its nice value unchanged. Older kernels ignore the
//! request or refuse it; either way nothing else changes.

use std::time::Duration;

/// The slice asked for: the shortest the kernel grants.
pub const SLICE: Duration = Duration::from_micros(100);

/// `struct sched_attr` of `sched_setattr(2)`, its first version (48 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

/// Asks for [`SLICE`] for the calling thread (threads and processes it starts from now on
/// inherit it). Whether the kernel now reports that slice for it.
pub fn shorten() -> bool {
    // SAFETY: no arguments; returns the calling thread's policy or -1.
    if unsafe { libc::sched_getscheduler(0) } != libc::SCHED_OTHER {
        return false;
    }
    let Some(nice) = current_nice() else {
        return false;
    };
    let attr = SchedAttr {
        size: ATTR_SIZE,
        policy: libc::SCHED_OTHER as u32,
        nice,
        runtime: SLICE.as_nanos() as u64,
        ..SchedAttr::default()
    };
    // SAFETY: a valid sched_attr of the size it states, for the calling thread (0).
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    set == 0 && current() == Some(SLICE)
}

/// The calling thread's slice as the kernel reports it (`sched_getattr`): `None` where it
/// reports none (a kernel before 6.12 reports 0 for a thread under the normal policy).
fn current() -> Option<Duration> {
    let mut attr = SchedAttr::default();
    // SAFETY: a writable sched_attr of ATTR_SIZE bytes, for the calling thread (0).
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            ATTR_SIZE,
            0,
        )
    };
    (got == 0 && attr.runtime != 0).then(|| Duration::from_nanos(attr.runtime))
}

/// The calling thread's nice value.
fn current_nice() -> Option<i32> {
    // getpriority returns -1 both for nice -1 and for an error: errno tells them apart.
    // SAFETY: errno is thread-local; the calls take no pointers.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        (*libc::__errno_location() == 0).then_some(nice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// The calling thread's slice as `/proc` shows it (`se.slice`, in nanoseconds).
    fn proc_slice() -> Option<u64> {
        std::fs::read_to_string("/proc/thread-self/sched")
            .ok()?
            .lines()
            .find(|line| line.starts_with("se.slice"))?
            .split(':')
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn a_thread_that_got_the_short_slice_runs_with_it_and_passes_it_on() {
        thread::spawn(|| {
            let before = proc_slice();
            let applied = shorten();
            let after = proc_slice();
            let child = thread::spawn(proc_slice).join().unwrap();
            if applied {
                assert_eq!(after, Some(SLICE.as_nanos() as u64));
                assert_eq!(child, after);
            } else {
                // A kernel without slices of one's own: nothing changed.
                assert_eq!(after, before);
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_nice_value_is_kept() {
        thread::spawn(|| {
            let before = current_nice();
            shorten();
            assert_eq!(current_nice(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_under_another_policy_is_left_alone() {
        thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: a valid param, for the calling thread.
            assert_eq!(
                unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) },
                0
            );
            assert!(!shorten());
            // SAFETY: no arguments.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }
}
