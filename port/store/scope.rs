//! A call or an instantiation of a store, from [`enter`] to [`leave`]. The outermost one
//! sets the store's epoch deadline; each, nested ones (inside callbacks) included, stops
//! at its own deadline, cancel or instance's stop, and a stop of the outermost one stops
//! everything inside it.

use super::{CallState, Cx};
use crate::executor;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::AsContextMut;

pub struct CallScope {
    outermost: bool,
    /// The outermost call's state, which says when it must stop.
    call: Option<Arc<CallState>>,
    _ticking: Option<crate::ticker::TickGuard>,
}

impl CallScope {
    /// Why the call must stop, if it must already: then [`run_stoppable`] would not start it.
    pub fn stop_reason(&self) -> Option<String> {
        self.call.as_ref().and_then(|call| call.stop_reason())
    }
}

/// Begins a call or an instantiation that must stop after `timeout`.
pub fn enter(cx: &mut Cx<'_>, timeout: Option<Duration>) -> CallScope {
    let outermost = cx.data().depth == 0;
    // A nested call is stopped by the state of the request it serves (`answer.rs`).
    let call = if outermost {
        Some(cx.data().call.clone())
    } else {
        cx.data().nested.last().cloned()
    };
    let left = call.as_ref().and_then(|call| call.set_timeout(timeout));
    let ticking = if outermost {
        cx.as_context_mut().set_epoch_deadline(1);
        // A store whose last request computed for long likely does again: its call gets
        // fine ticks at once, and so moves off the light worker within two of them.
        let long = cx.data().weight.was_heavy();
        Some(cx.data().shared.ticker.running(left, long))
    } else {
        // The outermost call keeps the ticker running; a nested deadline sooner than it
        // looks makes it look sooner.
        left.map(|left| cx.data().shared.ticker.running(Some(left), false))
    };
    cx.data_mut().depth += 1;
    CallScope {
        outermost,
        call,
        _ticking: ticking,
    }
}

/// Runs `future`, the Wasm of `scope`, and drops it once the request it serves must stop
/// (see `executor::stoppable`): the outermost call's state, or a nested call's own.
pub async fn run_stoppable<R>(
    scope: &CallScope,
    future: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    executor::stoppable(scope.call.clone(), future)
        .await
        .unwrap_or_else(|reason| Err(wasmtime::Error::msg(reason)))
}

/// Ends a call or an instantiation.
pub fn leave(cx: &mut Cx<'_>, scope: CallScope) {
    let data = cx.data_mut();
    data.depth -= 1;
    if scope.outermost {
        // A stopped call leaves no callback waiting and nothing nested.
        data.depth = 0;
        data.callers.clear();
        data.nested.clear();
    }
}
