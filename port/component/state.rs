//! What a store keeps for components: their instances, and the WASI preview 2 context
//! they share. One field of the store's data (`StoreData::component`); core instances and
//! component instances live in the same `wasmtime::Store`, so fuel, limits, deadlines and
//! `Store.release/1` apply to both alike.

use super::resources::{Exported, GuestTable};
use crate::store::StoreData;
use std::sync::Arc;
use wasmtime::component::{Component, Instance, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

#[derive(Default)]
pub struct ComponentState {
    instances: Vec<Entry>,
    /// Made on first use: a store whose components never ask for WASI pays nothing.
    p2: Option<Box<P2>>,
    /// The guest resource handles the BEAM holds (`resources.rs`).
    pub guest: GuestTable,
    /// Why none of the store's component instances can run any more: once a call into
    /// one of them failed (a trap, a stop, an exit), wasmtime enters none of them again,
    /// nor any made later in the store.
    failed: Option<String>,
}

/// A component instance of the store.
pub struct Entry {
    pub instance: Instance,
    pub component: Component,
    /// Why the instance can no longer be entered (the first failure of a call in it).
    pub poisoned: Option<String>,
    /// Whether a call into it is running (an import of it is waiting for the BEAM).
    pub running: bool,
    /// Where its calls spent their time in the port (`timing.rs`).
    pub timing: super::timing::Timing,
    /// The resource types it exports, by name (found when a handle first needs one).
    pub resources: Option<Arc<[Arc<Exported>]>>,
}

/// The WASI preview 2 context of a store's components, and the resource table that holds
/// their streams, files and other WASI resources.
pub struct P2 {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
}

impl P2 {
    /// Nothing inherited, no arguments, no environment, no directories: what a store made
    /// without `Wasmex.Wasi.WasiP2Options` gives its components.
    pub fn empty() -> P2 {
        P2 {
            ctx: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl ComponentState {
    /// Adds an instance; its id.
    pub fn add(&mut self, instance: Instance, component: Component) -> u64 {
        self.instances.push(Entry {
            instance,
            component,
            poisoned: None,
            running: false,
            timing: Default::default(),
            resources: None,
        });
        self.instances.len() as u64 - 1
    }

    /// Records that a call into instance `id` failed, and why.
    pub fn fail(&mut self, id: u64, why: &str) {
        if let Ok(entry) = self.get_mut(id) {
            entry.poisoned = Some(why.to_string());
        }
        self.failed.get_or_insert_with(|| why.to_string());
    }

    /// Records that an instantiation in the store failed while its Wasm ran, and why.
    pub fn fail_store(&mut self, why: &str) {
        self.failed.get_or_insert_with(|| why.to_string());
    }

    /// Whether instance `id` (`None`: a new instance) can be entered: the reason it
    /// cannot, if not.
    pub fn check_enter(&self, id: Option<u64>) -> Result<(), String> {
        if let Some(why) = id.and_then(|id| self.get(id).ok()?.poisoned.as_ref()) {
            return Err(format!(
                "the component instance stopped after an earlier failure ({why}): start a new one"
            ));
        }
        match &self.failed {
            Some(why) => Err(format!(
                "the store's component instances stopped after an earlier failure in one of \
                 them ({why}): start components in a new store"
            )),
            None => Ok(()),
        }
    }

    pub fn get(&self, id: u64) -> Result<&Entry, String> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.instances.get(i))
            .ok_or_else(|| format!("unknown component instance {id}"))
    }

    pub fn get_mut(&mut self, id: u64) -> Result<&mut Entry, String> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.instances.get_mut(i))
            .ok_or_else(|| format!("unknown component instance {id}"))
    }

    /// Whether the store's components have a WASI context (whose output is buffered and
    /// must be flushed before a reply, `output.rs`).
    pub fn has_wasi(&self) -> bool {
        self.p2.is_some()
    }

    /// Sets the WASI context; refused once instances exist (they were linked with the
    /// earlier one).
    pub fn set_wasi(&mut self, p2: P2) -> Result<(), String> {
        if !self.instances.is_empty() {
            return Err(
                "WASI must be configured before the store's first component instance".into(),
            );
        }
        self.p2 = Some(Box::new(p2));
        Ok(())
    }

    fn p2(&mut self) -> &mut P2 {
        self.p2.get_or_insert_with(|| Box::new(P2::empty()))
    }
}

impl super::random::RandomHost for StoreData {
    fn weight(&self) -> &crate::roam::Weight {
        &self.weight
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let p2 = self.component.p2();
        WasiCtxView {
            ctx: &mut p2.ctx,
            table: &mut p2.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failed_call_no_component_instance_of_the_store_is_entered() {
        let mut state = ComponentState::default();
        assert_eq!(state.check_enter(None), Ok(()));
        state.fail(0, "wasm trap: unreachable");
        assert_eq!(
            state.check_enter(None),
            Err(
                "the store's component instances stopped after an earlier failure in one of \
                 them (wasm trap: unreachable): start components in a new store"
                    .to_string()
            )
        );
    }
}
