//! A store's life as a task of the runtime (see `executor.rs`): made by its first run,
//! it serves the messages of its channel one at a time until it is dropped. Waiting for
//! the next message, like any wait inside a call, parks the task and holds no thread.
//!
//! Whatever ends a store (a drop, a failed start, a panic), every request sent to it gets
//! one answer: those it holds or that come later are refused with the reason.

use super::make::{create, prepare, StoreInit};
use super::{answer, Inbox, StoreData, StoreMsg, STORE_DROPPED, STORE_FAILED, STORE_UNMADE};
use crate::drops::Drops;
use crate::executor;
use crate::outbox::Outbox;
use crate::protocol::reply;
use crate::request::StoreRequest;
use crate::shared::Shared;
use crate::term;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc::{error::SendError, unbounded_channel, UnboundedSender};
use wasmtime::{AsContextMut, Store};

/// How the dispatcher reaches a store's task.
pub struct StoreHandle {
    tx: UnboundedSender<StoreMsg>,
    life: Arc<Life>,
}

/// What outlives the store's task: how to answer what it will not serve.
struct Life {
    id: u64,
    /// The host's pending drops, and whether this store's drop is counted there.
    drops: Arc<Drops>,
    drop_counted: AtomicBool,
    /// Whether the store ended in a panic (a bug): what it refuses then says so.
    failed: AtomicBool,
    /// Why the store could not be made, when nobody was told at once (`store_open`):
    /// what it refuses says so, and the host keeps saying so until the store is dropped.
    unmade: OnceLock<String>,
    outbox: Outbox,
    /// Told the store's id when it ends.
    ended: Sender<u64>,
}

impl StoreHandle {
    /// Starts store `id` as a task. The reply to `reply_id`, if any, says whether it was
    /// made; without one (`store_open`), a failure is told to the store's requests.
    pub fn start(
        shared: Arc<Shared>,
        id: u64,
        reply_id: Option<u64>,
        init: StoreInit,
    ) -> StoreHandle {
        let (tx, rx) = unbounded_channel();
        let life = Arc::new(Life {
            id,
            drops: shared.drops.clone(),
            drop_counted: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            unmade: OnceLock::new(),
            outbox: shared.outbox.clone(),
            ended: init.ended.clone(),
        });
        executor::spawn(run(life.clone(), shared, reply_id, init, rx));
        StoreHandle { tx, life }
    }

    /// Gives `msg` to the store. A request for a store that has ended is refused at once.
    pub fn send(&self, msg: StoreMsg) {
        if let Err(SendError(msg)) = self.tx.send(msg) {
            self.life.refuse([msg]);
        }
    }

    /// Tells the store to drop once it has served what it holds. Counted as a pending
    /// drop until it has ended (see [`Drops`]).
    pub fn drop_store(&self) {
        self.life.drops.begin(&self.life.drop_counted);
        if self.tx.send(StoreMsg::Drop).is_err() {
            // Already ended (and counted off, or about to be).
            self.life.drops.end(&self.life.drop_counted);
        }
    }

    /// Why requests for the ended store are refused, if not just because it was dropped:
    /// it ended in a panic (a bug), or could not be made and nobody was told at once.
    pub fn failure(&self) -> Option<String> {
        self.life.failure()
    }
}

impl Drop for StoreHandle {
    /// Dropping the handle (the BEAM dropped the store, or the host goes) drops the store.
    fn drop(&mut self) {
        self.drop_store();
    }
}

impl Life {
    /// Answers requests the store will never serve, so that no caller waits forever.
    fn refuse(&self, msgs: impl IntoIterator<Item = StoreMsg>) {
        let reason = self.failure().unwrap_or_else(|| STORE_DROPPED.into());
        for msg in msgs {
            if let StoreMsg::Request(req) = msg {
                self.outbox.send(&reply(req.id, Err(reason.clone())));
            }
        }
    }

    fn failure(&self) -> Option<String> {
        if self.failed.load(Ordering::Relaxed) {
            Some(STORE_FAILED.into())
        } else {
            self.unmade.get().map(|e| format!("{STORE_UNMADE}: {e}"))
        }
    }

    /// The store is gone (with its instances): refuses what was deferred or still
    /// queued for it, and, by closing its channel, what comes later.
    fn end(&self, inbox: Option<&mut Inbox>, deferred: VecDeque<StoreRequest>) {
        let mut queued = Vec::new();
        if let Some(inbox) = inbox {
            inbox.close();
            while let Ok(msg) = inbox.try_recv() {
                queued.push(msg);
            }
        }
        self.drops.end(&self.drop_counted);
        self.refuse(deferred.into_iter().map(StoreMsg::Request).chain(queued));
        let _ = self.ended.send(self.id);
    }

    fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
}

/// The store's task: makes it, answers `reply_id` (if any), serves it until it ends.
async fn run(
    life: Arc<Life>,
    shared: Arc<Shared>,
    reply_id: Option<u64>,
    init: StoreInit,
    rx: Inbox,
) {
    let (id, outbox) = (life.id, life.outbox.clone());
    let mut rx = Some(rx);
    let made = catch_unwind(AssertUnwindSafe(|| {
        let parts = prepare(&shared, id, init)?;
        let rx = rx.take().expect("the store's channel");
        Ok(create(shared, id, parts, rx))
    }));
    let mut store = match made {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            match reply_id {
                Some(reply_id) => outbox.send(&reply(reply_id, Err(e))),
                None => {
                    let _ = life.unmade.set(e);
                }
            }
            return life.end(rx.as_mut(), VecDeque::new());
        }
        Err(_) => {
            life.fail();
            if let Some(reply_id) = reply_id {
                outbox.send(&reply(reply_id, Err(STORE_FAILED.into())));
            }
            return life.end(rx.as_mut(), VecDeque::new());
        }
    };
    if let Some(reply_id) = reply_id {
        outbox.send(&reply(reply_id, Ok(term::uint(id))));
    }
    let served = executor::catching(serve(&mut store)).await;
    let data = store.data_mut();
    let deferred = std::mem::take(&mut data.deferred);
    let mut inbox = std::mem::replace(&mut data.inbox, unbounded_channel().1);
    if served.is_err() {
        // A panic (a bug): the request it hit was answered (see `answer`); what was
        // deferred or queued is refused, and the store ends.
        life.fail();
    }
    // Its requests are answered even if the drop panics too.
    let _ = catch_unwind(AssertUnwindSafe(|| drop(store)));
    life.end(Some(&mut inbox), deferred);
}

/// Serves the store's messages, requests deferred by a callback first, until it is
/// dropped.
async fn serve(store: &mut Store<StoreData>) {
    loop {
        let next = match store.data_mut().deferred.pop_front() {
            Some(req) => StoreMsg::Request(req),
            None => match store.data_mut().inbox.recv().await {
                Some(msg) => msg,
                // The host is gone.
                None => return,
            },
        };
        match next {
            StoreMsg::Request(req) => answer(store.as_context_mut(), &req).await,
            // A late answer to a callback whose call already ended, or a wake-up for a
            // cancellation that came after the call: nobody waits.
            StoreMsg::CallbackReturn { .. } | StoreMsg::Cancel => {}
            StoreMsg::Drop => return,
        }
        if store.data().dropped {
            return;
        }
    }
}
