//! Import callbacks: a Wasm import implemented by an Elixir function. The host function
//! sends a `callback` event to the BEAM and waits on its store's channel. While it waits
//! it serves requests addressed to its caller (memory, globals, fuel, nested calls),
//! defers requests for the store itself, and returns when the callback's answer arrives.

use crate::protocol::Context;
use crate::request::StoreRequest;
use crate::store::{answer, receive, Cx, StoreData, StoreMsg};
use crate::term::{self, Fallible};
use crate::values;
use eetf::Term;
use std::sync::Arc;
use wasmtime::{AsContextMut, Caller, Val, ValType};

/// One imported function as declared in the imports map.
pub struct Import {
    pub namespace: String,
    pub name: String,
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
    /// Opaque to this program: names the BEAM process that runs the callback.
    pub handler: Arc<Vec<u8>>,
}

impl Import {
    /// `{Namespace, Name, Params, Results}`.
    pub fn parse(t: &Term, handler: Arc<Vec<u8>>) -> Fallible<Import> {
        let p = term::as_tuple(t, 4, "import")?;
        let types = |t: &Term, what: &str| -> Fallible<Vec<ValType>> {
            term::as_list(t, what)?
                .iter()
                .map(values::parse_type)
                .collect()
        };
        Ok(Import {
            namespace: term::as_str(&p[0], "import namespace")?.to_string(),
            name: term::as_str(&p[1], "import name")?.to_string(),
            params: types(&p[2], "import params")?,
            results: types(&p[3], "import results")?,
            handler,
        })
    }
}

/// The body of every imported function.
pub async fn invoke(
    caller: &mut Caller<'_, StoreData>,
    import: &Import,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let args = values::from_vals(params).map_err(wasmtime::Error::msg)?;
    let mut cx = caller.as_context_mut();
    let values = call_beam(
        &mut cx,
        &import.handler,
        &import.namespace,
        &import.name,
        args,
    )
    .await
    .map_err(wasmtime::Error::msg)?;
    write_results(import, &values, results).map_err(wasmtime::Error::msg)
}

/// Sends a `callback` event for import `namespace`.`name` with `args` to the BEAM and
/// waits for its answer (serving requests addressed to the caller meanwhile): the value of
/// `{ok, Value}`, or the message of `{error, Message}`. Core imports and component imports
/// (`component/imports.rs`) both call Elixir through here.
pub async fn call_beam(
    cx: &mut Cx<'_>,
    handler: &Arc<Vec<u8>>,
    namespace: &str,
    name: &str,
    args: Term,
) -> Fallible<Term> {
    let data = cx.data_mut();
    let callback_id = data.next_callback_id;
    data.next_callback_id += 1;
    data.callers.push(callback_id);
    // Waiting for the BEAM is not computing: the call starts light again (`roam.rs`), so
    // that a call making many callbacks stays on the thread that reads their answers.
    data.weight.clear();
    // The WASI output written so far reaches the BEAM before the callback does.
    if data.buffers_output() {
        crate::output::flush_store(data.id);
    }
    let event = crate::frame::encode_frame(&term::tuple(vec![
        term::atom("callback"),
        term::uint(data.id),
        term::uint(callback_id),
        term::binary(handler.to_vec()),
        term::string(namespace),
        term::string(name),
        args,
    ]));
    if let Some(reason) = crate::frame::over_beam_limit("the callback's arguments", event.len() - 4)
    {
        data.callers.pop();
        return Err(format!("{namespace}.{name}: {reason}"));
    }
    data.shared.outbox.send_frame(event);
    // Dropped with the call if the call is stopped while this waits: the BEAM then learns
    // that nobody waits for this callback's answer any more.
    let mut waiting = Abandoned {
        outbox: data.shared.outbox.clone(),
        store_id: data.id,
        callback_id,
        handler: handler.clone(),
        armed: true,
    };
    // The answer comes on stdin soon: the reader watches for it from this thread.
    crate::watch::expect_input();
    let outcome = wait(cx, callback_id, handler).await;
    waiting.armed = false;
    cx.data_mut().callers.pop();
    outcome
}

async fn wait(cx: &mut Cx<'_>, callback_id: u64, handler: &[u8]) -> Fallible<Term> {
    loop {
        // Stopped, or dropped (here or while a nested call waited for its own callback):
        // nobody will use this callback's answer.
        let data = cx.data();
        let stop = data.call.stop_reason().or_else(|| {
            data.dropped
                .then(|| "the store was dropped while a callback was running".to_string())
        });
        if let Some(reason) = stop {
            abandon(data, callback_id, handler);
            return Err(reason);
        }
        let deadline = data.call.deadline();
        let Some(msg) = receive(cx.data_mut(), deadline).await else {
            // The deadline passed: the top of the loop says so.
            continue;
        };
        match msg {
            StoreMsg::CallbackReturn {
                callback_id: id,
                result,
            } if id == callback_id => return callback_result(result),
            StoreMsg::CallbackReturn { .. } | StoreMsg::Cancel => {}
            StoreMsg::Request(req) => serve_while_waiting(cx, req).await,
            StoreMsg::Drop => cx.data_mut().dropped = true,
        }
    }
}

/// Tells the BEAM that nobody waits for this callback any more, so it can stop it.
fn abandon(data: &StoreData, callback_id: u64, handler: &[u8]) {
    data.shared
        .outbox
        .send(&abandoned(data.id, callback_id, handler));
}

/// Tells the BEAM that nobody waits for a callback's answer any more.
fn abandoned(store_id: u64, callback_id: u64, handler: &[u8]) -> Term {
    term::tuple(vec![
        term::atom("callback_abandoned"),
        term::uint(store_id),
        term::uint(callback_id),
        term::binary(handler.to_vec()),
    ])
}

/// Sends `callback_abandoned` if dropped while armed: the wait was dropped with its call.
struct Abandoned {
    outbox: crate::outbox::Outbox,
    store_id: u64,
    callback_id: u64,
    handler: Arc<Vec<u8>>,
    armed: bool,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        // Not while a panic (a bug) unwinds: the store ends, and the callback's process
        // still gets the answers to what it asked meanwhile.
        if self.armed && !std::thread::panicking() {
            let msg = abandoned(self.store_id, self.callback_id, &self.handler);
            self.outbox.send(&msg);
        }
    }
}

async fn serve_while_waiting(cx: &mut Cx<'_>, req: StoreRequest) {
    // Requests through the caller (an import calling back into its store, core or
    // component) are served inside the waiting call; any other waits until it ends.
    match &req.ctx {
        Context::Caller { .. } => {
            Box::pin(answer(cx.as_context_mut(), &req)).await;
            // The callback goes on, and its answer (or its next request) comes soon:
            // the reader watches for it again, as it did when the callback was sent.
            crate::watch::expect_input();
        }
        Context::Store(_) => cx.data_mut().deferred.push_back(req),
    }
}

/// `{ok, [Values]}` or `{error, Message}` from the BEAM.
fn callback_result(t: Term) -> Fallible<Term> {
    let parts = term::as_tuple(&t, 2, "callback result")?;
    match term::as_atom(&parts[0]) {
        Some("ok") => match t {
            // Moved out, not copied: the values may be many.
            Term::Tuple(tuple) => Ok(tuple.elements.into_iter().nth(1).unwrap_or_else(term::nil)),
            _ => Ok(term::nil()),
        },
        Some("error") => Err(term::as_str(&parts[1], "callback error")
            .map(str::to_string)
            .unwrap_or_else(|_| term::show(&parts[1]))),
        _ => Err(format!(
            "callback result must be {{ok, Values}} or {{error, Reason}}, got: {}",
            term::show(&t)
        )),
    }
}

fn write_results(import: &Import, values: &Term, results: &mut [Val]) -> Fallible<()> {
    let got = term::as_list(values, "callback results")?;
    if got.len() != import.results.len() {
        return Err(format!(
            "import {}.{} must return {} value(s), got {}",
            import.namespace,
            import.name,
            import.results.len(),
            got.len()
        ));
    }
    for (i, (v, ty)) in got.iter().zip(&import.results).enumerate() {
        results[i] = values::to_val(v, ty).ok_or_else(|| {
            format!(
                "import {}.{} returned {} where a {} was expected",
                import.namespace,
                import.name,
                term::show(v),
                values::type_name(ty)
            )
        })?;
    }
    Ok(())
}
