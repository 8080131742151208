//! The dispatcher run by the reader thread: host-wide requests (engine, modules, stores)
//! are answered here or on short-lived threads; store requests are routed to the store's
//! worker. Nothing here runs Wasm or blocks on it.

use crate::engine::{EngineOptions, Ticker};
use crate::module::{self, Registry};
use crate::outbox::Outbox;
use crate::protocol::{self, decode_request, reply, Context, Request};
use crate::store::{self, StoreMsg};
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;
use wasmtime::Engine;

/// What every thread of the host shares.
pub struct Shared {
    pub engine: Engine,
    pub ticker: Arc<Ticker>,
    pub modules: Registry,
    pub outbox: Outbox,
    pub backtrace_details: bool,
}

pub struct Host {
    outbox: Outbox,
    shared: Option<Arc<Shared>>,
    stores: HashMap<u64, Sender<StoreMsg>>,
    next_store_id: u64,
}

impl Host {
    pub fn new(outbox: Outbox) -> Host {
        Host {
            outbox,
            shared: None,
            stores: HashMap::new(),
            next_store_id: 1,
        }
    }

    /// Handles one frame's payload. Every failure becomes an error reply.
    pub fn handle_payload(&mut self, payload: &[u8]) {
        match decode_request(payload) {
            Ok(req) => self.handle(req),
            Err(rejected) => self.outbox.send(&reply(rejected.id, Err(rejected.reason))),
        }
    }

    pub fn reject(&self, reason: String) {
        self.outbox.send(&reply(0, Err(reason)));
    }

    fn handle(&mut self, req: Request) {
        let id = req.id;
        let notification = req.is_notification();
        if let Err(e) = self.dispatch(req) {
            if notification {
                self.outbox.send(&protocol::log(&e));
            } else {
                self.outbox.send(&reply(id, Err(e)));
            }
        }
    }

    /// Either answers (or arranges for an answer) and returns Ok, or returns the error
    /// to reply with.
    fn dispatch(&mut self, req: Request) -> Fallible<()> {
        if req.op == "init" {
            return self.init(&req);
        }
        let shared = self
            .shared
            .clone()
            .ok_or("the host is not initialised: send init first")?;
        match req.op.as_str() {
            "module_compile" => {
                req.expect_arity(2)?;
                off_thread(shared, req, |shared, req| {
                    let key = term::as_bytes(req.arg(0)?, "module key")?;
                    let module = module::load(&shared.engine, req.arg(1)?)?;
                    shared.modules.insert(key.to_vec(), module.clone());
                    Ok(module::describe(&module))
                });
            }
            "module_serialize" => {
                req.expect_arity(2)?;
                off_thread(shared, req, |shared, req| {
                    let key = term::as_bytes(req.arg(0)?, "module key")?;
                    let module = shared.modules.resolve(&shared.engine, key, req.arg(1)?)?;
                    Ok(term::binary(module::serialize(&module)?))
                });
            }
            "precompile" => {
                req.expect_arity(1)?;
                off_thread(shared, req, |shared, req| {
                    let bytes = term::as_bytes(req.arg(0)?, "module bytes")?;
                    let wasm = wat::parse_bytes(bytes)
                        .map_err(|e| format!("Error while parsing bytes: {e}."))?;
                    let artifact = shared
                        .engine
                        .precompile_module(&wasm)
                        .map_err(|e| format!("Could not compile module: {e:#}"))?;
                    Ok(term::binary(artifact))
                });
            }
            "module_drop" => {
                req.expect_arity(1)?;
                shared
                    .modules
                    .remove(term::as_bytes(req.arg(0)?, "module key")?);
            }
            "store_new" => {
                req.expect_arity(2)?;
                let id = self.next_store_id;
                self.next_store_id += 1;
                let tx = store::spawn(shared, id, req.id, req.args[0].clone(), req.args[1].clone());
                self.stores.insert(id, tx);
            }
            "store_drop" => {
                req.expect_arity(1)?;
                let id = term::as_u64(req.arg(0)?, "store id")?;
                if let Some(tx) = self.stores.remove(&id) {
                    let _ = tx.send(StoreMsg::Drop);
                }
            }
            "callback_return" => {
                req.expect_arity(3)?;
                let store_id = term::as_u64(req.arg(0)?, "store id")?;
                let callback_id = term::as_u64(req.arg(1)?, "callback id")?;
                let tx = self.store(store_id)?;
                let _ = tx.send(StoreMsg::CallbackReturn {
                    callback_id,
                    result: req.args[2].clone(),
                });
            }
            _ => {
                let ctx = Context::parse(req.arg(0)?)?;
                let tx = self.store(ctx.store_id())?;
                tx.send(StoreMsg::Request(req))
                    .map_err(|_| "the store has stopped".to_string())?;
            }
        }
        Ok(())
    }

    fn store(&self, id: u64) -> Fallible<&Sender<StoreMsg>> {
        self.stores
            .get(&id)
            .ok_or_else(|| format!("unknown store {id}"))
    }

    /// `{Config}`: creates the engine. Only once per host.
    fn init(&mut self, req: &Request) -> Fallible<()> {
        req.expect_arity(1)?;
        if self.shared.is_some() {
            return Err("the host is already initialised".into());
        }
        let options = EngineOptions::from_term(req.arg(0)?)?;
        let engine = options.build()?;
        let ticker = Ticker::start(engine.clone());
        self.shared = Some(Arc::new(Shared {
            engine,
            ticker,
            modules: Registry::default(),
            outbox: self.outbox.clone(),
            backtrace_details: options.backtrace_details,
        }));
        self.outbox.send(&reply(req.id, Ok(term::atom("ok"))));
        Ok(())
    }
}

/// Runs slow host-wide work (compiling) on its own thread and replies from there.
fn off_thread(
    shared: Arc<Shared>,
    req: Request,
    work: impl FnOnce(&Shared, &Request) -> Fallible<Term> + Send + 'static,
) {
    let outbox = shared.outbox.clone();
    let id = req.id;
    let spawned = thread::Builder::new().name(req.op.clone()).spawn(move || {
        let result = work(&shared, &req);
        shared.outbox.send(&reply(req.id, result));
    });
    if let Err(e) = spawned {
        outbox.send(&reply(id, Err(format!("cannot start a thread: {e}"))));
    }
}
