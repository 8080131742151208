//! Caps the operating system enforces on this process, set from the BEAM at `init`:
//!
//! * `address_space` (bytes): `RLIMIT_AS`. wasmtime normally reserves gigabytes of virtual
//!   address space per linear memory; under this cap the engine reserves only what a
//!   memory needs (see `engine.rs`), which costs explicit bounds checks in Wasm code.
//! * `cpu_seconds`: `RLIMIT_CPU`, the CPU time of the whole process over its life. At the
//!   limit the kernel ends it with SIGXCPU.
//! * `resident_memory` (bytes): Linux does not enforce `RLIMIT_RSS`, so a watchdog thread
//!   samples the resident set every 10 ms and ends the process (after a `{fatal, Message}`
//!   frame) when it is over the cap. A burst shorter than the sampling interval can
//!   overshoot; `Wasmex.StoreLimits` is the precise tool for Wasm memory.

use crate::outbox::Outbox;
use crate::term::{self, Fallible};
use eetf::Term;
use std::thread;
use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct OsLimits {
    pub address_space: Option<u64>,
    pub cpu_seconds: Option<u64>,
    pub resident_memory: Option<u64>,
}

/// Exit code of a host ended by the resident memory watchdog.
pub const RESIDENT_MEMORY_EXIT: i32 = 86;

impl OsLimits {
    /// `nil` or `#{address_space, cpu_seconds, resident_memory}` (each optional).
    pub fn from_term(t: Option<&Term>) -> Fallible<OsLimits> {
        let Some(t) = t else {
            return Ok(OsLimits::default());
        };
        let m = term::as_map(t, "os_limits")?;
        Ok(OsLimits {
            address_space: term::map_u64(m, "address_space")?,
            cpu_seconds: term::map_u64(m, "cpu_seconds")?,
            resident_memory: term::map_u64(m, "resident_memory")?,
        })
    }

    /// Applies the caps to this process.
    pub fn apply(&self, outbox: &Outbox) -> Fallible<()> {
        if let Some(bytes) = self.address_space {
            set_rlimit(libc::RLIMIT_AS, bytes, bytes, "address_space")?;
        }
        if let Some(secs) = self.cpu_seconds {
            // SIGXCPU at the soft limit; the hard limit (SIGKILL) one second later backs it up.
            set_rlimit(libc::RLIMIT_CPU, secs, secs + 1, "cpu_seconds")?;
        }
        if let Some(bytes) = self.resident_memory {
            watch_resident_memory(bytes, outbox.clone())?;
        }
        Ok(())
    }
}

fn set_rlimit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
    what: &str,
) -> Fallible<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass; it has no other memory effects.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot set {what}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Resident set size of this process in bytes.
pub fn resident_bytes() -> Option<u64> {
    resident_bytes_in("/proc/self/statm")
}

/// Resident set size of the process `pid` (a compile child) in bytes.
pub fn resident_bytes_of(pid: u32) -> Option<u64> {
    resident_bytes_in(&format!("/proc/{pid}/statm"))
}

fn resident_bytes_in(statm: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(statm).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page_size.max(1) as u64)
}

fn watch_resident_memory(cap: u64, outbox: Outbox) -> Fallible<()> {
    thread::Builder::new()
        .name("rss-watchdog".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_millis(10));
            if let Some(rss) = resident_bytes().filter(|&rss| rss > cap) {
                let msg =
                    format!("resident memory cap of {cap} bytes exceeded ({rss} bytes resident)");
                outbox.send(&term::tuple(vec![term::atom("fatal"), term::string(&msg)]));
                // Give the writer a moment to pass the message on, then end.
                thread::sleep(Duration::from_millis(20));
                std::process::exit(RESIDENT_MEMORY_EXIT);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the resident memory watchdog: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_limits() {
        let t = term::map(vec![
            (term::atom("cpu_seconds"), term::int(5)),
            (term::atom("address_space"), term::nil()),
        ]);
        let l = OsLimits::from_term(Some(&t)).unwrap();
        assert_eq!(
            l,
            OsLimits {
                cpu_seconds: Some(5),
                ..OsLimits::default()
            }
        );
        assert_eq!(OsLimits::from_term(None).unwrap(), OsLimits::default());
        let bad = term::map(vec![(term::atom("cpu_seconds"), term::int(-1))]);
        assert!(OsLimits::from_term(Some(&bad)).is_err());
    }

    #[test]
    fn measures_its_own_resident_memory() {
        assert!(resident_bytes().unwrap() > 0);
    }

    #[test]
    fn measures_another_process_by_pid() {
        assert!(resident_bytes_of(std::process::id()).unwrap() > 0);
        assert_eq!(resident_bytes_of(u32::MAX), None);
    }
}
