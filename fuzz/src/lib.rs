//! Shared by the fuzz targets in `fuzz_targets/`: the request driver of the `dispatch`
//! target and the filter of known crashes (see docs/fuzzing.md).

pub mod driver;
pub mod guard;

use eetf::Term;
use std::sync::OnceLock;
use wasmex_port::term;

/// Whether inputs that hit crashes already reported are skipped, so that a run gets past
/// them to new ones: set `WASMEX_FUZZ_SKIP_KNOWN=1`. Off by default: a plain run must
/// find them (until they are fixed, when the filter can go).
pub fn skip_known(stream: &[u8]) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| {
        std::env::var("WASMEX_FUZZ_SKIP_KNOWN").is_ok_and(|v| !v.is_empty() && v != "0")
    });
    on && guard::stream_hazard(stream).is_some()
}

/// As `skip_known`, for one payload (no frame prefix).
pub fn skip_known_payload(payload: &[u8]) -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| {
        std::env::var("WASMEX_FUZZ_SKIP_KNOWN").is_ok_and(|v| !v.is_empty() && v != "0")
    });
    on && guard::payload_hazard(payload).is_some()
}

/// A term in External Term Format (no frame prefix).
pub fn encode(t: &Term) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    t.encode(&mut v).ok()?;
    Some(v)
}

/// `{Id, Op, {Args...}}` as the BEAM encodes it.
pub fn request(id: u64, op: &str, args: Vec<Term>) -> Vec<u8> {
    encode(&term::tuple(vec![
        term::uint(id),
        term::atom(op),
        term::tuple(args),
    ]))
    .expect("encodable request")
}
