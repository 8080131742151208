//! The dispatcher, run by the task that reads stdin (see `input.rs`): host-wide requests
//! (engine, modules, stores) are answered here or on the module-work pool
//! (`modules.rs`); store requests go to the store's task (see `store/task.rs`). Nothing
//! here runs Wasm or waits for it.

mod init;
#[cfg(test)]
mod memory_tests;
mod modules;
#[cfg(test)]
mod open_tests;
#[cfg(test)]
mod succession_tests;
#[cfg(test)]
mod tests;

use crate::instance::BaseLinkers;
use crate::outbox::Outbox;
use crate::protocol::{self, decode_request, reply, Request};
use crate::request::{Op, StoreRequest};
use crate::shared::Shared;
use crate::stdio::{StdinMsg, StdinSender};
use crate::store::{Cancellations, StoreHandle, StoreInit, StoreMsg};
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

pub struct Host {
    outbox: Outbox,
    shared: Option<Arc<Shared>>,
    /// The linkers the stores' instantiations start from, built once for the engine.
    linkers: Arc<BaseLinkers>,
    stores: HashMap<u64, StoreEntry>,
    next_store_id: u64,
    /// Stores that ended (dropped, failed to start, or panicked), to forget.
    ended: (Sender<u64>, Receiver<u64>),
    /// Stores that ended in a panic, or could not be made (`store_open`), and that the
    /// BEAM has not dropped yet: requests for them get the reason, not "unknown store".
    failed: HashMap<u64, String>,
    /// A store the BEAM dropped while it was idle, kept until the next request: if that
    /// opens a store, the new store runs on its task (see `store/succession.rs`).
    retiring: Option<StoreEntry>,
}

/// How the dispatcher reaches a store. Dropping it (the store was dropped, or the host
/// is going away) drops the store.
struct StoreEntry {
    task: StoreHandle,
    cancellations: Cancellations,
    waiting: crate::waiting::Waiting,
    stdin: StdinSender,
}

impl Host {
    pub fn new(outbox: Outbox) -> Host {
        Host {
            outbox,
            shared: None,
            linkers: Default::default(),
            stores: HashMap::new(),
            next_store_id: 1,
            ended: std::sync::mpsc::channel(),
            failed: HashMap::new(),
            retiring: None,
        }
    }

    /// Handles one frame's payload. Every failure becomes an error reply.
    pub fn handle_payload(&mut self, payload: &[u8]) {
        self.handle_decoded(decode_request(payload));
    }

    /// Handles one frame's payload, taking it (see [`protocol::decode_frame`]).
    pub fn handle_frame(&mut self, payload: Vec<u8>) {
        self.handle_decoded(protocol::decode_frame(payload));
    }

    fn handle_decoded(&mut self, decoded: Result<Request, protocol::Rejected>) {
        match decoded {
            Ok(req) => self.handle(req),
            Err(rejected) => match rejected.callback {
                // A callback's answer that cannot be read fails that callback at once.
                Some((store_id, callback_id)) => {
                    let message = format!(
                        "the callback's result could not be read: {}",
                        rejected.reason
                    );
                    match self.store(store_id) {
                        Ok(store) => store.task.send(StoreMsg::CallbackReturn {
                            callback_id,
                            result: term::tuple(vec![term::atom("error"), term::string(&message)]),
                        }),
                        Err(_) => self.log(&message),
                    }
                }
                None => self.outbox.send(&reply(rejected.id, Err(rejected.reason))),
            },
        }
    }

    /// Tells the BEAM something worth a log line.
    pub fn log(&self, message: &str) {
        self.outbox.send(&protocol::log(message));
    }

    pub fn reject(&self, reason: String) {
        self.reject_request(0, reason);
    }

    /// Fails request `id` (0: a frame whose request is not known) with `reason`.
    pub fn reject_request(&self, id: u64, reason: String) {
        self.outbox.send(&reply(id, Err(reason)));
    }

    fn handle(&mut self, req: Request) {
        while let Ok(id) = self.ended.1.try_recv() {
            if let Some(reason) = self.stores.remove(&id).and_then(|s| s.task.failure()) {
                self.failed.insert(id, reason);
            }
        }
        let id = req.id;
        let notification = req.is_notification();
        if let Err(e) = self.dispatch(req) {
            if notification {
                self.log(&e);
            } else {
                self.outbox.send(&reply(id, Err(e)));
            }
        }
    }

    /// Either answers (or arranges for an answer) and returns Ok, or returns the error
    /// to reply with.
    fn dispatch(&mut self, req: Request) -> Fallible<()> {
        let id = req.id;
        let op = Op::decode(req)?;
        if let Op::Init { config } = op {
            return self.init(id, &config);
        }
        if let Op::FaultPanic = op {
            if cfg!(test) || crate::store::faults_enabled() {
                panic!("a panic of the dispatcher on purpose");
            }
            return Err("unknown op: fault_dispatch_panic".into());
        }
        let shared = self
            .shared
            .clone()
            .ok_or("the host is not initialised: send init first")?;
        if !matches!(op, Op::StoreOpen { .. } | Op::StoreNew { .. }) {
            self.settle_retired();
        }
        match op {
            Op::Init { .. } | Op::FaultPanic => unreachable!("handled above"),
            Op::ModuleCompile { key, source } => modules::compile(shared, id, key, source),
            Op::ModuleSerialize { key, source } => modules::serialize(shared, id, key, source),
            Op::Precompile { bytes } => modules::precompile(shared, id, bytes),
            Op::Preinitialize { bytes, options } => {
                modules::preinitialize(shared, id, bytes, options)
            }
            Op::ComponentCompile(req) => modules::component_compile(shared, req),
            Op::WitExports(req) => modules::wit_exports(shared, req),
            Op::OutputAck { args } => crate::output::ack(crate::output::Ack::parse(&args)?),
            Op::WatToWasm { text } => modules::wat_to_wasm(shared, id, text),
            Op::ModuleDrop { key } => shared.modules.remove(&key),
            Op::StoreNew { limits, wasi } => {
                // Ids the BEAM chose (`store_open`) are skipped.
                while self.in_use(self.next_store_id) {
                    self.next_store_id += 1;
                }
                let store = self.next_store_id;
                self.next_store_id += 1;
                self.open(shared, store, Some(id), limits, wasi);
            }
            Op::StoreOpen {
                store,
                limits,
                wasi,
            } => {
                if self.in_use(store) {
                    return Err(format!("store_open: store id {store} is in use"));
                }
                self.open(shared, store, None, limits, wasi);
            }
            Op::StoreDrop { store } => {
                // Dropping the entry drops the store. A busy one first stops what it runs
                // and refuses what waits: nobody holds the store any more.
                if let Some(entry) = self.stores.remove(&store) {
                    if entry.task.idle() {
                        self.retiring = Some(entry);
                    } else {
                        entry.cancellations.cancel_all();
                        entry.task.send(StoreMsg::Cancel);
                        entry.stdin.send(StdinMsg::Cancelled);
                    }
                }
                self.failed.remove(&store);
            }
            Op::StdinData { store, data } => {
                let stdin = &self.store(store)?.stdin;
                // As a request (`Wasmex.Wasi.write_stdin/2`) it is bounded and answered; as
                // a notification it is a `Wasmex.Pipe`'s answer to the program's read.
                if id == 0 {
                    stdin.send_asked(data);
                } else {
                    stdin.send_data(data)?;
                    self.outbox.send(&reply(id, Ok(term::atom("ok"))));
                }
            }
            Op::StdinEof { store } => {
                self.store(store)?.stdin.send(StdinMsg::Eof);
            }
            Op::InstanceStop { store, instance } => {
                // A store already gone has nothing running.
                if let Ok(store) = self.store(store) {
                    store.cancellations.stop_instance(instance);
                    // Only a busy store has a call to wake; an idle one stays idle (its
                    // drop, often next, may then hand its task on: `succession.rs`).
                    if !store.task.idle() {
                        store.task.send(StoreMsg::Cancel);
                        store.stdin.send(StdinMsg::Cancelled);
                    }
                }
            }
            Op::Cancel {
                store: None,
                request,
            } => shared.cancellations.cancel(request),
            Op::Cancel {
                store: Some(store),
                request,
            } => {
                let store = self.store(store)?;
                store.cancellations.cancel(request);
                store.task.send(StoreMsg::Cancel);
                store.stdin.send(StdinMsg::Cancelled);
            }
            Op::CallbackReturn {
                store,
                callback,
                result,
            } => {
                // The store may have ended while the callback ran: nobody waits.
                if let Ok(store) = self.store(store) {
                    store.task.send(StoreMsg::CallbackReturn {
                        callback_id: callback,
                        result,
                    });
                }
            }
            Op::Store { ctx, request } => {
                let store = self.store(ctx.store_id())?;
                let request = StoreRequest::decode(ctx, request)?;
                if let Some(timeout) = request.timeout() {
                    let kind = request.timeout_kind();
                    store
                        .waiting
                        .note(request.id, request.received, timeout, kind);
                }
                store.task.send(StoreMsg::Request(request));
            }
        }
        Ok(())
    }

    /// Starts store `store`; the reply to `reply`, if any, says whether it was made.
    fn open(
        &mut self,
        shared: Arc<Shared>,
        store: u64,
        reply: Option<u64>,
        limits: Term,
        wasi: Term,
    ) {
        let (stdin, stdin_rx) = crate::stdio::stdin_channel(crate::stdio::pushes_stdin(&wasi));
        let cancellations = Cancellations::default();
        let waiting = crate::waiting::Waiting::default();
        let init = StoreInit {
            limits,
            wasi,
            stdin: stdin_rx,
            cancellations: cancellations.clone(),
            waiting: waiting.clone(),
            linkers: self.linkers.clone(),
            ended: self.ended.0.clone(),
        };
        // Handed over before the dropped store is told to drop, so its task cannot end
        // first.
        let retiring = self.retiring.take();
        let idle = retiring.as_ref().and_then(|entry| entry.task.idle_task());
        let entry = StoreEntry {
            task: StoreHandle::start(shared, store, reply, init, idle),
            cancellations,
            waiting,
            stdin,
        };
        drop(retiring);
        self.stores.insert(store, entry);
    }

    /// Drops the store kept since the BEAM dropped it (see `retiring`), if any: called
    /// before any request but an open, and once the input read so far is handled.
    pub fn settle_retired(&mut self) {
        self.retiring = None;
    }

    /// Whether a store has this id (live, or ended but not dropped by the BEAM).
    fn in_use(&self, id: u64) -> bool {
        self.stores.contains_key(&id) || self.failed.contains_key(&id)
    }

    fn store(&self, id: u64) -> Fallible<&StoreEntry> {
        self.stores
            .get(&id)
            .ok_or_else(|| match self.failed.get(&id) {
                Some(reason) => reason.clone(),
                None => format!("unknown store {id}"),
            })
    }
}
