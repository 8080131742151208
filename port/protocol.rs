//! The wire protocol between the BEAM and this program. `lib/wasmex/wire.ex` is the
//! Elixir twin of this file and `docs/protocol.md` describes both. A request read here
//! is decoded into a typed value in `request.rs`.
//!
//! BEAM -> port, one term a frame:
//!   `{Id, Op, Args}`: a request. `Id` is a positive integer chosen by the BEAM, `Op` an
//!   atom, `Args` a tuple. Every request gets exactly one reply carrying its `Id`, except
//!   notifications (ops listed in [`NOTIFICATIONS`]), which get none unless malformed.
//! port -> BEAM:
//!   `{hello, Version, WasmtimeVersion}`: sent once at start, before anything else.
//!   `{reply, Id, {ok, Value} | {error, Reason}}`: the answer to request `Id`
//!   (`Id` 0 when the request was too broken to carry one).
//!   `{callback, StoreId, CallbackId, Handler, Namespace, Name, Params}`: an import
//!   callback; answered with the `callback_return` notification.
//!   `{callback_abandoned, StoreId, CallbackId, Handler}`: nobody waits for that callback.
//!   `{stdio, StoreId, Handler, Bytes}`: WASI output; `{stdin_read, StoreId, Handler}`:
//!   WASI input wanted (answered with `stdin_data` / `stdin_eof`).
//!   `{log, Message}`: something went wrong that no request is waiting for.
//!   `{fatal, Message}`: the port is about to end itself (a cap was exceeded).

use crate::term::{self, Fallible};
use eetf::Term;

/// Bumped on every incompatible change of the wire; checked by the BEAM at start.
pub const PROTOCOL_VERSION: i64 = 2;

/// Ops that get no reply.
pub const NOTIFICATIONS: &[&str] = &[
    "callback_return",
    "store_drop",
    "module_drop",
    "stdin_data",
    "stdin_eof",
    "cancel",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: u64,
    pub op: String,
    pub args: Vec<Term>,
    /// The last argument's bytes when they stayed in the frame (see [`decode_frame`]).
    pub tail: Option<Tail>,
}

/// A frame that could not be read as a request; answered with an error reply under its
/// id (read from its head, see [`crate::request_head`], when the term cannot be decoded).
#[derive(Debug, PartialEq)]
pub struct Rejected {
    pub id: u64,
    pub reason: String,
    /// `(StoreId, CallbackId)` of a `callback_return` that could not be read: that
    /// callback fails with `reason`.
    pub callback: Option<(u64, u64)>,
}

/// Ops whose last argument may stay in the frame it came in (see [`Tail`]).
const TAIL_OPS: &[&str] = &["memory_write"];

/// Tail binaries shorter than this are decoded like any other term.
const TAIL_MIN: usize = 1 << 16;

/// A request's last argument, a large binary, left where it was read: in the frame.
/// The argument itself is then an empty binary; [`Request::bytes`] reads either.
#[derive(Debug, Clone, PartialEq)]
pub struct Tail {
    frame: Vec<u8>,
    start: usize,
}

impl Tail {
    /// The bytes, where they are in the frame.
    pub fn bytes(&self) -> &[u8] {
        &self.frame[self.start..]
    }
}

/// Decodes a request's payload (a copy of it: see [`decode_frame`]).
pub fn decode_request(payload: &[u8]) -> Result<Request, Rejected> {
    decode_frame(payload.to_vec())
}

/// Decodes a request's payload, taking it. A megabyte memory write is not copied out of
/// it: the BEAM sends such binaries last (`Wasmex.Wire.encode_request/3`), so the term
/// is decoded with an empty binary in their place and the bytes stay in the frame.
pub fn decode_frame(payload: Vec<u8>) -> Result<Request, Rejected> {
    let start = match crate::etf_guard::inspect(&payload) {
        Err(hazard) => return Err(malformed(&payload, hazard)),
        Ok(Some(start)) if payload.len() - start >= TAIL_MIN => start,
        Ok(_) => return decode_checked(&payload),
    };
    let mut head = payload[..start - 4].to_vec();
    head.extend_from_slice(&[0; 4]);
    let mut req = decode_checked(&head)?;
    let Some(last) = req.args.last_mut() else {
        return Ok(req);
    };
    if TAIL_OPS.contains(&req.op.as_str()) {
        req.tail = Some(Tail {
            frame: payload,
            start,
        });
    } else {
        *last = term::binary(payload[start..].to_vec());
    }
    Ok(req)
}

/// A payload that is no readable term, answered under whatever id its head shows.
fn malformed(payload: &[u8], reason: impl std::fmt::Display) -> Rejected {
    let head = crate::request_head::read(payload);
    let callback = match head.op.as_deref() {
        Some("callback_return") => head.first_two,
        _ => None,
    };
    Rejected {
        id: head.id,
        reason: format!("malformed frame: {reason}"),
        callback,
    }
}

/// Decodes a payload the guard has passed.
fn decode_checked(payload: &[u8]) -> Result<Request, Rejected> {
    let reject = |id: u64, reason: String| Rejected {
        id,
        reason,
        callback: None,
    };
    let t = Term::decode(payload).map_err(|e| malformed(payload, e))?;
    let not_a_request =
        |t: &Term| reject(0, term::as_tuple(t, 3, "request").err().unwrap_or_default());
    // Taken apart by value: a memory write's argument is megabytes.
    let [id, op, args]: [Term; 3] = match t {
        Term::Tuple(request) => request
            .elements
            .try_into()
            .map_err(|elements| not_a_request(&term::tuple(elements)))?,
        other => return Err(not_a_request(&other)),
    };
    let id = term::as_u64(&id, "request id").map_err(|e| reject(0, e))?;
    let wrong =
        |what: &str, t: &Term| reject(id, format!("request {what}, got: {}", term::show(t)));
    let op = match op {
        Term::Atom(atom) => atom.name,
        other => return Err(wrong("op must be an atom", &other)),
    };
    let args = match args {
        Term::Tuple(args) => args.elements,
        other => return Err(wrong("args must be a tuple", &other)),
    };
    Ok(Request {
        id,
        op,
        args,
        tail: None,
    })
}

impl Request {
    /// The binary argument at `i`, wherever it is kept.
    pub fn bytes(&self, i: usize, what: &str) -> Fallible<&[u8]> {
        let arg = self.arg(i)?;
        match &self.tail {
            Some(tail) if i + 1 == self.args.len() => Ok(&tail.frame[tail.start..]),
            _ => term::as_bytes(arg, what),
        }
    }

    /// Moves the argument at `i` out of the request (a `nil` is left in its place):
    /// arguments can be megabytes.
    pub fn take_arg(&mut self, i: usize) -> Fallible<Term> {
        self.arg(i)?;
        Ok(std::mem::replace(&mut self.args[i], term::nil()))
    }

    /// The argument at `i`, or an error naming the op's expected arity.
    pub fn arg(&self, i: usize) -> Fallible<&Term> {
        self.args.get(i).ok_or_else(|| {
            format!(
                "{} expects at least {} arguments, got {}",
                self.op,
                i + 1,
                self.args.len()
            )
        })
    }

    pub fn expect_arity(&self, n: usize) -> Fallible<()> {
        if self.args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "{} expects {} arguments, got {}",
                self.op,
                n,
                self.args.len()
            ))
        }
    }

    pub fn is_notification(&self) -> bool {
        NOTIFICATIONS.contains(&self.op.as_str())
    }
}

pub fn reply(id: u64, result: Fallible<Term>) -> Term {
    reply_term(id, result.map_err(|e| term::string(&crate::errors::cap(e))))
}

/// A reply whose error reason is a term (a message binary or `{exit, Code}`).
pub fn reply_term(id: u64, result: Result<Term, Term>) -> Term {
    let result = match result {
        Ok(v) => term::ok(v),
        Err(reason) => term::tuple(vec![term::atom("error"), reason]),
    };
    term::tuple(vec![term::atom("reply"), term::uint(id), result])
}

pub fn hello() -> Term {
    term::tuple(vec![
        term::atom("hello"),
        term::int(PROTOCOL_VERSION),
        term::string(wasmtime_version()),
    ])
}

pub fn log(message: &str) -> Term {
    term::tuple(vec![term::atom("log"), term::string(message)])
}

fn wasmtime_version() -> &'static str {
    "48"
}

/// Who a store request is addressed to: the store itself, or the caller of an import
/// callback that is waiting on that store's worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Store(u64),
    Caller { store: u64, caller: u64 },
}

impl Context {
    pub fn parse(t: &Term) -> Fallible<Context> {
        let parsed = match t {
            Term::FixInteger(_) | Term::BigInteger(_) => {
                term::as_u64(t, "store").ok().map(Context::Store)
            }
            Term::Tuple(tp)
                if tp.elements.len() == 3 && term::as_atom(&tp.elements[0]) == Some("caller") =>
            {
                return Ok(Context::Caller {
                    store: term::as_u64(&tp.elements[1], "store id")?,
                    caller: term::as_u64(&tp.elements[2], "caller id")?,
                });
            }
            _ => None,
        };
        parsed.ok_or_else(|| {
            format!(
                "expected a store id or {{caller, StoreId, CallerId}}, got: {}",
                term::show(t)
            )
        })
    }

    pub fn store_id(&self) -> u64 {
        match *self {
            Context::Store(id) | Context::Caller { store: id, .. } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(t: &Term) -> Vec<u8> {
        let mut v = Vec::new();
        t.encode(&mut v).unwrap();
        v
    }

    #[test]
    fn decodes_a_request() {
        let t = term::tuple(vec![
            term::int(7),
            term::atom("call"),
            term::tuple(vec![term::int(1)]),
        ]);
        let r = decode_request(&encode(&t)).unwrap();
        assert_eq!((r.id, r.op.as_str(), r.args.len()), (7, "call", 1));
    }

    fn write_request(op: &str, data: Vec<u8>) -> Vec<u8> {
        encode(&term::tuple(vec![
            term::int(9),
            term::atom(op),
            term::tuple(vec![term::uint(1), term::binary(data)]),
        ]))
    }

    #[test]
    fn a_large_memory_write_keeps_its_bytes_in_the_frame() {
        let data: Vec<u8> = (0..TAIL_MIN as u32 + 3).map(|i| i as u8).collect();
        let r = decode_frame(write_request("memory_write", data.clone())).unwrap();
        assert_eq!(
            (r.tail.is_some(), r.bytes(1, "data").unwrap()),
            (true, &data[..])
        );
    }

    #[test]
    fn a_large_binary_of_another_op_is_decoded_in_place() {
        let data = vec![5u8; TAIL_MIN];
        let r = decode_frame(write_request("module_load", data.clone())).unwrap();
        assert_eq!((r.tail, &r.args[1]), (None, &term::binary(data)));
    }

    #[test]
    fn a_large_tail_in_a_term_that_is_no_request_is_rejected() {
        // {9, {1, <<...>>}}: the binary ends the payload at depth 2, but the term has two
        // elements, not three.
        let t = term::tuple(vec![
            term::int(9),
            term::tuple(vec![term::uint(1), term::binary(vec![1; TAIL_MIN])]),
        ]);
        let err = decode_frame(encode(&t)).unwrap_err();
        assert!(err.reason.contains("request"), "{}", err.reason);
    }

    #[test]
    fn decode_frame_and_decode_request_agree_on_small_frames() {
        let payload = write_request("memory_write", b"abc".to_vec());
        assert_eq!(decode_frame(payload.clone()), decode_request(&payload));
    }

    #[test]
    fn truncated_term_is_rejected() {
        let t = term::tuple(vec![term::int(7), term::atom("call"), term::tuple(vec![])]);
        let bytes = encode(&t);
        let err = decode_request(&bytes[..bytes.len() - 2]).unwrap_err();
        assert!(err.reason.starts_with("malformed frame"), "{}", err.reason);
    }

    #[test]
    fn frames_that_would_crash_or_bloat_the_decoder_are_rejected() {
        let cases: Vec<Vec<u8>> = vec![
            vec![131, 68],                                            // distribution header
            vec![131, 82, 0],                                         // atom cache reference
            vec![131, 108, 255, 255, 255, 255],                       // list of 2^32-1 elements
            vec![131, 105, 255, 255, 255, 255],                       // tuple of 2^32-1 elements
            vec![131, 111, 255, 255, 255, 255, 0],                    // 4 GiB big integer
            vec![131, 77, 0, 0, 0, 1, 0, 255],                        // bit binary with 0 tail bits
            [vec![131], [104u8, 1].repeat(8000), vec![106]].concat(), // 8000 levels deep
        ];
        for payload in cases {
            let err = decode_request(&payload).unwrap_err();
            assert!(err.reason.starts_with("malformed frame"), "{}", err.reason);
        }
    }

    #[test]
    fn a_request_too_deep_to_decode_is_rejected_under_its_own_id() {
        let deep = [[104u8, 1].repeat(8000), vec![106]].concat();
        let payload = [
            vec![131, 104, 3, 97, 42, 119, 4],
            b"call".to_vec(),
            vec![104, 2, 97, 1],
            deep.clone(),
        ]
        .concat();
        let err = decode_request(&payload).unwrap_err();
        assert_eq!((err.id, err.callback), (42, None));
        assert!(err.reason.contains("nested deeper than"), "{}", err.reason);

        let result = [
            vec![131, 104, 3, 97, 0, 119, 15],
            b"callback_return".to_vec(),
            vec![104, 3, 97, 5, 97, 9],
            deep,
        ]
        .concat();
        let err = decode_request(&result).unwrap_err();
        assert_eq!((err.id, err.callback), (0, Some((5, 9))));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(decode_request(b"\x83\xff\xff").is_err());
        assert!(decode_request(b"").is_err());
    }

    #[test]
    fn wrong_shapes_are_rejected_with_the_id_when_known() {
        let no_tuple = term::tuple(vec![term::int(3), term::atom("call"), term::int(1)]);
        assert_eq!(decode_request(&encode(&no_tuple)).unwrap_err().id, 3);
        let bad_op = term::tuple(vec![term::int(4), term::int(9), term::tuple(vec![])]);
        assert_eq!(decode_request(&encode(&bad_op)).unwrap_err().id, 4);
        let bad_id = term::tuple(vec![
            term::atom("x"),
            term::atom("call"),
            term::tuple(vec![]),
        ]);
        assert_eq!(decode_request(&encode(&bad_id)).unwrap_err().id, 0);
    }

    #[test]
    fn parses_contexts() {
        assert_eq!(Context::parse(&term::int(5)).unwrap(), Context::Store(5));
        let caller = term::tuple(vec![term::atom("caller"), term::int(5), term::int(2)]);
        assert_eq!(
            Context::parse(&caller).unwrap(),
            Context::Caller {
                store: 5,
                caller: 2
            }
        );
        assert!(Context::parse(&term::atom("x")).is_err());
    }
}
