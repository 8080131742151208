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
//!   `{reply_part, Id, Bytes}`: a part of the answer to request `Id`, ahead of its reply
//!   (a memory read of more than 1 MiB: see `memory::read_reply`).
//!   `{callback, StoreId, CallbackId, Handler, Namespace, Name, Params}`: an import
//!   callback; answered with the `callback_return` notification.
//!   `{callback_abandoned, StoreId, CallbackId, Handler}`: nobody waits for that callback.
//!   `{stdio, StoreId, Handler, Bytes}`: WASI output; `{stdin_read, StoreId, Handler}`:
//!   WASI input wanted (answered with `stdin_data` / `stdin_eof`).
//!   `{log, Message}`: something went wrong that no request is waiting for.
//!   `{fatal, Message}`: the port is about to end itself (a cap was exceeded).

use crate::term::{self, Fallible};
use eetf::Term;

/// The id of a request nobody waits for (`Wasmex.Wire.unanswered_id/0`: a callback's
/// write into its caller's memory): it is served like any other, but gets no reply, which
/// the BEAM would only drop.
pub const UNANSWERED_ID: u64 = 1 << 62;

/// Bumped on every incompatible change of the wire; checked by the BEAM at start.
pub const PROTOCOL_VERSION: i64 = 4;

/// Ops that get no reply when sent under id 0, as the BEAM sends them. `stdin_data` may
/// also come as a request (`Wasmex.Wasi.write_stdin/2`), under an id, and is answered.
pub const NOTIFICATIONS: &[&str] = &[
    "callback_return",
    "store_drop",
    "store_open",
    "module_drop",
    "stdin_data",
    "stdin_eof",
    "cancel",
    "instance_stop",
    "component_instance_stop",
    "output_ack",
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
const TAIL_OPS: &[&str] = &["memory_write", "memory_stage"];

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
        self.id == 0 && NOTIFICATIONS.contains(&self.op.as_str())
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
#[path = "protocol_tests.rs"]
mod tests;
