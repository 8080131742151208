//! What every store and every thread of a host shares: the engine and its epoch ticker,
//! the modules, the way out to the BEAM, and the host's settings.

use crate::bulk::Bulk;
use crate::call_state::Cancellations;
use crate::compiler::Compiler;
use crate::drops::Drops;
use crate::module::Registry;
use crate::outbox::Outbox;
use crate::ticker::Ticker;
use std::sync::Arc;
use wasmtime::Engine;

pub struct Shared {
    pub engine: Engine,
    pub ticker: Arc<Ticker>,
    pub modules: Registry,
    pub outbox: Outbox,
    pub compiler: Compiler,
    /// Host-wide requests (compiles) whose caller went away.
    pub cancellations: Cancellations,
    pub backtrace_details: bool,
    /// Stores told to drop and not yet gone.
    pub drops: Arc<Drops>,
    /// How many instances (and memories, and tables) the engine's pool holds, if it has
    /// one.
    pub instance_slots: Option<u32>,
    /// The buffer for large memory writes, if it could be made.
    pub bulk: Option<Bulk>,
}
