//! Which CPU the BEAM's busiest scheduler runs on, read from `/proc`, so that the main
//! thread can wait for requests there.
//!
//! A request that comes after the previous answer wakes the main thread (see `input.rs`),
//! and the kernel wakes a thread on the CPU it last ran on when that CPU is idle. If the
//! main thread last ran on the CPU the BEAM's scheduler is not on, each request wakes that
//! idle CPU (25 - 35 us for a halted vCPU on the project's machine), and the BEAM's CPU,
//! with nothing to do meanwhile, halts too: `start_link` took 35 - 67 us that way and
//! 16 us with the main thread on the BEAM's CPU, where it preempts the scheduler
//! that wrote the request. Either placement lasts once taken (see docs/performance.md),
//! so before it waits the main thread moves itself to the scheduler's CPU.
//!
//! The port's parent is `erl_child_setup`, whose parent is the BEAM. Every
//! [`SAMPLE_EVERY`] the main thread reads the run time of the BEAM's schedulers
//! (`/proc/<pid>/task/<tid>/schedstat`) and the CPU the one that ran most since the last
//! look last ran on (`stat`). Anything unexpected (no such parent, `/proc` hidden, more
//! than [`MAX_SCHEDULERS`] schedulers) turns this off for good.

use std::fs;
use std::time::{Duration, Instant};

/// How often the schedulers are looked at (a look costs a few file reads, some 10 us).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Beyond this many schedulers a look costs too much, and a halted vCPU is less likely.
pub const MAX_SCHEDULERS: usize = 8;

/// The BEAM's threads could not be read (it exited, or `/proc` changed).
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// The BEAM's schedulers, and what the last look saw.
#[derive(Debug)]
pub struct BeamWatch {
    pid: u32,
    /// Thread ids of the normal schedulers, with their run time (ns) at the last look.
    schedulers: Vec<(u32, u64)>,
    last_look: Option<Instant>,
}

impl BeamWatch {
    /// Finds the BEAM this process was started by (`None` if it was not, or `/proc` does
    /// not tell).
    pub fn find() -> Option<BeamWatch> {
        Self::of(beam_pid()?)
    }

    /// Watches the schedulers of the BEAM with OS pid `pid`.
    pub fn of(pid: u32) -> Option<BeamWatch> {
        let mut schedulers = Vec::new();
        for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let Some(tid) = entry
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse().ok())
            else {
                continue;
            };
            let comm =
                fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
            if is_scheduler(comm.trim_end()) {
                schedulers.push(tid);
            }
        }
        (!schedulers.is_empty() && schedulers.len() <= MAX_SCHEDULERS)
            .then(|| BeamWatch::of_threads(pid, &schedulers))
    }

    /// Watches the threads `tids` of process `pid` as if they were a BEAM's schedulers.
    pub fn of_threads(pid: u32, tids: &[u32]) -> BeamWatch {
        BeamWatch {
            pid,
            schedulers: tids.iter().map(|tid| (*tid, 0)).collect(),
            last_look: None,
        }
    }

    /// If a look is due (the last one is [`SAMPLE_EVERY`] old): the CPU of the scheduler
    /// that ran most since the last look. `None` between looks, at the first look, and
    /// when no scheduler ran; so a caller acts on a CPU once, not for the whole interval.
    pub fn look(&mut self, now: Instant) -> Result<Option<i32>, Unreadable> {
        if self.last_look.is_some_and(|at| now - at < SAMPLE_EVERY) {
            return Ok(None);
        }
        let first = self.last_look.is_none();
        self.last_look = Some(now);
        match self.busiest()? {
            Some(tid) if !first => Ok(Some(last_cpu(self.pid, tid).ok_or(Unreadable)?)),
            _ => Ok(None),
        }
    }

    /// The scheduler that ran longest since the last look (none if none ran).
    fn busiest(&mut self) -> Result<Option<u32>, Unreadable> {
        let mut busiest: Option<(u64, u32)> = None;
        for (tid, seen) in &mut self.schedulers {
            let ran = run_time(self.pid, *tid).ok_or(Unreadable)?;
            let lately = ran.saturating_sub(*seen);
            *seen = ran;
            if lately > 0 && busiest.is_none_or(|(most, _)| lately > most) {
                busiest = Some((lately, *tid));
            }
        }
        Ok(busiest.map(|(_, tid)| tid))
    }
}

/// A normal scheduler's thread name: `<n>_scheduler` (dirty ones are `<n>_dirty_...`).
fn is_scheduler(name: &str) -> bool {
    name.strip_suffix("_scheduler")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The OS pid of the BEAM this process was started by (`None` if it was not, or `/proc`
/// does not tell): the parent of its parent, `erl_child_setup`.
pub fn beam_pid() -> Option<u32> {
    // SAFETY: no arguments.
    let child_setup = unsafe { libc::getppid() } as u32;
    let beam = parent_of(child_setup)?;
    fs::read_to_string(format!("/proc/{beam}/comm"))
        .ok()?
        .starts_with("beam")
        .then_some(beam)
}

/// Field `n` (counted from 1, as in proc(5); 3 or later) of a `/proc/.../stat` file.
/// Counted after the command name, which may hold spaces and parentheses.
fn stat_field<T: std::str::FromStr>(path: &str, n: usize) -> Option<T> {
    let stat = fs::read_to_string(path).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n - 3)?.parse().ok()
}

/// A process's parent (field 4).
fn parent_of(pid: u32) -> Option<u32> {
    stat_field(&format!("/proc/{pid}/stat"), 4)
}

/// The CPU a thread last ran on (field 39).
fn last_cpu(pid: u32, tid: u32) -> Option<i32> {
    stat_field(&format!("/proc/{pid}/task/{tid}/stat"), 39)
}

/// How long a thread has run, in ns (the first field of `schedstat`).
fn run_time(pid: u32, tid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The calling thread's id (for tests that let threads of their own play schedulers).
#[cfg(test)]
pub fn thread_id() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::gettid() as u32 }
}

/// The id of a thread that is gone: above the kernel's largest id (`pid_max` is at most
/// 2^22), so it never names a thread. (The id of a thread that ended would be reused by
/// the next thread the tests start.)
#[cfg(test)]
pub fn ended_thread_id() -> u32 {
    u32::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_names_are_told_from_other_threads() {
        let names = [
            "1_scheduler",
            "12_scheduler",
            "1_dirty_cpu_sch",
            "_scheduler",
            "aux",
        ];
        let found: Vec<bool> = names.iter().map(|n| is_scheduler(n)).collect();
        assert_eq!(found, [true, true, false, false, false]);
    }

    #[test]
    fn a_process_without_schedulers_is_not_watched() {
        assert!(BeamWatch::of(std::process::id()).is_none());
    }

    #[test]
    fn the_parent_and_cpu_of_this_process_are_read() {
        // SAFETY: no arguments.
        let (parent, cpu) = unsafe { (libc::getppid(), libc::sched_getcpu()) };
        assert_eq!(parent_of(std::process::id()), Some(parent as u32));
        // This thread may move between the two reads; it ran on some CPU it may use.
        let last = last_cpu(std::process::id(), std::process::id()).unwrap();
        assert!(last >= 0 && cpu >= 0);
    }

    #[test]
    fn a_scheduler_that_is_gone_makes_the_watch_unreadable() {
        let mut watch = BeamWatch::of_threads(std::process::id(), &[ended_thread_id()]);
        assert_eq!(watch.look(Instant::now()), Err(Unreadable));
    }

    #[test]
    fn a_cpu_is_given_once_per_look_from_the_second_on() {
        let mut watch = BeamWatch::of_threads(std::process::id(), &[thread_id()]);
        let start = Instant::now();
        assert_eq!(watch.look(start), Ok(None));
        // Runs, then lets the kernel account for it (at a switch).
        while start.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_millis(1));
        let second = watch.look(start + SAMPLE_EVERY).unwrap();
        // Until the next look is due, nothing more.
        let between = watch.look(start + SAMPLE_EVERY + SAMPLE_EVERY / 2).unwrap();
        assert!(second.is_some() && between.is_none());
    }

    #[test]
    fn the_busiest_scheduler_is_the_one_that_ran() {
        // Two threads of this test stand in for a BEAM's schedulers: one spins, one
        // sleeps.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let spinning = std::thread::spawn(move || {
            tid_tx.send(thread_id()).unwrap();
            let until = Instant::now() + Duration::from_millis(60);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        });
        let spinner = tid_rx.recv().unwrap();
        let sleeper = thread_id();
        let mut watch = BeamWatch::of_threads(std::process::id(), &[sleeper, spinner]);
        watch.busiest().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let busiest = watch.busiest().unwrap();
        spinning.join().unwrap();
        assert_eq!(busiest, Some(spinner));
    }
}
