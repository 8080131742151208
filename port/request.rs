//! Requests as typed values: every request is decoded once, from the positional tuple of
//! the wire (`protocol.rs`, docs/protocol.md), into a variant with named fields, and one
//! `match` dispatches it (host-wide ops in `host/`, store ops in `store/answer.rs`). The
//! wire's shapes are unchanged.

use crate::protocol::{Context, Request, Tail};
use crate::term::{self, Fallible};
use eetf::Term;
use std::time::Duration;

/// A host-wide request, or one for a store (whose op is decoded once its store is found,
/// so that a request for an unknown store says so, whatever its shape).
pub enum Op {
    Init {
        config: Term,
    },
    ModuleCompile {
        key: Vec<u8>,
        source: Term,
    },
    ModuleSerialize {
        key: Vec<u8>,
        source: Term,
    },
    Precompile {
        bytes: Vec<u8>,
    },
    /// `{Bytes, Options}`: run an init export and snapshot the module (`preinit.rs`).
    Preinitialize {
        bytes: Vec<u8>,
        options: Term,
    },
    /// Compiles a component; decoded by `component/registry.rs`.
    ComponentCompile(Request),
    /// The exports of a WIT world; decoded by `component/wit.rs`.
    WitExports(Request),
    /// WASI output acknowledged by its receiver (`output.rs`).
    OutputAck {
        args: Vec<Term>,
    },
    WatToWasm {
        text: Vec<u8>,
    },
    ModuleDrop {
        key: Vec<u8>,
    },
    StoreNew {
        limits: Term,
        wasi: Term,
    },
    /// A store under an id the BEAM chose, made without a reply (`store_open`).
    StoreOpen {
        store: u64,
        limits: Term,
        wasi: Term,
    },
    StoreDrop {
        store: u64,
    },
    StdinData {
        store: u64,
        data: Vec<u8>,
    },
    StdinEof {
        store: u64,
    },
    /// `store` is `None` for a host-wide request (a compile).
    Cancel {
        store: Option<u64>,
        request: u64,
    },
    CallbackReturn {
        store: u64,
        callback: u64,
        result: Term,
    },
    Store {
        ctx: Context,
        request: Request,
    },
}

impl Op {
    pub fn decode(mut req: Request) -> Fallible<Op> {
        let bytes = |req: &Request, i: usize, what: &str| -> Fallible<Vec<u8>> {
            Ok(term::as_bytes(req.arg(i)?, what)?.to_vec())
        };
        let op = match req.op.as_str() {
            "init" => {
                req.expect_arity(1)?;
                Op::Init {
                    config: req.take_arg(0)?,
                }
            }
            "module_compile" | "module_serialize" => {
                req.expect_arity(2)?;
                let key = bytes(&req, 0, "module key")?;
                let source = req.take_arg(1)?;
                if req.op == "module_compile" {
                    Op::ModuleCompile { key, source }
                } else {
                    Op::ModuleSerialize { key, source }
                }
            }
            "precompile" => {
                req.expect_arity(1)?;
                Op::Precompile {
                    bytes: bytes(&req, 0, "module bytes")?,
                }
            }
            "preinitialize" => {
                req.expect_arity(2)?;
                Op::Preinitialize {
                    bytes: bytes(&req, 0, "module bytes")?,
                    options: req.take_arg(1)?,
                }
            }
            "component_compile" => Op::ComponentCompile(req),
            "wit_exports" => Op::WitExports(req),
            "output_ack" => Op::OutputAck { args: req.args },
            "wat_to_wasm" => {
                req.expect_arity(1)?;
                Op::WatToWasm {
                    text: bytes(&req, 0, "wat")?,
                }
            }
            "module_drop" => {
                req.expect_arity(1)?;
                Op::ModuleDrop {
                    key: bytes(&req, 0, "module key")?,
                }
            }
            "store_new" => {
                req.expect_arity(2)?;
                Op::StoreNew {
                    limits: req.take_arg(0)?,
                    wasi: req.take_arg(1)?,
                }
            }
            "store_open" => {
                req.expect_arity(3)?;
                Op::StoreOpen {
                    store: term::as_u64(req.arg(0)?, "store id")?,
                    limits: req.take_arg(1)?,
                    wasi: req.take_arg(2)?,
                }
            }
            "store_drop" => {
                req.expect_arity(1)?;
                Op::StoreDrop {
                    store: term::as_u64(req.arg(0)?, "store id")?,
                }
            }
            "stdin_data" => {
                let store = term::as_u64(req.arg(0)?, "store id")?;
                req.expect_arity(2)?;
                let data = term::into_bytes(req.take_arg(1)?, "stdin data")?;
                Op::StdinData { store, data }
            }
            "stdin_eof" => Op::StdinEof {
                store: term::as_u64(req.arg(0)?, "store id")?,
            },
            "cancel" => {
                req.expect_arity(2)?;
                let request = term::as_u64(req.arg(1)?, "request id")?;
                let store = match req.arg(0)? {
                    t if term::is_nil(t) => None,
                    t => Some(term::as_u64(t, "store id")?),
                };
                Op::Cancel { store, request }
            }
            "callback_return" => {
                req.expect_arity(3)?;
                Op::CallbackReturn {
                    store: term::as_u64(req.arg(0)?, "store id")?,
                    callback: term::as_u64(req.arg(1)?, "callback id")?,
                    result: req.take_arg(2)?,
                }
            }
            _ => Op::Store {
                ctx: Context::parse(req.arg(0)?)?,
                request: req,
            },
        };
        Ok(op)
    }
}

/// A request for a store (or for the caller of one of its waiting callbacks).
pub struct StoreRequest {
    pub id: u64,
    pub ctx: Context,
    pub op: StoreOp,
}

/// An export of an instance of the store: `{InstanceId, Name}` in a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub instance: u64,
    pub name: String,
}

/// A store op and its arguments (the context, first in every store request, aside).
pub enum StoreOp {
    Call {
        function: Export,
        params: Vec<Term>,
        timeout: Option<Duration>,
    },
    Instantiate(Instantiation),
    MemorySize {
        memory: Export,
    },
    MemoryGrow {
        memory: Export,
        pages: u64,
    },
    MemoryRead {
        memory: Export,
        offset: u64,
        len: u64,
    },
    MemoryWrite {
        memory: Export,
        offset: u64,
        data: Data,
    },
    /// Writes `len` bytes of the shared buffer (see `bulk.rs`) to memory.
    MemoryWriteBulk {
        memory: Export,
        offset: u64,
        len: u64,
    },
    /// Copies `len` bytes of memory into the shared buffer.
    MemoryReadBulk {
        memory: Export,
        offset: u64,
        len: u64,
    },
    GlobalGet {
        global: Export,
    },
    GlobalSet {
        global: Export,
        value: Term,
    },
    FuelGet,
    /// `ok` once the store is made (`store_ready`); refused with the reason if it could
    /// not be.
    Ready,
    FuelSet {
        fuel: u64,
    },
    /// A panic on purpose, for tests (only with `WASMEX_PORT_FAULTS` set).
    FaultPanic,
    /// A component op (`component_instantiate`, `component_call`), decoded by
    /// `component/serve.rs`.
    Component(Request),
}

/// What an instantiation needs.
pub struct Instantiation {
    pub key: Vec<u8>,
    /// `{wasm, Bytes}`, `{precompiled, Bytes}`, or `nil` when the host has the module.
    pub source: Term,
    /// Opaque to the port: names the BEAM process that runs the callbacks.
    pub handler: Vec<u8>,
    /// `{Namespace, Name, Params, Results}` each.
    pub imports: Vec<Term>,
    /// `{Name, ModuleKey, ModuleSource}` each, in dependency order.
    pub links: Vec<Term>,
    pub timeout: Option<Duration>,
}

/// Bytes to write: decoded from the term, or left in the frame they came in.
pub enum Data {
    Owned(Vec<u8>),
    InFrame(Tail),
}

impl Data {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Data::Owned(bytes) => bytes,
            Data::InFrame(tail) => tail.bytes(),
        }
    }
}

impl StoreRequest {
    /// Decodes the op of a request addressed to `ctx`.
    pub fn decode(ctx: Context, mut req: Request) -> Fallible<StoreRequest> {
        let export = |req: &Request, kind: &str| -> Fallible<Export> {
            Ok(Export {
                instance: term::as_u64(req.arg(1)?, "instance id")?,
                name: term::as_str(req.arg(2)?, "name")
                    .map_err(|e| format!("{kind} {e}"))?
                    .to_string(),
            })
        };
        let u64_at = |req: &Request, i: usize, what: &str| term::as_u64(req.arg(i)?, what);
        let list_at = |req: &Request, i: usize, what: &str| -> Fallible<Vec<Term>> {
            Ok(term::as_list(req.arg(i)?, what)?.into_owned())
        };
        let id = req.id;
        if req.op.starts_with("component_") {
            return Ok(StoreRequest {
                id,
                ctx,
                op: StoreOp::Component(req),
            });
        }
        let op = match req.op.as_str() {
            "call" => {
                req.expect_arity(5)?;
                StoreOp::Call {
                    function: export(&req, "function")?,
                    params: list_at(&req, 3, "params")?,
                    timeout: parse_timeout(req.arg(4)?)?,
                }
            }
            "instantiate" => {
                req.expect_arity(7)?;
                StoreOp::Instantiate(Instantiation {
                    key: term::as_bytes(req.arg(1)?, "module key")?.to_vec(),
                    source: req.take_arg(2)?,
                    handler: term::as_bytes(req.arg(3)?, "handler")?.to_vec(),
                    imports: list_at(&req, 4, "imports")?,
                    links: list_at(&req, 5, "links")?,
                    timeout: parse_timeout(req.arg(6)?)?,
                })
            }
            "memory_size" => {
                req.expect_arity(3)?;
                StoreOp::MemorySize {
                    memory: export(&req, "memory")?,
                }
            }
            "memory_grow" => {
                req.expect_arity(4)?;
                StoreOp::MemoryGrow {
                    memory: export(&req, "memory")?,
                    pages: u64_at(&req, 3, "pages")?,
                }
            }
            op @ ("memory_read" | "memory_read_bulk" | "memory_write_bulk") => {
                req.expect_arity(5)?;
                let (memory, offset, len) = (
                    export(&req, "memory")?,
                    u64_at(&req, 3, "offset")?,
                    u64_at(&req, 4, "length")?,
                );
                match op {
                    "memory_read" => StoreOp::MemoryRead {
                        memory,
                        offset,
                        len,
                    },
                    "memory_read_bulk" => StoreOp::MemoryReadBulk {
                        memory,
                        offset,
                        len,
                    },
                    _ => StoreOp::MemoryWriteBulk {
                        memory,
                        offset,
                        len,
                    },
                }
            }
            "memory_write" => {
                req.expect_arity(5)?;
                let memory = export(&req, "memory")?;
                let offset = u64_at(&req, 3, "offset")?;
                let data = match req.tail.take() {
                    Some(tail) => Data::InFrame(tail),
                    None => Data::Owned(term::into_bytes(req.take_arg(4)?, "data")?),
                };
                StoreOp::MemoryWrite {
                    memory,
                    offset,
                    data,
                }
            }
            "global_get" => {
                req.expect_arity(3)?;
                StoreOp::GlobalGet {
                    global: export(&req, "global")?,
                }
            }
            "global_set" => {
                req.expect_arity(4)?;
                StoreOp::GlobalSet {
                    global: export(&req, "global")?,
                    value: req.take_arg(3)?,
                }
            }
            "store_ready" => {
                req.expect_arity(1)?;
                StoreOp::Ready
            }
            "fuel_get" => {
                req.expect_arity(1)?;
                StoreOp::FuelGet
            }
            "fuel_set" => {
                req.expect_arity(2)?;
                StoreOp::FuelSet {
                    fuel: u64_at(&req, 1, "fuel")?,
                }
            }
            "fault_panic" => StoreOp::FaultPanic,
            other => return Err(format!("unknown op: {other}")),
        };
        Ok(StoreRequest { id, ctx, op })
    }
}

/// `infinity` or milliseconds.
pub fn parse_timeout(t: &Term) -> Fallible<Option<Duration>> {
    if term::as_atom(t) == Some("infinity") {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(term::as_u64(t, "timeout")?)))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
