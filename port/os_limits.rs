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

/// The keys `os_limits` may have.
const KEYS: &[&str] = &["address_space", "cpu_seconds", "resident_memory"];

/// Address space the port needs beyond what it uses when `init` arrives: the engine,
/// its worker threads' stacks, the compile child's pipes and a first few instances.
pub const ADDRESS_SPACE_HEADROOM: u64 = 64 << 20;

/// Refuses a cap too small for this process to work under.
fn check_address_space(cap: u64, in_use: Option<u64>) -> Fallible<()> {
    let in_use = in_use.unwrap_or(0);
    let needed = in_use + ADDRESS_SPACE_HEADROOM;
    if cap < needed {
        return Err(format!(
            "os_limits address_space of {cap} bytes is too small: the Wasm host needs at \
             least {needed} bytes ({in_use} in use at start plus {ADDRESS_SPACE_HEADROOM} \
             for its engine and threads)"
        ));
    }
    Ok(())
}

/// The virtual memory size of this process in bytes (`/proc/self/statm`, first field).
fn address_space_in_use() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page_size.max(1) as u64)
}

impl OsLimits {
    /// `nil` or `#{address_space, cpu_seconds, resident_memory}` (each optional). Any
    /// other key is refused, naming it: a mistyped cap must not start an uncapped host.
    pub fn from_term(t: Option<&Term>) -> Fallible<OsLimits> {
        let Some(t) = t else {
            return Ok(OsLimits::default());
        };
        let m = term::as_map(t, "os_limits")?;
        let mut unknown: Vec<String> = m
            .keys()
            .filter(|k| !KEYS.iter().any(|known| **k == term::atom(known)))
            .map(|k| match k {
                Term::Atom(a) => format!(":{}", a.name),
                other => term::show(other),
            })
            .collect();
        unknown.sort();
        if let Some(key) = unknown.first() {
            return Err(format!(
                "unknown os_limits key {key} (known: {})",
                KEYS.join(", ")
            ));
        }
        let cap = |key: &str| match term::map_u64(m, key)? {
            Some(0) => Err(format!(
                "os_limits {key} must be a positive integer, got: 0"
            )),
            other => Ok(other),
        };
        Ok(OsLimits {
            address_space: cap("address_space")?,
            cpu_seconds: cap("cpu_seconds")?,
            resident_memory: cap("resident_memory")?,
        })
    }

    /// Applies the caps to this process. An `address_space` that leaves the process
    /// less than [`ADDRESS_SPACE_HEADROOM`] beyond what it already uses is refused: the
    /// engine, its threads and their stacks would fail to start.
    pub fn apply(&self, outbox: &Outbox) -> Fallible<()> {
        if let Some(bytes) = self.address_space {
            check_address_space(bytes, address_space_in_use())?;
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
    fn a_cap_of_zero_is_refused() {
        let t = term::map(vec![(term::atom("resident_memory"), term::int(0))]);
        assert_eq!(
            OsLimits::from_term(Some(&t)),
            Err("os_limits resident_memory must be a positive integer, got: 0".into())
        );
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let t = term::map(vec![
            (term::atom("cpu_seconds"), term::int(5)),
            (term::atom("resident_mem"), term::int(1 << 30)),
        ]);
        let err = OsLimits::from_term(Some(&t)).unwrap_err();
        assert_eq!(
            err,
            "unknown os_limits key :resident_mem (known: address_space, cpu_seconds, resident_memory)"
        );
        let string_key = term::map(vec![(term::binary(b"cpu_seconds".to_vec()), term::int(5))]);
        assert!(OsLimits::from_term(Some(&string_key)).is_err());
    }

    #[test]
    fn an_address_space_too_small_for_the_process_is_refused_saying_so() {
        let err = check_address_space(100 << 20, Some(50 << 20)).unwrap_err();
        assert!(
            err.contains("address_space of 104857600 bytes is too small"),
            "{err}"
        );
        assert!(err.contains("at least 119537664 bytes"), "{err}");
        assert!(check_address_space(120 << 20, Some(50 << 20)).is_ok());
        assert!(address_space_in_use().unwrap() > 0);
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
