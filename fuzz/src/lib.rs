//! Shared by the fuzz targets in `fuzz_targets/`: the request driver of the `dispatch`
//! target (see docs/fuzzing.md).

pub mod driver;

use eetf::Term;
use wasmex_port::term;

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
