//! A store: a wasmtime `Store` run as a task of the runtime (see `executor.rs`), fed by
//! a channel. Requests run one at a time, in order; while Wasm waits in an import
//! callback, the callback keeps serving requests addressed to its caller (see
//! `callback.rs`).
//!
//! * `task.rs`: the store's life (made, served, ended) and the handle the host holds;
//! * `succession.rs`: a task going on with the next store once its store is dropped;
//! * `make.rs`: what a store is made of (limits, WASI);
//! * `request.rs`: a store request decoded into its op;
//! * `answer.rs`: one request, from its op to its reply;
//! * `scope.rs`: a call or an instantiation, and its deadline;
//!
//! What decides that a running call must stop is in `call_state.rs`; drops not yet done,
//! which instantiations waiting for instance slots watch, in `drops.rs`.

mod answer;
mod make;
pub mod request;
mod scope;
mod succession;
mod task;

pub use crate::call_state::{CallState, Cancellations, CANCELLED};
pub use answer::{answer, faults_enabled};
pub use make::StoreInit;
pub use scope::{enter, leave, run_stoppable, CallScope};
pub use task::{IdleTask, StoreHandle};

use crate::request::StoreRequest;
use crate::shared::Shared;
use crate::wasi_fds::FdBudget;
use eetf::Term;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{Instance, StoreContextMut, StoreLimits};
use wasmtime_wasi::p1::WasiP1Ctx;

pub enum StoreMsg {
    Request(StoreRequest),
    CallbackReturn {
        callback_id: u64,
        result: Term,
    },
    /// Wakes a waiting callback so it notices a cancellation.
    Cancel,
    Drop,
}

/// Where a store's messages come from.
pub type Inbox = tokio::sync::mpsc::UnboundedReceiver<StoreMsg>;

pub struct StoreData {
    pub id: u64,
    pub shared: Arc<Shared>,
    /// The linkers its instances start from (see `instance::BaseLinkers`).
    pub linkers: Arc<crate::instance::BaseLinkers>,
    pub inbox: Inbox,
    /// Messages taken from the inbox, `Drop` aside (see `StoreHandle::idle`).
    pub taken: u64,
    pub limits: StoreLimits,
    pub wasi: WasiP1Ctx,
    /// How many files the WASI program may hold open (`wasi_fds.rs`).
    pub fds: FdBudget,
    /// The directory listing its WASI program reads now (`wasi_readdir.rs`).
    pub listing: Option<crate::wasi_readdir::Listing>,
    /// Whether instances of this store get the WASI imports.
    pub wasi_enabled: bool,
    pub instances: Vec<Instance>,
    /// Nesting of calls (a callback that calls back into Wasm adds one).
    pub depth: u32,
    /// Callers of the import callbacks now waiting, innermost last.
    pub callers: Vec<u64>,
    pub next_callback_id: u64,
    /// Requests for the store itself that arrived while a callback was waiting.
    pub deferred: VecDeque<StoreRequest>,
    pub dropped: bool,
    pub call: Arc<CallState>,
    /// The states of the requests served inside the running call (through a callback's
    /// caller), innermost last: each stops on its own (`scope.rs`).
    pub nested: Vec<Arc<CallState>>,
    /// Component instances and their WASI preview 2 context (`component/state.rs`).
    pub component: crate::component::ComponentState,
    /// How long its current request has run Wasm: where its task runs (`roam.rs`).
    pub weight: Arc<crate::roam::Weight>,
    /// Large memory writes arriving in parts (`staging.rs`).
    pub staging: crate::staging::Staging,
}

impl StoreData {
    /// Counts `msg` as taken from the inbox (the host counts what it sends, `Drop` aside).
    pub fn count_taken(&mut self, msg: &StoreMsg) {
        if !matches!(msg, StoreMsg::Drop) {
            self.taken += 1;
        }
    }

    /// Whether the store has WASI output, buffered until a reply or a callback flushes
    /// it (`output.rs`).
    pub fn buffers_output(&self) -> bool {
        self.wasi_enabled || self.component.has_wasi()
    }
}

pub type Cx<'a> = StoreContextMut<'a, StoreData>;

impl crate::wasi_fds::FdHost for StoreData {
    fn wasi_and_budget(&mut self) -> (&mut WasiP1Ctx, FdBudget) {
        (&mut self.wasi, self.fds)
    }
}

impl crate::wasi_random::RandomHost for StoreData {
    fn wasi_and_weight(&mut self) -> (&mut WasiP1Ctx, &crate::roam::Weight) {
        (&mut self.wasi, &self.weight)
    }
}

impl crate::wasi_readdir::ListingHost for StoreData {
    fn wasi_and_listing(&mut self) -> (&mut WasiP1Ctx, &mut Option<crate::wasi_readdir::Listing>) {
        (&mut self.wasi, &mut self.listing)
    }
}

/// The answer to a request a store will not serve because it was dropped first.
pub const STORE_DROPPED: &str = "the store was dropped before serving this request";

/// What requests for a store that could not be made (`store_open`) are refused with,
/// followed by the reason.
pub const STORE_UNMADE: &str = "the store could not be created";

/// The answer to the request a store panicked on (a bug in this program), and to those
/// it left: the store is gone, the host and its other stores work on.
pub const STORE_FAILED: &str =
    "internal error: the Wasm host failed while serving this request, and dropped the store";

/// The next message for the store, waiting at most until `deadline` (`None` once it has
/// passed). Used inside a call (an import callback waiting for its answer); the task
/// waits parked, holding no thread. A store whose host is gone gets `Drop`.
pub async fn receive(data: &mut StoreData, deadline: Option<Instant>) -> Option<StoreMsg> {
    let next = match deadline {
        Some(at) => {
            let at = tokio::time::Instant::from_std(at);
            tokio::time::timeout_at(at, data.inbox.recv()).await.ok()?
        }
        None => data.inbox.recv().await,
    };
    let msg = next.unwrap_or(StoreMsg::Drop);
    data.count_taken(&msg);
    Some(msg)
}
