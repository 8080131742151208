//! The keeper: a child process that keeps idle CPUs from halting while round trips are out.
//!
//! On a virtual machine whose idle vCPUs halt at once (this project's machine boots with
//! `haltpoll.guest_halt_poll_ns=0`), waking a thread on a halted vCPU costs a trip
//! through the hypervisor, and which of the BEAM's and the port's threads sleep where
//! decided whether a callback in a Wasm loop took 13 µs or 25 – 40 µs (see
//! docs/performance.md, "Session 10"). The keeper spins on otherwise idle CPUs while
//! requests come close together, so that every wake-up lands on a running CPU.
//!
//! It must never take a CPU from anyone, so it runs at the lowest priority there is:
//!
//! * `SCHED_IDLE`: the kernel runs it only when nothing else wants the CPU, and any other
//!   thread that wakes there preempts it at once;
//! * in a session of its own, with that session's autogroup at nice 19. The kernel
//!   schedules each session's autogroup as a whole against the others: inside the port's
//!   group an idle thread would still count as the whole group against the BEAM's (tried:
//!   calls took milliseconds).
//!
//! It spins only while held: a worker about to spin for a request or an answer (see
//! `workers.rs` and `store::receive`) holds it for [`HOLD_SPINS`] spin times (5 ms), and
//! it parks on a futex when that runs out. With `spin_us: 0` nothing holds it, and the
//! port starts none.
//!
//! The port starts it from the main thread once it has been wanted a few times (the kernel's
//! parent-death signal follows the thread that started a child, and the main thread lives
//! as long as the port). It is `wasmex_port --keeper <port pid> <threads>`, with the page
//! it shares with the port (a memfd) as its stdin; it ends with the port (`SIGKILL` on the
//! parent's death). At most [`THREADS_MAX`] threads: on this 2-vCPU machine one per CPU.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The most threads a keeper spins with.
pub const THREADS_MAX: usize = 2;

/// How long a hold lasts, in spins of the caller: 5 ms with the default spin of 100 µs.
/// Measured (`--only call_latency,callback,start_link`, 3 runs each): holds of 200 µs
/// left the keeper parking about 3,000 times a second in a callback loop, and two runs
/// of three in the slow mode; 5 ms and 1 s held it through and kept every run fast.
pub const HOLD_SPINS: u32 = 50;

/// How often a parked keeper looks whether the port is still there (its death signal
/// normally ends it first).
const PARENT_CHECK: Duration = Duration::from_secs(1);

/// What the port and its keeper share: the start of one page of a memfd.
#[repr(C)]
struct Shared {
    /// `CLOCK_MONOTONIC` nanoseconds until which the keeper spins.
    until: AtomicU64,
    /// A futex word, bumped to wake parked keeper threads.
    wake: AtomicU32,
    /// Keeper threads parked, or about to park.
    parked: AtomicU32,
}

impl Shared {
    #[cfg(test)]
    const fn new() -> Shared {
        Shared {
            until: AtomicU64::new(0),
            wake: AtomicU32::new(0),
            parked: AtomicU32::new(0),
        }
    }

    /// Keeps the keeper spinning for `window_ns` from now; wakes it if it parked. Writes
    /// the shared line only once half the window has passed.
    fn hold(&self, window_ns: u64) {
        let now = monotonic_ns();
        if self.until.load(Ordering::Relaxed) >= now + window_ns / 2 {
            return;
        }
        self.until.fetch_max(now + window_ns, Ordering::SeqCst);
        // Either the keeper, about to park, sees the new deadline, or this sees it parked.
        if self.parked.load(Ordering::SeqCst) > 0 {
            self.wake.fetch_add(1, Ordering::SeqCst);
            futex_wake(&self.wake);
        }
    }

    /// Whether a hold is in force now.
    fn held(&self) -> bool {
        monotonic_ns() < self.until.load(Ordering::SeqCst)
    }

    /// A keeper thread's life: spins while held, parks otherwise. Returns once `alive`
    /// says no after a park.
    fn keep(&self, alive: impl Fn() -> bool) {
        loop {
            if self.held() {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
                continue;
            }
            let seen = self.wake.load(Ordering::SeqCst);
            self.parked.fetch_add(1, Ordering::SeqCst);
            if !self.held() {
                futex_wait(&self.wake, seen, PARENT_CHECK);
            }
            self.parked.fetch_sub(1, Ordering::SeqCst);
            if !alive() {
                return;
            }
        }
    }

    #[cfg(test)]
    fn parked(&self) -> u32 {
        self.parked.load(Ordering::SeqCst)
    }
}

fn monotonic_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Waits while `word` holds `seen`, at most `timeout` (a shared futex: the word may be in
/// a mapping shared with another process).
fn futex_wait(word: &AtomicU32, seen: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; `ts` is valid.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; waking has no other effect.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// The size of the file the port and its keeper share.
const PAGE: usize = 4096;

/// The [`Shared`] at the start of `file` (a memfd of [`PAGE`] bytes), mapped for the rest
/// of the process's life.
fn shared_in(file: &OwnedFd) -> Result<&'static Shared, String> {
    let map = crate::bulk::map_shared(file, PAGE)?;
    // SAFETY: the page is zeroed by the kernel (a valid Shared: atomics of 0) or written
    // only through a Shared's atomics, page-aligned, and never unmapped.
    Ok(unsafe { &*(map as *const Shared) })
}

// -- the port's side ---------------------------------------------------------------------

/// The keeper, once the main thread tried to start one (`None`: it could not).
static KEEPER: OnceLock<Option<&'static Shared>> = OnceLock::new();
/// Holds asked for before there was a keeper.
static WANTED: AtomicU32 = AtomicU32::new(0);

/// Holds asked for before the main thread starts a keeper: a host that serves a request
/// or two (a store's own host, used once) starts none; starting one costs about 0.4 ms.
pub const START_AFTER: u32 = 32;

/// Holds the keeper for [`HOLD_SPINS`] times `spin` (the spin a caller is about to
/// start), or asks the main thread to start one. Nothing with one CPU: there is no other
/// CPU to keep awake.
pub fn hold(spin: Duration) {
    match KEEPER.get() {
        Some(Some(shared)) => shared.hold((spin * HOLD_SPINS).as_nanos() as u64),
        Some(None) => {}
        None => {
            // Counts up to the start only: no write to the shared line once there.
            if crate::affinity::several_cpus() && WANTED.load(Ordering::Relaxed) < START_AFTER {
                WANTED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Starts the keeper if workers asked for one [`START_AFTER`] times and none was tried
/// yet. Called by the main thread only (see the module's documentation); what went wrong,
/// if it could not.
pub fn start_if_wanted() -> Option<String> {
    if WANTED.load(Ordering::Relaxed) < START_AFTER || KEEPER.get().is_some() {
        return None;
    }
    let started = start();
    let error = started.as_ref().err().cloned();
    let _ = KEEPER.set(started.ok());
    error
}

fn start() -> Result<&'static Shared, String> {
    let beam_group = crate::beam_cpu::beam_pid()
        .and_then(|beam| std::fs::read_to_string(format!("/proc/{beam}/autogroup")).ok());
    if let Some(why) = beam_group.as_deref().and_then(too_low_beside) {
        return Err(why);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let file = crate::bulk::sealed_memfd(c"wasmex-keeper", PAGE)?;
    let shared = shared_in(&file)?;
    let threads = crate::affinity::cpu_count().clamp(1, THREADS_MAX);
    Command::new(exe)
        .arg("--keeper")
        .arg(std::process::id().to_string())
        .arg(threads.to_string())
        .stdin(Stdio::from(file))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start a keeper process: {e}"))?;
    Ok(shared)
}

/// The nice value of the autogroup a keeper runs in: the lowest weight there is.
const KEEPER_NICE: i32 = 19;

/// Why a keeper must not start beside the BEAM whose `/proc/<pid>/autogroup` reads
/// `autogroup`, if it must not. A keeper yields to other sessions only because its
/// autogroup weighs less than theirs: beside a BEAM whose autogroup is at nice 19 already
/// it would compete as an equal (measured: 32 instances 87 - 102k calls/s against 159 -
/// 184k without it, and callback loops of 23 - 27 us against 13 - 16).
fn too_low_beside(autogroup: &str) -> Option<String> {
    let nice: i32 = autogroup
        .split_whitespace()
        .skip_while(|word| *word != "nice")
        .nth(1)?
        .parse()
        .ok()?;
    (nice >= KEEPER_NICE).then(|| {
        format!(
            "the BEAM's autogroup runs at nice {nice}, as low as a keeper's ({KEEPER_NICE}): \
             a keeper would take CPU time from it"
        )
    })
}

// -- the keeper's side -------------------------------------------------------------------

/// `wasmex_port --keeper <port pid> <threads>`: keeps CPUs awake for the port until it
/// ends. The exit code (the keeper normally ends by `SIGKILL` with the port).
pub fn child_main(args: &[String]) -> i32 {
    let (Some(Ok(parent)), Some(Ok(threads))) = (
        args.first().map(|a| a.parse::<libc::pid_t>()),
        args.get(1).map(|a| a.parse::<usize>()),
    ) else {
        return 2;
    };
    // SAFETY: plain libc calls without pointers.
    unsafe {
        if libc::getppid() != parent {
            return 0;
        }
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // The port may have ended before the death signal was asked for.
        if libc::getppid() != parent {
            return 0;
        }
        // A session (so an autogroup) of its own: see the module's documentation.
        libc::setsid();
    }
    // Best effort: without autogroups there is no such file, and none is needed.
    let _ = std::fs::write("/proc/self/autogroup", KEEPER_NICE.to_string());
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid param, for the calling thread; threads started later inherit it.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        return 1;
    }
    // SAFETY: fd 0 is the file the port shares, as stdin, owned from here on.
    let Ok(shared) = shared_in(&unsafe { OwnedFd::from_raw_fd(0) }) else {
        return 1;
    };
    // SAFETY: no arguments.
    let alive = move || unsafe { libc::getppid() } == parent;
    for _ in 1..threads.clamp(1, THREADS_MAX) {
        if std::thread::Builder::new()
            .spawn(move || shared.keep(alive))
            .is_err()
        {
            break;
        }
    }
    shared.keep(alive);
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread;
    use std::time::Instant;

    fn wait_for(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !what() {
            if Instant::now() > deadline {
                return false;
            }
            thread::yield_now();
        }
        true
    }

    /// A keeper thread on a `Shared` of its own, once it has parked.
    struct Parked {
        shared: Arc<Shared>,
        alive: Arc<AtomicBool>,
        thread: thread::JoinHandle<()>,
    }

    fn parked_keeper() -> Parked {
        let shared = Arc::new(Shared::new());
        let alive = Arc::new(AtomicBool::new(true));
        let (s, a) = (shared.clone(), alive.clone());
        let thread = thread::spawn(move || s.keep(|| a.load(Ordering::SeqCst)));
        assert!(wait_for(|| shared.parked() == 1), "an unheld keeper parks");
        Parked {
            shared,
            alive,
            thread,
        }
    }

    impl Parked {
        /// Ends the keeper thread the way a keeper ends when its port is gone.
        fn end(self) {
            self.alive.store(false, Ordering::SeqCst);
            self.shared.wake.fetch_add(1, Ordering::SeqCst);
            futex_wake(&self.shared.wake);
            self.thread.join().unwrap();
        }
    }

    #[test]
    fn an_unheld_keeper_parks() {
        parked_keeper().end();
    }

    #[test]
    fn a_hold_wakes_a_parked_keeper_until_it_runs_out() {
        let keeper = parked_keeper();
        let shared = &keeper.shared;
        shared.hold(Duration::from_millis(200).as_nanos() as u64);
        assert!(wait_for(|| shared.parked() == 0), "a hold wakes the keeper");
        assert!(
            wait_for(|| shared.parked() == 1),
            "it parks once the hold ran out"
        );
        keeper.end();
    }

    #[test]
    fn a_hold_within_half_its_window_writes_nothing() {
        let shared = Shared::new();
        shared.hold(1_000_000_000);
        let until = shared.until.load(Ordering::SeqCst);
        shared.hold(1_000_000_000);
        assert_eq!(shared.until.load(Ordering::SeqCst), until);
    }

    #[test]
    fn no_keeper_starts_beside_a_beam_whose_autogroup_is_as_low_as_its_own() {
        let why = too_low_beside("/autogroup-172039 nice 19\n");
        assert!(why.is_some_and(|why| why.contains("nice 19")));
    }

    #[test]
    fn a_keeper_starts_beside_a_beam_whose_autogroup_weighs_more() {
        assert_eq!(too_low_beside("/autogroup-172039 nice 0\n"), None);
    }

    #[test]
    fn an_autogroup_that_cannot_be_read_does_not_stop_a_keeper() {
        assert_eq!(too_low_beside("nice"), None);
    }

    #[test]
    fn a_keeper_given_a_bad_command_line_ends() {
        assert_eq!(child_main(&["not a pid".into(), "2".into()]), 2);
    }

    #[test]
    fn a_keeper_whose_parent_is_another_process_ends_at_once() {
        // pid 1 is not this test's parent.
        assert_eq!(child_main(&["1".into(), "2".into()]), 0);
    }
}
