//! Host-wide module work: compiling, serialising, precompiling, WAT. Slow, so it runs on
//! short-lived threads of its own, which reply themselves; the dispatcher goes on.

use crate::module;
use crate::protocol::{reply, Request};
use crate::shared::Shared;
use crate::term::{self, Fallible};
use eetf::Term;
use std::sync::Arc;
use std::thread;

/// Starts the work of a module request (`op` is one of [`OPS`]).
pub fn start(shared: Arc<Shared>, req: Request) -> Fallible<()> {
    match req.op.as_str() {
        "module_compile" => {
            req.expect_arity(2)?;
            off_thread(shared, req, |shared, req| {
                let key = term::as_bytes(req.arg(0)?, "module key")?;
                let cancelled = || shared.cancellations.contains(req.id);
                let module = module::load(&shared.compiler, key, req.arg(1)?, &cancelled)?;
                shared.modules.insert(key.to_vec(), module.clone());
                Ok(module::describe(&module))
            });
        }
        "module_serialize" => {
            req.expect_arity(2)?;
            off_thread(shared, req, |shared, req| {
                let key = term::as_bytes(req.arg(0)?, "module key")?;
                let module = shared.modules.resolve(&shared.compiler, key, req.arg(1)?)?;
                Ok(term::binary(module::serialize(&module)?))
            });
        }
        "precompile" => {
            req.expect_arity(1)?;
            off_thread(shared, req, |shared, req| {
                let bytes = term::as_bytes(req.arg(0)?, "module bytes")?;
                let cancelled = || shared.cancellations.contains(req.id);
                Ok(term::binary(shared.compiler.precompile(bytes, &cancelled)?))
            });
        }
        "wat_to_wasm" => {
            req.expect_arity(1)?;
            off_thread(shared, req, |_, req| {
                let text = term::as_bytes(req.arg(0)?, "wat")?;
                Ok(term::binary(module::wat_to_wasm(text)?))
            });
        }
        other => return Err(format!("unknown op: {other}")),
    }
    Ok(())
}

/// The ops [`start`] handles.
pub const OPS: &[&str] = &[
    "module_compile",
    "module_serialize",
    "precompile",
    "wat_to_wasm",
];

/// Runs slow host-wide work on its own thread and replies from there.
fn off_thread(
    shared: Arc<Shared>,
    req: Request,
    work: impl FnOnce(&Shared, &Request) -> Fallible<Term> + Send + 'static,
) {
    let outbox = shared.outbox.clone();
    let id = req.id;
    let spawned = thread::Builder::new().name(req.op.clone()).spawn(move || {
        let result = work(&shared, &req);
        shared.cancellations.forget(req.id);
        shared.outbox.send(&reply(req.id, result));
    });
    if let Err(e) = spawned {
        outbox.send(&reply(id, Err(format!("cannot start a thread: {e}"))));
    }
}
