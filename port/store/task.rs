//! A store's life as a task of the runtime (see `executor.rs`): made by its first run,
//! it serves the messages of its channel one at a time until it is dropped. Waiting for
//! the next message, like any wait inside a call, parks the task and holds no thread.
//!
//! Whatever ends a store (a drop, a failed start, a panic), every request sent to it gets
//! one answer: those it holds or that come later are refused with the reason.
//!
//! A task whose store was dropped while idle may go on with the next store the host opens
//! (see `succession.rs`).

use super::make::{create, prepare, StoreInit};
use super::succession::Succession;
use super::{answer, Inbox, StoreData, StoreMsg, STORE_DROPPED, STORE_FAILED, STORE_UNMADE};
use crate::drops::Drops;
use crate::executor;
use crate::outbox::Outbox;
use crate::protocol::reply;
use crate::request::StoreRequest;
use crate::roam::{self, Weight};
use crate::shared::Shared;
use crate::term;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc::{error::SendError, unbounded_channel, UnboundedSender};
use wasmtime::{AsContextMut, Store};

/// How the dispatcher reaches a store's task.
pub struct StoreHandle {
    tx: UnboundedSender<StoreMsg>,
    life: Arc<Life>,
    /// What the store's task does once this store has ended.
    succession: Arc<Succession<Start>>,
}

/// The task of a store dropped while idle: it may run the next store the host opens.
pub struct IdleTask(Arc<Succession<Start>>);

/// A store for a task to run: what [`run`] takes.
struct Start {
    life: Arc<Life>,
    shared: Arc<Shared>,
    reply_id: Option<u64>,
    init: StoreInit,
    rx: Inbox,
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
    /// Messages the host sent (counted by the host), and how many of them the store had
    /// served when it last waited with nothing left to do (counted by the task): equal
    /// while the store is idle.
    sent: AtomicU64,
    done: AtomicU64,
    outbox: Outbox,
    /// Told the store's id when it ends.
    ended: Sender<u64>,
}

impl StoreHandle {
    /// Starts store `id`, on `idle`'s task if it takes it, else as a task of its own.
    /// The reply to `reply_id`, if any, says whether it was made; without one
    /// (`store_open`), a failure is told to the store's requests.
    pub fn start(
        shared: Arc<Shared>,
        id: u64,
        reply_id: Option<u64>,
        init: StoreInit,
        idle: Option<IdleTask>,
    ) -> StoreHandle {
        let (tx, rx) = unbounded_channel();
        let life = Arc::new(Life {
            id,
            drops: shared.drops.clone(),
            drop_counted: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            unmade: OnceLock::new(),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            outbox: shared.outbox.clone(),
            ended: init.ended.clone(),
        });
        let start = Start {
            life: life.clone(),
            shared,
            reply_id,
            init,
            rx,
        };
        let succession = match idle {
            Some(IdleTask(task)) => match task.hand_over(start) {
                Ok(()) => task,
                Err(start) => spawn_task(start),
            },
            None => spawn_task(start),
        };
        StoreHandle {
            tx,
            life,
            succession,
        }
    }

    /// Gives `msg` to the store. A request for a store that has ended is refused at once.
    pub fn send(&self, msg: StoreMsg) {
        self.life.sent.fetch_add(1, Ordering::Relaxed);
        if let Err(SendError(msg)) = self.tx.send(msg) {
            self.life.refuse([msg]);
        }
    }

    /// Whether the store has served everything sent to it and waits for more.
    pub fn idle(&self) -> bool {
        self.life.done.load(Ordering::Acquire) == self.life.sent.load(Ordering::Relaxed)
    }

    /// Which task runs the store (tests: whether two stores share one).
    #[cfg(test)]
    pub fn task_id(&self) -> usize {
        Arc::as_ptr(&self.succession) as usize
    }

    /// The store's task, to run the next store once this one is dropped, if the store
    /// is idle.
    pub fn idle_task(&self) -> Option<IdleTask> {
        self.idle().then(|| IdleTask(self.succession.clone()))
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

/// Spawns a task for `start`, and for whatever stores are handed to it after.
fn spawn_task(start: Start) -> Arc<Succession<Start>> {
    let succession = Arc::new(Succession::default());
    let task = succession.clone();
    let weight = Arc::new(Weight::default());
    let counted = weight.clone();
    roam::spawn(
        async move {
            let mut next = Some(start);
            while let Some(start) = next {
                run(start, &counted).await;
                next = task.next();
            }
        },
        weight,
    );
    succession
}

/// A store's life on its task: makes it, answers `reply_id` (if any), serves it until
/// it ends.
async fn run(start: Start, weight: &Arc<Weight>) {
    let Start {
        life,
        shared,
        reply_id,
        init,
        rx,
    } = start;
    let (id, outbox) = (life.id, life.outbox.clone());
    let mut rx = Some(rx);
    let made = catch_unwind(AssertUnwindSafe(|| {
        let parts = prepare(&shared, id, init)?;
        let rx = rx.take().expect("the store's channel");
        Ok(create(shared, id, parts, rx, weight.clone()))
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
    let served = executor::catching(serve(&mut store, &life)).await;
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
async fn serve(store: &mut Store<StoreData>, life: &Life) {
    loop {
        let data = store.data_mut();
        let next = match data.deferred.pop_front() {
            Some(req) => StoreMsg::Request(req),
            None => {
                life.done.store(data.taken, Ordering::Release);
                match data.inbox.recv().await {
                    Some(msg) => {
                        data.count_taken(&msg);
                        msg
                    }
                    // The host is gone.
                    None => return,
                }
            }
        };
        match next {
            StoreMsg::Request(req) => {
                answer(store.as_context_mut(), &req).await;
                store.data().weight.clear();
            }
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
