//! Making a store: its limits, its WASI context and its wasmtime `Store`, with the epoch
//! callback that stops a call once it must stop.

use super::{CallState, Cancellations, Inbox, StoreData};
use crate::instance::BaseLinkers;
use crate::roam::Weight;
use crate::shared::Shared;
use crate::stdio::StdinReceiver;
use crate::term::{self, Fallible};
use crate::wasi;
use crate::wasi_fds::FdBudget;
use eetf::Term;
use std::collections::VecDeque;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;

/// What a new store starts from.
pub struct StoreInit {
    pub limits: Term,
    pub wasi: Term,
    pub stdin: StdinReceiver,
    pub cancellations: Cancellations,
    /// Its requests with a timeout, waiting for their turn (noted by the dispatcher).
    pub waiting: crate::waiting::Waiting,
    pub linkers: Arc<BaseLinkers>,
    /// Told the store's id when it ends.
    pub ended: Sender<u64>,
}

/// What a store is made of, checked before it is made.
pub struct StoreParts {
    limits: StoreLimits,
    wasi: WasiP1Ctx,
    fds: FdBudget,
    wasi_enabled: bool,
    call: Arc<CallState>,
    linkers: Arc<BaseLinkers>,
    component: crate::component::ComponentState,
}

/// Checks `init` and makes what store `id` needs.
pub fn prepare(shared: &Shared, id: u64, init: StoreInit) -> Fallible<StoreParts> {
    let limits = parse_limits(&init.limits)?;
    // `{p2, Options}`: WASI preview 2 for components (`component/wasi.rs`); preview 1 off.
    let p2 = crate::component::wasi::p2_options(&init.wasi);
    let wasi_enabled = !term::is_nil(&init.wasi) && p2.is_none();
    let call = Arc::new(CallState::new(
        init.cancellations,
        init.waiting,
        Some(shared.outbox.clone()),
    ));
    let stdio = wasi::Stdio {
        outbox: shared.outbox.clone(),
        store_id: id,
        stdin: init.stdin,
        call: call.clone(),
    };
    let (wasi, fds, component) = match p2 {
        Some(options) => (
            wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
            FdBudget::default(),
            crate::component::wasi::build(options, stdio)?,
        ),
        None => {
            let (wasi, fds) = wasi::build(wasi_enabled.then_some(&init.wasi), stdio)?;
            (wasi, fds, Default::default())
        }
    };
    Ok(StoreParts {
        limits,
        wasi,
        fds,
        wasi_enabled,
        call,
        linkers: init.linkers,
        component,
    })
}

/// The wasmtime store, reading its messages from `inbox`.
pub fn create(
    shared: Arc<Shared>,
    id: u64,
    parts: StoreParts,
    inbox: Inbox,
    weight: Arc<Weight>,
) -> Store<StoreData> {
    let engine = shared.engine.clone();
    let data = StoreData {
        id,
        shared,
        linkers: parts.linkers,
        inbox,
        taken: 0,
        limits: parts.limits,
        wasi: parts.wasi,
        fds: parts.fds,
        listing: None,
        wasi_enabled: parts.wasi_enabled,
        instances: Vec::new(),
        depth: 0,
        callers: Vec::new(),
        next_callback_id: 1,
        deferred: VecDeque::new(),
        nested: Vec::new(),
        dropped: false,
        call: parts.call,
        component: parts.component,
        weight,
        staging: Default::default(),
    };
    let mut store = Store::new(&engine, data);
    store.limiter(|d| &mut d.limits);
    store.epoch_deadline_callback(|cx| {
        Ok(if cx.data().call.stop_reason().is_some() {
            UpdateDeadline::Interrupt
        } else {
            // A request that computes for long moves its store to the heavy runtime.
            cx.data().weight.tick();
            // Lets the call's waiter (`executor::stoppable`) look at it every tick, and
            // other tasks of the same worker run.
            UpdateDeadline::Yield(1)
        })
    });
    store
}

/// Elements a table may grow to when the store's limits name no number: the same as each
/// table of an engine with instance slots (`engine::pool_config`). Growing a table is one
/// step the deadline cannot interrupt, and its elements are written out: 300 million of
/// them took 2 s and 2.3 GB.
pub const DEFAULT_TABLE_ELEMENTS: usize = 10_000_000;

/// `nil` or `%{memory_size, table_elements, instances, tables, memories}` (each optional).
fn parse_limits(t: &Term) -> Fallible<StoreLimits> {
    let mut b = StoreLimitsBuilder::new().table_elements(DEFAULT_TABLE_ELEMENTS);
    if term::is_nil(t) {
        return Ok(b.build());
    }
    let m = term::as_map(t, "store limits")?;
    let get = |k: &str| Ok::<_, String>(term::map_u64(m, k)?.map(|n| n as usize));
    if let Some(n) = get("memory_size")? {
        b = b.memory_size(n);
    }
    if let Some(n) = get("table_elements")? {
        b = b.table_elements(n);
    }
    if let Some(n) = get("instances")? {
        b = b.instances(n);
    }
    if let Some(n) = get("tables")? {
        b = b.tables(n);
    }
    if let Some(n) = get("memories")? {
        b = b.memories(n);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_nil_or_a_map_of_counts() {
        assert!(parse_limits(&term::nil()).is_ok());
        let negative = term::map(vec![(term::atom("memory_size"), term::int(-1))]);
        assert!(parse_limits(&negative).is_err());
        assert!(parse_limits(&term::int(3)).is_err());
    }
}
