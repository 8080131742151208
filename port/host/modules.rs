//! Host-wide module work: compiling, serialising, precompiling, WAT. Slow, so it runs on
//! a pool of threads of its own, which reply themselves; the dispatcher goes on.

use crate::compiler::Waiter;
use crate::module;
use crate::protocol::{reply, Request};
use crate::shared::Shared;
use crate::term::{self, Fallible};
use eetf::Term;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Compiles (or loads) the module named `key` from `source` and keeps it: its description.
pub fn compile(shared: Arc<Shared>, id: u64, key: Vec<u8>, source: Term) {
    let asked = Instant::now();
    off_thread(shared, id, move |shared| {
        let cancelled = || shared.cancellations.contains(id);
        let waiter = Waiter {
            asked,
            cancelled: &cancelled,
        };
        // A module this host already has under `key` (checked against its bytes when it
        // was loaded) is not compiled again.
        let module = match shared.modules.get(&key) {
            Some(module) => module,
            None => {
                let module = module::load(&shared.compiler, &key, &source, &waiter)?;
                shared.modules.insert(key, module.clone());
                module
            }
        };
        Ok(module::describe(&module))
    });
}

/// The artifact of the module named `key` (loaded from `source` if need be).
pub fn serialize(shared: Arc<Shared>, id: u64, key: Vec<u8>, source: Term) {
    off_thread(shared, id, move |shared| {
        let module = shared.modules.resolve(&shared.compiler, &key, &source)?;
        Ok(term::binary(module::serialize(&module)?))
    });
}

/// The artifact of `bytes`, compiled for this host's engine settings.
pub fn precompile(shared: Arc<Shared>, id: u64, bytes: Vec<u8>) {
    let asked = Instant::now();
    off_thread(shared, id, move |shared| {
        let cancelled = || shared.cancellations.contains(id);
        let waiter = Waiter {
            asked,
            cancelled: &cancelled,
        };
        Ok(term::binary(shared.compiler.precompile(&bytes, &waiter)?))
    });
}

/// The snapshot of `bytes` after its init export ran (`preinit.rs`).
pub fn preinitialize(shared: Arc<Shared>, id: u64, bytes: Vec<u8>, options: Term) {
    let asked = Instant::now();
    off_thread(shared, id, move |shared| {
        let options = crate::preinit::PreinitOptions::from_term(&options)?;
        let cancelled = || shared.cancellations.contains(id);
        let waiter = Waiter {
            asked,
            cancelled: &cancelled,
        };
        let snapshot = shared.compiler.preinitialize(&bytes, &options, &waiter)?;
        Ok(term::binary(snapshot))
    });
}

/// Compiles a component (`component/registry.rs`): its WIT names.
pub fn component_compile(shared: Arc<Shared>, req: Request) {
    let id = req.id;
    let asked = Instant::now();
    off_thread(shared, id, move |shared| {
        crate::component::registry::compile_request(shared, &req, asked)
    });
}

/// The exports of a WIT world (`component/wit.rs`).
pub fn wit_exports(shared: Arc<Shared>, req: Request) {
    let id = req.id;
    off_thread(shared, id, move |shared| {
        crate::component::wit::exports_request(shared, &req)
    });
}

/// The Wasm binary of WAT `text`.
pub fn wat_to_wasm(shared: Arc<Shared>, id: u64, text: Vec<u8>) {
    off_thread(shared, id, move |_| {
        Ok(term::binary(module::wat_to_wasm(&text)?))
    });
}

/// Runs slow host-wide work for request `id` on a thread of the module-work pool, which
/// replies from there.
fn off_thread(
    shared: Arc<Shared>,
    id: u64,
    work: impl FnOnce(&Shared) -> Fallible<Term> + Send + 'static,
) {
    let outbox = shared.outbox.clone();
    let job = move || {
        // A panic (a bug, or a thread the OS refused) still answers the request.
        let result = catch_unwind(AssertUnwindSafe(|| work(&shared)))
            .unwrap_or_else(|_| Err("internal error: the module work failed".into()));
        shared.cancellations.forget(id);
        // A result over what the BEAM takes (a pre-initialized module of 300 MB) is an
        // error saying so, not a frame the BEAM would stop the host for.
        let result = result.map_err(|e| term::string(&crate::errors::cap(e)));
        shared.outbox.reply(id, result);
    };
    // tokio panics when the OS refuses it a thread.
    let started = match pool() {
        Some(pool) => catch_unwind(AssertUnwindSafe(|| drop(pool.spawn_blocking(job))))
            .map_err(|_| "the OS refused a thread".to_string()),
        None => std::thread::Builder::new()
            .name("module-work".into())
            .spawn(job)
            .map(drop)
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = started {
        outbox.send(&reply(id, Err(format!("cannot start a thread: {e}"))));
    }
}

/// The threads that do module work: a tokio blocking pool of its own (the stores' one
/// serves WASI's file operations, which compiles lasting up to the compile timeout must
/// not crowd out). A thread is reused while it keeps getting work, so a request for a
/// module the host already has costs no thread start; idle ones end after 10 s. `None`
/// if the pool could not start: each job then gets a thread of its own.
fn pool() -> Option<&'static tokio::runtime::Runtime> {
    static POOL: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    POOL.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .thread_name("module-work")
            .max_blocking_threads(64)
            .build()
            .ok()
    })
    .as_ref()
}
