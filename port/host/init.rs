//! `init`: the host's engine, its compiler and everything its stores share.

use super::Host;
use crate::bulk::Bulk;
use crate::compiler::Compiler;
use crate::engine::EngineOptions;
use crate::module::Registry;
use crate::os_limits::OsLimits;
use crate::outbox::Outbox;
use crate::protocol::{self, reply};
use crate::shared::Shared;
use crate::store::Cancellations;
use crate::term::{self, Fallible};
use crate::ticker::Ticker;
use eetf::Term;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Engine;

impl Host {
    /// Creates the engine from `config` and answers request `id`. Only once per host.
    pub(super) fn init(&mut self, id: u64, config: &Term) -> Fallible<()> {
        if self.shared.is_some() {
            return Err("the host is already initialised".into());
        }
        let mut options = EngineOptions::from_term(config)?;
        let config = term::as_map(config, "engine config")?;
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
        crate::executor::spin::set(Duration::from_micros(options.spin_us));
        let shared = Arc::new(Shared {
            engine,
            ticker,
            modules: Registry::default(),
            outbox: self.outbox.clone(),
            compiler,
            cancellations: Cancellations::default(),
            backtrace_details: options.backtrace_details,
            drops: Default::default(),
            instance_slots,
            bulk: Bulk::create().ok(),
        });
        // `{Fd, Size}` of the shared buffer for large writes (see `bulk.rs`), or `nil`.
        let bulk = shared.bulk.as_ref().map_or_else(term::nil, |bulk| {
            term::tuple(vec![
                term::uint(bulk.fd() as u64),
                term::uint(crate::bulk::SIZE as u64),
            ])
        });
        self.shared = Some(shared);
        self.outbox.send(&reply(id, Ok(bulk)));
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
