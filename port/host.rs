//! The dispatcher, run by whichever thread reads stdin (see `input.rs`): host-wide
//! requests (engine, modules, stores) are answered here or on short-lived threads; store
//! requests go to the store's inbox, for the worker pool. Nothing here runs Wasm or
//! blocks on it.

use crate::bulk::Bulk;
use crate::compiler::Compiler;
use crate::engine::{EngineOptions, Ticker};
use crate::module::{self, Registry};
use crate::os_limits::OsLimits;
use crate::outbox::Outbox;
use crate::protocol::{self, decode_request, reply, Context, Request};
use crate::stdio::{StdinMsg, StdinSender};
use crate::store::{Cancellations, Drops, StoreInit, StoreMsg, StoreTask, STORE_FAILED};
use crate::term::{self, Fallible};
use eetf::Term;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use wasmtime::Engine;

/// What every thread of the host shares.
pub struct Shared {
    pub engine: Engine,
    pub ticker: Arc<Ticker>,
    pub modules: Registry,
    pub outbox: Outbox,
    pub compiler: Compiler,
    pub base_linkers: crate::instance::BaseLinkers,
    /// Host-wide requests (compiles) whose caller went away.
    pub cancellations: Cancellations,
    pub backtrace_details: bool,
    /// How long a callback waiting for its answer spins before blocking.
    pub spin: Duration,
    /// Stores told to drop and not yet gone.
    pub drops: Arc<Drops>,
    /// How many instances (and memories, and tables) the engine's pool holds, if it has
    /// one.
    pub instance_slots: Option<u32>,
    /// The buffer for large memory writes, if it could be made.
    pub bulk: Option<Bulk>,
}

pub struct Host {
    outbox: Outbox,
    shared: Option<Arc<Shared>>,
    stores: HashMap<u64, StoreHandle>,
    next_store_id: u64,
    /// Stores that ended (dropped, failed to start, or panicked), to forget.
    ended: (Sender<u64>, Receiver<u64>),
    /// Stores that ended in a panic and that the BEAM has not dropped yet: requests for
    /// them get the reason, not "unknown store".
    failed: HashSet<u64>,
}

/// How the dispatcher reaches a store. Dropping it (the store was dropped, or the host
/// is going away) drops the store.
struct StoreHandle {
    task: Arc<StoreTask>,
    cancellations: Cancellations,
    stdin: StdinSender,
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.task.drop_store();
    }
}

impl Host {
    pub fn new(outbox: Outbox) -> Host {
        Host {
            outbox,
            shared: None,
            stores: HashMap::new(),
            next_store_id: 1,
            ended: std::sync::mpsc::channel(),
            failed: HashSet::new(),
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
        self.outbox.send(&reply(0, Err(reason)));
    }

    fn handle(&mut self, req: Request) {
        while let Ok(id) = self.ended.1.try_recv() {
            if self
                .stores
                .remove(&id)
                .is_some_and(|store| store.task.failed())
            {
                self.failed.insert(id);
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
    fn dispatch(&mut self, mut req: Request) -> Fallible<()> {
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
                    let cancelled = || shared.cancellations.contains(req.id);
                    let module = module::load(&shared.compiler, key, req.arg(1)?, &cancelled)?;
                    shared.modules.insert(key.to_vec(), module.clone());
                    Ok(module::describe(&module))
                });
            }
            "component_compile" => {
                off_thread(shared, req, crate::component::registry::compile_request);
            }
            "wit_exports" => off_thread(shared, req, crate::component::wit::exports_request),
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
            "preinitialize" => {
                req.expect_arity(2)?;
                off_thread(shared, req, |shared, req| {
                    let bytes = term::as_bytes(req.arg(0)?, "module bytes")?;
                    let options = crate::preinit::PreinitOptions::from_term(req.arg(1)?)?;
                    let cancelled = || shared.cancellations.contains(req.id);
                    let snapshot = shared.compiler.preinitialize(bytes, &options, &cancelled)?;
                    Ok(term::binary(snapshot))
                });
            }
            "wat_to_wasm" => {
                req.expect_arity(1)?;
                off_thread(shared, req, |_, req| {
                    let text = term::as_bytes(req.arg(0)?, "wat")?;
                    Ok(term::binary(module::wat_to_wasm(text)?))
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
                let (stdin, stdin_rx) = tokio::sync::mpsc::unbounded_channel();
                let cancellations = Cancellations::default();
                let reply_id = req.id;
                let [limits, wasi]: [Term; 2] = req
                    .args
                    .try_into()
                    .map_err(|_| "store_new expects 2 arguments")?;
                let init = StoreInit {
                    limits,
                    wasi,
                    stdin: stdin_rx,
                    cancellations: cancellations.clone(),
                    ended: self.ended.0.clone(),
                };
                let handle = StoreHandle {
                    task: StoreTask::start(shared, id, reply_id, init),
                    cancellations,
                    stdin,
                };
                self.stores.insert(id, handle);
            }
            "store_drop" => {
                req.expect_arity(1)?;
                let id = term::as_u64(req.arg(0)?, "store id")?;
                // Dropping the handle drops the store.
                self.stores.remove(&id);
                self.failed.remove(&id);
            }
            "stdin_data" | "stdin_eof" => {
                let id = term::as_u64(req.arg(0)?, "store id")?;
                let msg = if req.op == "stdin_eof" {
                    StdinMsg::Eof
                } else {
                    req.expect_arity(2)?;
                    StdinMsg::Data(term::into_bytes(req.take_arg(1)?, "stdin data")?)
                };
                let _ = self.store(id)?.stdin.send(msg);
            }
            // WASI output acknowledged (see `output.rs`).
            "output_ack" => crate::output::ack(crate::output::Ack::parse(&req.args)?),
            "cancel" => {
                req.expect_arity(2)?;
                let request = term::as_u64(req.arg(1)?, "request id")?;
                if term::is_nil(req.arg(0)?) {
                    shared.cancellations.cancel(request);
                    return Ok(());
                }
                let store = self.store(term::as_u64(req.arg(0)?, "store id")?)?;
                store.cancellations.cancel(request);
                store.task.send(StoreMsg::Cancel);
                let _ = store.stdin.send(StdinMsg::Cancelled);
            }
            "callback_return" => {
                req.expect_arity(3)?;
                let store_id = term::as_u64(req.arg(0)?, "store id")?;
                let callback_id = term::as_u64(req.arg(1)?, "callback id")?;
                // The store may have ended while the callback ran: nobody waits.
                let Ok(store) = self.store(store_id) else {
                    return Ok(());
                };
                let result = req.take_arg(2)?;
                store.task.send(StoreMsg::CallbackReturn {
                    callback_id,
                    result,
                });
            }
            _ => {
                let ctx = Context::parse(req.arg(0)?)?;
                let store = self.store(ctx.store_id())?;
                crate::workers::note_arrival();
                store.task.send(StoreMsg::Request(req));
            }
        }
        Ok(())
    }

    fn store(&self, id: u64) -> Fallible<&StoreHandle> {
        self.stores.get(&id).ok_or_else(|| {
            if self.failed.contains(&id) {
                STORE_FAILED.to_string()
            } else {
                format!("unknown store {id}")
            }
        })
    }

    /// `{Config}`: creates the engine. Only once per host.
    fn init(&mut self, req: &Request) -> Fallible<()> {
        req.expect_arity(1)?;
        if self.shared.is_some() {
            return Err("the host is already initialised".into());
        }
        let mut options = EngineOptions::from_term(req.arg(0)?)?;
        let config = term::as_map(req.arg(0)?, "engine config")?;
        let limits = OsLimits::from_term(term::map_get(config, "os_limits"))?;
        options.compact_memories = limits.address_space.is_some();
        limits.apply(&self.outbox)?;
        // wasmtime's compiled-code cache serves the compile children (large modules); here,
        // where only small modules compile, its lookups and writes would cost more than
        // compiling.
        let isolate = term::map_bool(config, "isolate_compilation")?;
        let engine = if isolate {
            EngineOptions {
                cache_dir: None,
                serial_compilation: true,
                ..options.clone()
            }
        } else {
            options.clone()
        };
        let engine = build_engine(&engine, &self.outbox)?;
        // None when the engine has no pool (capped address space, or the fallback).
        let instance_slots = engine
            .pooling_allocator_metrics()
            .and(options.instance_slots);
        let ticker = Ticker::start(engine.clone());
        let compile_timeout =
            term::map_u64(config, "compile_timeout_ms")?.map(Duration::from_millis);
        let child = if isolate {
            Some(
                std::env::current_exe()
                    .map_err(|e| format!("cannot find this program to compile with: {e}"))?,
            )
        } else {
            None
        };
        let compiler = Compiler::new(engine.clone(), options.clone(), child, compile_timeout)
            .with_resident_cap(limits.resident_memory);
        crate::workers::set_spin(Duration::from_micros(options.spin_us));
        self.shared = Some(Arc::new(Shared {
            engine,
            ticker,
            modules: Registry::default(),
            outbox: self.outbox.clone(),
            compiler,
            base_linkers: Default::default(),
            cancellations: Cancellations::default(),
            backtrace_details: options.backtrace_details,
            spin: Duration::from_micros(options.spin_us),
            drops: Default::default(),
            instance_slots,
            bulk: Bulk::create().ok(),
        }));
        // `{Fd, Size}` of the shared buffer for large writes (see `bulk.rs`), or `nil`.
        let bulk = self
            .shared
            .as_ref()
            .and_then(|s| s.bulk.as_ref())
            .map_or_else(term::nil, |bulk| {
                term::tuple(vec![
                    term::uint(bulk.fd() as u64),
                    term::uint(crate::bulk::SIZE as u64),
                ])
            });
        self.outbox.send(&reply(req.id, Ok(bulk)));
        Ok(())
    }
}

/// The host's engine. When its instance slots cannot be reserved (the address space is capped
/// from outside, `ulimit -v`), instances are allocated one by one instead, and a log line
/// says so.
fn build_engine(options: &EngineOptions, outbox: &Outbox) -> Fallible<Engine> {
    match options.build() {
        Err(e) if options.instance_slots.is_some() => {
            let engine = EngineOptions {
                instance_slots: None,
                ..options.clone()
            }
            .build()?;
            outbox.send(&protocol::log(&format!(
                "no instance slots ({e}): instances are allocated one by one"
            )));
            Ok(engine)
        }
        built => built,
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
        shared.cancellations.forget(req.id);
        shared.outbox.send(&reply(req.id, result));
    });
    if let Err(e) = spawned {
        outbox.send(&reply(id, Err(format!("cannot start a thread: {e}"))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;
    use std::time::Duration;

    fn host() -> (Host, Receiver<Vec<u8>>) {
        let (outbox, rx) = Outbox::channel();
        (Host::new(outbox), rx)
    }

    fn encode(t: &Term) -> Vec<u8> {
        let mut v = Vec::new();
        t.encode(&mut v).unwrap();
        v
    }

    fn request(id: i64, op: &str, args: Vec<Term>) -> Vec<u8> {
        encode(&term::tuple(vec![
            term::int(id),
            term::atom(op),
            term::tuple(args),
        ]))
    }

    /// The next reply as `(Id, Result)` (events in between are skipped).
    fn next_reply(rx: &Receiver<Vec<u8>>) -> (u64, Result<Term, String>) {
        let t = loop {
            let frame = rx.recv_timeout(Duration::from_secs(10)).expect("a reply");
            let t = Term::decode(&frame[4..]).unwrap();
            if matches!(&t, Term::Tuple(tp) if term::as_atom(&tp.elements[0]) == Some("reply")) {
                break t;
            }
        };
        let parts = term::as_tuple(&t, 3, "reply").unwrap();
        assert_eq!(term::as_atom(&parts[0]), Some("reply"));
        let id = term::as_u64(&parts[1], "id").unwrap();
        let result = term::as_tuple(&parts[2], 2, "result").unwrap();
        // A failure while Wasm ran is `{trap, Message}`: read as its message, as the BEAM does.
        let reason = match &result[1] {
            Term::Tuple(t) if term::as_atom(&t.elements[0]) == Some("trap") => &t.elements[1],
            other => other,
        };
        match term::as_atom(&result[0]) {
            Some("ok") => (id, Ok(result[1].clone())),
            _ => (id, Err(term::as_str(reason, "reason").unwrap().to_string())),
        }
    }

    fn init(host: &mut Host, rx: &Receiver<Vec<u8>>) {
        host.handle_payload(&request(1, "init", vec![term::map(vec![])]));
        let (id, bulk) = next_reply(rx);
        assert_eq!(id, 1);
        // The shared buffer's `{Fd, Size}`.
        let bulk = bulk.unwrap();
        assert_eq!(
            term::as_tuple(&bulk, 2, "bulk").unwrap()[1],
            term::uint(crate::bulk::SIZE as u64)
        );
    }

    /// Makes a store (request 2) and instantiates `wat` in it with `imports` (request 3):
    /// the store's and the instance's ids.
    fn store_with_instance(
        host: &mut Host,
        rx: &Receiver<Vec<u8>>,
        wat: &[u8],
        imports: Vec<Term>,
    ) -> (Term, Term) {
        host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
        let store = next_reply(rx).1.unwrap();
        let source = term::tuple(vec![term::atom("wasm"), term::binary(wat.to_vec())]);
        let args = vec![
            store.clone(),
            key_of(wat),
            source,
            term::binary(vec![]),
            term::list(imports),
            term::list(vec![]),
            term::int(1000),
        ];
        host.handle_payload(&request(3, "instantiate", args));
        (store, next_reply(rx).1.unwrap())
    }

    #[test]
    fn garbage_gets_an_error_reply_with_id_zero() {
        let (mut host, rx) = host();
        host.handle_payload(b"\x00\x01garbage");
        let (id, result) = next_reply(&rx);
        assert_eq!(id, 0);
        assert!(result.unwrap_err().starts_with("malformed frame"));
    }

    #[test]
    fn a_truncated_term_gets_an_error_reply() {
        let (mut host, rx) = host();
        let full = request(5, "init", vec![term::map(vec![])]);
        host.handle_payload(&full[..full.len() - 3]);
        assert!(next_reply(&rx)
            .1
            .unwrap_err()
            .starts_with("malformed frame"));
    }

    #[test]
    fn requests_before_init_are_refused() {
        let (mut host, rx) = host();
        host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
        assert_eq!(
            next_reply(&rx),
            (
                2,
                Err("the host is not initialised: send init first".into())
            )
        );
    }

    #[test]
    fn an_unknown_op_names_what_was_expected() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        host.handle_payload(&request(3, "frobnicate", vec![term::atom("x")]));
        let (id, result) = next_reply(&rx);
        assert_eq!(id, 3);
        assert!(result.unwrap_err().starts_with("expected a store id"));
    }

    #[test]
    fn wrong_shapes_and_unknown_stores_get_errors_and_the_host_keeps_serving() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        host.handle_payload(&request(4, "module_compile", vec![term::int(1)]));
        assert_eq!(
            next_reply(&rx),
            (4, Err("module_compile expects 2 arguments, got 1".into()))
        );
        host.handle_payload(&request(5, "call", vec![term::int(99), term::int(0)]));
        assert_eq!(next_reply(&rx), (5, Err("unknown store 99".into())));
        host.handle_payload(&request(
            6,
            "module_compile",
            vec![term::binary(vec![1]), term::atom("wasm")],
        ));
        assert!(next_reply(&rx)
            .1
            .unwrap_err()
            .starts_with("module source must be"));

        host.handle_payload(&request(7, "store_new", vec![term::nil(), term::nil()]));
        assert_eq!(next_reply(&rx), (7, Ok(term::uint(1))));
        host.handle_payload(&request(
            8,
            "call",
            vec![
                term::int(1),
                term::int(0),
                term::string("f"),
                term::list(vec![]),
                term::int(100),
            ],
        ));
        assert_eq!(next_reply(&rx), (8, Err("unknown instance 0".into())));
    }

    #[test]
    fn a_store_op_with_wrong_arity_is_an_error_from_the_store() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
        let (_, store) = next_reply(&rx);
        host.handle_payload(&request(3, "memory_read", vec![store.unwrap()]));
        assert_eq!(
            next_reply(&rx),
            (3, Err("memory_read expects 5 arguments, got 1".into()))
        );
    }

    /// The key `Wasmex.Module` names `.wat` or `.wasm` bytes by.
    fn key_of(wasm: &[u8]) -> Term {
        term::binary(
            crate::module_key::ModuleKey::of("wasm", wasm)
                .as_bytes()
                .to_vec(),
        )
    }

    #[test]
    fn a_module_sent_under_another_modules_key_is_refused() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        let source = term::tuple(vec![
            term::atom("wasm"),
            term::binary(b"(module $a)".to_vec()),
        ]);
        host.handle_payload(&request(
            2,
            "module_compile",
            vec![key_of(b"(module $b)"), source],
        ));
        assert!(next_reply(&rx)
            .1
            .unwrap_err()
            .contains("module key is not the SHA-256 digest"));
    }

    #[test]
    fn compiles_instantiates_and_calls() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        let wat = b"(module (func (export \"add\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))";
        let key = key_of(wat);
        let source = term::tuple(vec![term::atom("wasm"), term::binary(wat.to_vec())]);
        host.handle_payload(&request(2, "module_compile", vec![key.clone(), source]));
        assert!(next_reply(&rx).1.is_ok());
        host.handle_payload(&request(3, "store_new", vec![term::nil(), term::nil()]));
        let store = next_reply(&rx).1.unwrap();
        let handler = term::binary(vec![]);
        let empty = term::list(vec![]);
        host.handle_payload(&request(
            4,
            "instantiate",
            vec![
                store.clone(),
                key,
                term::nil(),
                handler,
                empty.clone(),
                empty,
                term::int(1000),
            ],
        ));
        let instance = next_reply(&rx).1.unwrap();
        let params = term::list(vec![term::int(-5), term::int(7)]);
        host.handle_payload(&request(
            5,
            "call",
            vec![
                store,
                instance,
                term::string("add"),
                params,
                term::int(1000),
            ],
        ));
        let result = next_reply(&rx).1.unwrap();
        assert_eq!(
            term::as_list(&result, "r")
                .unwrap()
                .iter()
                .map(term::as_i64)
                .collect::<Vec<_>>(),
            vec![Some(2)]
        );
    }

    #[test]
    fn a_memory_read_over_the_frame_limit_is_refused() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        // 4 GiB of memory, reserved and never touched.
        let wat = b"(module (memory (export \"memory\") 65536))";
        let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
        let read = vec![
            store,
            instance,
            term::string("memory"),
            term::uint(0),
            term::uint(1 << 32),
        ];
        host.handle_payload(&request(4, "memory_read", read));
        assert_eq!(
            next_reply(&rx),
            (
                4,
                Err("a read of 4294967296 bytes is over the frame limit of 1073741824".into())
            )
        );
    }

    #[test]
    fn a_store_dropped_while_a_callback_waits_answers_every_queued_request() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        let wat = b"(module (import \"env\" \"f\" (func $f)) (memory (export \"memory\") 1) (func (export \"run\") call $f))";
        let import = term::tuple(vec![
            term::string("env"),
            term::string("f"),
            term::list(vec![]),
            term::list(vec![]),
        ]);
        let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![import]);
        let call = vec![
            store.clone(),
            instance.clone(),
            term::string("run"),
            term::list(vec![]),
            term::int(10_000),
        ];
        host.handle_payload(&request(4, "call", call));
        // The callback event: the call now waits in the import.
        let frame = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let event = Term::decode(&frame[4..]).unwrap();
        assert_eq!(
            term::as_atom(&term::as_tuple(&event, 7, "event").unwrap()[0]),
            Some("callback")
        );
        // Requests for the store itself queue behind the call; then the store is dropped.
        host.handle_payload(&request(
            5,
            "memory_size",
            vec![store.clone(), instance.clone(), term::string("memory")],
        ));
        host.handle_payload(&request(6, "fuel_get", vec![store.clone()]));
        host.handle_payload(&request(0, "store_drop", vec![store]));
        let mut replies: Vec<(u64, Result<Term, String>)> =
            (0..3).map(|_| next_reply(&rx)).collect();
        replies.sort_by_key(|r| r.0);
        assert_eq!(
            replies.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        assert!(replies.iter().all(|r| r.1.is_err()));
        assert_eq!(
            replies[1].1,
            Err("the store was dropped before serving this request".into())
        );
    }

    #[test]
    fn requests_that_reach_a_dropped_store_are_answered() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
        let store = next_reply(&rx).1.unwrap();
        host.handle_payload(&request(0, "store_drop", vec![store.clone()]));
        // Sent while the store may be ending: each gets its one answer.
        for id in 3..50 {
            host.handle_payload(&request(id, "fuel_get", vec![store.clone()]));
            assert_eq!(next_reply(&rx).0, id as u64);
        }
    }

    #[test]
    fn a_store_that_failed_to_start_is_forgotten() {
        let (mut host, rx) = host();
        init(&mut host, &rx);
        let bad_limits = term::map(vec![(term::atom("memory_size"), term::int(-1))]);
        host.handle_payload(&request(2, "store_new", vec![bad_limits, term::nil()]));
        assert!(next_reply(&rx).1.is_err());
        // Requests for it get errors; the host forgets it once it has ended (its task
        // says so right after its reply).
        for id in 3..1000 {
            host.handle_payload(&request(id, "fuel_get", vec![term::int(1)]));
            assert!(next_reply(&rx).1.is_err());
            if host.stores.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(host.stores.is_empty());
    }
}
