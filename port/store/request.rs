//! Store requests as typed values: the op of a request addressed to a store (or to the
//! caller of one of its waiting callbacks), decoded once its store is found (see
//! `request.rs` for the host-wide ops).

use crate::call_state::InstanceRef;
use crate::errors::Failure;
use crate::protocol::{Context, Request, Tail};
use crate::term::{self, Fallible};
use eetf::Term;
use std::time::{Duration, Instant};

/// A request for a store (or for the caller of one of its waiting callbacks).
pub struct StoreRequest {
    pub id: u64,
    pub ctx: Context,
    pub op: StoreOp,
    /// When the request was read: its timeout, if it has one, counts from then.
    pub received: Instant,
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
    /// Appends `data` to the store's staged write `write` (see `staging.rs`).
    MemoryStage {
        write: u64,
        data: Data,
    },
    /// Appends the first `len` bytes of the shared buffer to staged write `write`.
    MemoryStageBulk {
        write: u64,
        len: u64,
    },
    /// Writes what is staged for `write` at `offset`, in one step.
    MemoryWriteStaged {
        memory: Export,
        offset: u64,
        write: u64,
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
    /// A component op (`component_instantiate`, `component_call`, ...).
    Component(ComponentRequest),
}

/// A component op, whose arguments `component/serve.rs` decodes, with what the store
/// needs to know before it runs: the component instance it is for and its timeout (`None`
/// for either when the op has none, or when it is malformed: serving it says why).
pub struct ComponentRequest {
    pub request: Request,
    pub instance: Option<u64>,
    pub timeout: Option<Duration>,
}

impl ComponentRequest {
    fn new(request: Request) -> ComponentRequest {
        let u64_at = |i| term::as_u64(request.arg(i).ok()?, "").ok();
        let timeout_at = |i| parse_timeout(request.arg(i).ok()?).ok().flatten();
        let (instance, timeout) = match request.op.as_str() {
            "component_call" => (u64_at(1), timeout_at(4)),
            "component_resource_drop" => (u64_at(1), timeout_at(3)),
            "component_instantiate" => (None, timeout_at(5)),
            _ => (None, None),
        };
        ComponentRequest {
            request,
            instance,
            timeout,
        }
    }
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
    /// The instance a call calls (`None` for a request that does not run one).
    pub fn instance(&self) -> Option<InstanceRef> {
        match &self.op {
            StoreOp::Call { function, .. } => Some(InstanceRef::Core(function.instance)),
            StoreOp::Component(c) => c.instance.map(InstanceRef::Component),
            _ => None,
        }
    }

    /// How long the request may take, counted from when it was read (calls and
    /// instantiations).
    pub fn timeout(&self) -> Option<Duration> {
        match &self.op {
            StoreOp::Call { timeout, .. } => *timeout,
            StoreOp::Instantiate(instantiation) => instantiation.timeout,
            StoreOp::Component(c) => c.timeout,
            _ => None,
        }
    }

    /// The kind of failure a stop at the request's deadline is, as the op itself reports
    /// one: a timeout for a call or an instantiation (the BEAM counts those), a plain
    /// failure for anything else.
    pub fn timeout_kind(&self) -> Failure {
        match &self.op {
            StoreOp::Call { .. } | StoreOp::Instantiate(_) => Failure::Timeout,
            StoreOp::Component(c) if c.request.op == "component_call" => Failure::Timeout,
            _ => Failure::Other,
        }
    }

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
                op: StoreOp::Component(ComponentRequest::new(req)),
                received: Instant::now(),
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
                let data = bytes_last(&mut req, 4)?;
                StoreOp::MemoryWrite {
                    memory,
                    offset,
                    data,
                }
            }
            "memory_stage" => {
                req.expect_arity(3)?;
                let write = u64_at(&req, 1, "write")?;
                let data = bytes_last(&mut req, 2)?;
                StoreOp::MemoryStage { write, data }
            }
            "memory_stage_bulk" => {
                req.expect_arity(3)?;
                StoreOp::MemoryStageBulk {
                    write: u64_at(&req, 1, "write")?,
                    len: u64_at(&req, 2, "length")?,
                }
            }
            "memory_write_staged" => {
                req.expect_arity(5)?;
                StoreOp::MemoryWriteStaged {
                    memory: export(&req, "memory")?,
                    offset: u64_at(&req, 3, "offset")?,
                    write: u64_at(&req, 4, "write")?,
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
        Ok(StoreRequest {
            id,
            ctx,
            op,
            received: Instant::now(),
        })
    }
}

/// `infinity` or milliseconds.
pub fn parse_timeout(t: &Term) -> Fallible<Option<Duration>> {
    if term::as_atom(t) == Some("infinity") {
        return Ok(None);
    }
    Ok(Some(Duration::from_millis(term::as_u64(t, "timeout")?)))
}

/// The bytes of argument `i`, the request's last: left in the frame they came in when the
/// port decoded the request around them (see `protocol::Tail`).
fn bytes_last(req: &mut Request, i: usize) -> Fallible<Data> {
    Ok(match req.tail.take() {
        Some(tail) => Data::InFrame(tail),
        None => Data::Owned(term::into_bytes(req.take_arg(i)?, "data")?),
    })
}
