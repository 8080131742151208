//! Answering one request of a store: which op it is, running it, and sending its reply,
//! whatever happens on the way (a stopped outer call, a panic).

use super::{CallState, Cx, STORE_FAILED};
use crate::outbox::Outbox;
use crate::protocol::{reply, Context, UNANSWERED_ID};
use crate::request::{StoreOp, StoreRequest};
use crate::term::{self, Fallible};
use crate::{executor, global, instance, memory};
use eetf::Term;
use std::panic::resume_unwind;
use std::sync::{Arc, OnceLock};

/// What a request is answered with: a value, or a reply frame already made (memory reads
/// can be megabytes: their frame is built around the bytes, not through a term).
enum Answer {
    Value(Term),
    Frame(Vec<u8>),
}

/// Runs a request against the store (or a waiting caller) and sends its reply.
/// Notifications never reach a store: the host handles them.
pub async fn answer(mut cx: Cx<'_>, req: &StoreRequest) {
    // Answered "timed out" already, while it waited for its turn.
    if !cx.data().call.waiting.take_turn(req.id) {
        return;
    }
    let top_level = cx.data().depth == 0;
    // The state that says when this request must stop: the store's running call, or one
    // of its own inside it.
    let call = if top_level {
        cx.data().call.begin(req.id, req.received, req.instance());
        cx.data().call.clone()
    } else {
        let outer = &cx.data().call;
        Arc::new(outer.nested(req.id, req.received, req.instance()))
    };
    // A nested request whose outer call is stopped is dropped unanswered: this answers it.
    let wanted = req.id != UNANSWERED_ID;
    let mut pending = Unanswered {
        outbox: cx.data().shared.outbox.clone(),
        call: call.clone(),
        outer: cx.data().call.clone(),
        id: Some(req.id).filter(|_| wanted),
    };
    // A panic (a bug) ends the store (see `task.rs`), but this request, and any it is
    // nested in, still get an answer on the way out.
    let mut panic = None;
    // One the BEAM stopped before its turn (its caller gone, its store released, its
    // instance's server stopped) is refused without running.
    let result = if let Some(stop) = call.stop() {
        Err(stop.refusal(req.timeout_kind()))
    } else {
        if !top_level {
            cx.data_mut().nested.push(call.clone());
        }
        let handled = executor::catching(handle(&mut cx, req))
            .await
            .unwrap_or_else(|p| {
                panic = Some(p);
                Err(term::string(STORE_FAILED))
            });
        if !top_level {
            cx.data_mut().nested.pop();
        }
        handled
    };
    pending.id = None;
    // The WASI output written so far goes out before the reply (see `output.rs`).
    if cx.data().buffers_output() {
        crate::output::flush_store(cx.data().id);
    }
    let outbox = &cx.data().shared.outbox;
    match result {
        _ if !wanted => {}
        Ok(Answer::Frame(frame)) => outbox.send_frame(frame),
        Ok(Answer::Value(value)) => outbox.reply(req.id, Ok(value)),
        Err(reason) => outbox.reply(req.id, Err(reason)),
    }
    if let Some(panic) = panic {
        resume_unwind(panic);
    }
    if top_level {
        cx.data().call.cancellations.settle(req.id);
    }
}

/// Answers a request whose answer was dropped before it was sent (its outer call was
/// stopped): its caller learns why.
struct Unanswered {
    outbox: Outbox,
    /// The request's own state, and the store's running call's (the same at the top
    /// level): a nested request dropped with the call around it says why that stopped.
    call: Arc<CallState>,
    outer: Arc<CallState>,
    id: Option<u64>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let reason = self
                .call
                .stop_reason()
                .or_else(|| self.outer.stop_reason())
                .unwrap_or_else(|| "stopped: the call it was part of ended".into());
            self.outbox.send(&reply(id, Err(reason)));
        }
    }
}

/// The answer to a request, or the reason it failed: a message binary, or `{exit, Code}`
/// for a WASI program that exited with a non-zero code.
async fn handle(cx: &mut Cx<'_>, req: &StoreRequest) -> Result<Answer, Term> {
    check_caller(cx, req.ctx).map_err(|e| term::string(&e))?;
    match &req.op {
        StoreOp::Call {
            function,
            params,
            timeout,
        } => instance::call(cx, function, params, *timeout)
            .await
            .map(Answer::Value),
        StoreOp::Instantiate(what) => instance::instantiate(cx, what).await.map(Answer::Value),
        StoreOp::Component(c) => crate::component::serve::handle(cx, &c.request)
            .await
            .map(Answer::Value),
        StoreOp::MemoryRead {
            memory,
            offset,
            len,
        } => memory::read_reply(cx, req.id, memory, *offset, *len)
            .await
            .map(Answer::Frame)
            .map_err(|e| term::string(&e)),
        StoreOp::MemoryWriteStaged {
            memory,
            offset,
            write,
        } => memory::write_staged(cx, memory, *offset, *write)
            .await
            .map(Answer::Value)
            .map_err(|e| term::string(&e)),
        op => handle_op(cx, op)
            .map(Answer::Value)
            .map_err(|e| term::string(&e)),
    }
}

fn check_caller(cx: &Cx<'_>, ctx: Context) -> Fallible<()> {
    if let Context::Caller { caller, .. } = ctx {
        if !cx.data().callers.contains(&caller) {
            return Err(
                "the caller is no longer valid: it may only be used inside its import callback"
                    .into(),
            );
        }
    }
    Ok(())
}

fn handle_op(cx: &mut Cx<'_>, op: &StoreOp) -> Fallible<Term> {
    match op {
        StoreOp::MemorySize { memory } => memory::size(cx, memory),
        StoreOp::MemoryGrow { memory, pages } => memory::grow(cx, memory, *pages),
        StoreOp::MemoryWrite {
            memory,
            offset,
            data,
        } => memory::write(cx, memory, *offset, data),
        StoreOp::MemoryWriteBulk {
            memory,
            offset,
            len,
        } => memory::write_bulk(cx, memory, *offset, *len),
        StoreOp::MemoryReadBulk {
            memory,
            offset,
            len,
        } => memory::read_bulk(cx, memory, *offset, *len),
        StoreOp::MemoryStage { write, data } => memory::stage(cx, *write, data.bytes()),
        StoreOp::MemoryStageBulk { write, len } => memory::stage_bulk(cx, *write, *len),
        StoreOp::GlobalGet { global } => global::get(cx, global),
        StoreOp::GlobalSet { global, value } => global::set(cx, global, value),
        StoreOp::Ready => Ok(term::atom("ok")),
        StoreOp::FuelGet => cx
            .get_fuel()
            .map(term::uint)
            .map_err(|e| format!("Could not get fuel: {e}")),
        StoreOp::FuelSet { fuel } => {
            cx.set_fuel(*fuel)
                .map_err(|e| format!("Could not set fuel: {e}"))?;
            Ok(term::atom("ok"))
        }
        // No panic message: `resume_unwind` skips the panic hook.
        StoreOp::FaultPanic if faults_enabled() => resume_unwind(Box::new("an injected fault")),
        StoreOp::FaultPanic => Err("unknown op: fault_panic".into()),
        // Answered by `handle`.
        StoreOp::Call { .. }
        | StoreOp::Instantiate(_)
        | StoreOp::MemoryRead { .. }
        | StoreOp::MemoryWriteStaged { .. }
        | StoreOp::Component(_) => {
            Err("internal error: an op answered elsewhere reached handle_op".into())
        }
    }
}

/// Whether this process was started with `WASMEX_PORT_FAULTS` set: tests then make a
/// store panic on purpose (op `fault_panic`), to check that nobody is left waiting.
pub fn faults_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("WASMEX_PORT_FAULTS").is_some())
}
