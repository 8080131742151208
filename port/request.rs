//! Requests as typed values: every request is decoded once, from the positional tuple of
//! the wire (`protocol.rs`, docs/protocol.md), into a variant with named fields, and one
//! `match` dispatches it (host-wide ops in `host/`, store ops in `store/answer.rs`; a
//! store op is decoded in `store/request.rs`). The wire's shapes are unchanged.

use crate::call_state::InstanceRef;
use crate::protocol::{Context, Request};
use crate::term::{self, Fallible};
use eetf::Term;

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
    /// A panic of the dispatcher on purpose, for tests (see `host::faults_enabled`).
    FaultPanic,
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
    /// An instance server stopped: calls on its instance stop, and later ones are refused.
    InstanceStop {
        store: u64,
        instance: InstanceRef,
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
            "wit_exports" | "wit_resource" => Op::WitExports(req),
            "output_ack" => Op::OutputAck { args: req.args },
            "fault_dispatch_panic" => Op::FaultPanic,
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
            op @ ("instance_stop" | "component_instance_stop") => {
                req.expect_arity(2)?;
                let id = term::as_u64(req.arg(1)?, "instance id")?;
                Op::InstanceStop {
                    store: term::as_u64(req.arg(0)?, "store id")?,
                    instance: match op {
                        "instance_stop" => InstanceRef::Core(id),
                        _ => InstanceRef::Component(id),
                    },
                }
            }
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

pub use crate::store::request::{
    parse_timeout, Data, Export, Instantiation, StoreOp, StoreRequest,
};

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
