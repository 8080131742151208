//! The wasmtime engine of this host, built from `Wasmex.EngineConfig`'s settings (its
//! epoch ticker is `ticker.rs`).

use crate::term::{self, Fallible};
use eetf::Term;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, OptLevel,
    PoolingAllocationConfig, WasmBacktraceDetails,
};

/// What `Wasmex.EngineConfig` controls, plus where compiled code is cached.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineOptions {
    pub consume_fuel: bool,
    pub opt_level: Option<OptLevel>,
    pub backtrace_details: bool,
    pub cache_dir: Option<String>,
    /// Reserve only what each linear memory needs (set when the address space is capped).
    pub compact_memories: bool,
    /// Microseconds a worker thread about to park spins first, watching for work (see
    /// `executor::spin`).
    pub spin_us: u64,
    /// Compile on the calling thread only (no thread pool): for engines that compile
    /// small modules only.
    pub serial_compilation: bool,
    /// How many instances (and as many linear memories and tables) wasmtime's pooling
    /// allocator holds at once, or `None` to allocate each on demand. See [`pool_config`].
    pub instance_slots: Option<u32>,
    /// Proposals and debug info turned on by `Wasmex.EngineConfig`.
    pub features: Features,
}

/// The `Wasmex.EngineConfig` switches passed on to wasmtime's `Config`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Features {
    /// 64-bit linear memories (off by default, as in Wasmex).
    pub memory64: bool,
    /// DWARF debug info in compiled code, for native debuggers.
    pub debug_info: bool,
    /// The component model proposal.
    pub component_model: bool,
}

impl Features {
    const KEYS: [&'static str; 3] = ["memory64", "debug_info", "wasm_component_model"];

    fn from_map(m: &std::collections::HashMap<Term, Term>) -> Fallible<Features> {
        Ok(Features {
            memory64: term::map_flag(m, Self::KEYS[0])?,
            debug_info: term::map_flag(m, Self::KEYS[1])?,
            component_model: term::map_flag(m, Self::KEYS[2])?,
        })
    }

    /// The switches as map entries, as `EngineOptions::from_term` reads them.
    pub fn to_pairs(self) -> Vec<(Term, Term)> {
        [self.memory64, self.debug_info, self.component_model]
            .into_iter()
            .zip(Self::KEYS)
            .map(|(on, key)| (term::atom(key), term::boolean(on)))
            .collect()
    }

    fn apply(self, config: &mut Config) {
        config.wasm_memory64(self.memory64);
        config.debug_info(self.debug_info);
        config.wasm_component_model(self.component_model);
        // Without it, a component's `call_async` runs on a fiber as a core call does,
        // instead of through the concurrent (component-model-async) task machinery, which
        // cost about 3 µs of every component call; nothing here uses async components.
        config.concurrency_support(false);
    }
}

/// The most instance slots: each slot reserves 4 GiB of address space for its memory,
/// and a process has 128 TiB.
pub const MAX_INSTANCE_SLOTS: u32 = 20_000;

impl EngineOptions {
    /// Reads `%{consume_fuel: bool, cranelift_opt_level: atom, wasm_backtrace_details: bool,
    /// cache_dir: binary | nil}`.
    pub fn from_term(t: &Term) -> Fallible<EngineOptions> {
        let m = term::as_map(t, "engine config")?;
        let opt_level = match term::map_get(m, "cranelift_opt_level") {
            None => None,
            Some(v) => Some(match term::as_atom(v) {
                Some("none") => OptLevel::None,
                Some("speed") => OptLevel::Speed,
                Some("speed_and_size") => OptLevel::SpeedAndSize,
                _ => {
                    return Err(format!(
                        "cranelift_opt_level must be :none, :speed or :speed_and_size, got: {}",
                        term::show(v)
                    ))
                }
            }),
        };
        let cache_dir = match term::map_get(m, "cache_dir") {
            Some(v) => Some(term::as_str(v, "cache_dir")?.to_string()),
            None => None,
        };
        Ok(EngineOptions {
            consume_fuel: term::map_flag(m, "consume_fuel")?,
            opt_level,
            backtrace_details: term::map_flag(m, "wasm_backtrace_details")?,
            cache_dir,
            compact_memories: term::map_bool(m, "compact_memories")?,
            serial_compilation: false,
            spin_us: term::map_u64(m, "spin_us")?.unwrap_or(0),
            instance_slots: instance_slots(term::map_get(m, "instance_slots"))?,
            features: Features::from_map(m)?,
        })
    }

    /// The engine, with its instance slots if it has some (not with capped address space,
    /// where memories reserve only what they use).
    pub fn build(&self) -> Fallible<Engine> {
        let mut config = self.config()?;
        match self.instance_slots {
            Some(slots) if !self.compact_memories => {
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(slots)));
            }
            _ => {}
        }
        Engine::new(&config).map_err(|e| format!("cannot create engine: {e}"))
    }

    fn config(&self) -> Fallible<Config> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Wasm runs on wasmtime's async API (see `executor.rs`; in wasmtime 48 every
        // engine supports it, `Config::async_support` is gone): a call, an instantiation
        // or a WASI wait that must stop is dropped where it waits.
        // 64-bit memories are off unless asked for (as in Wasmex 0.9.1): without store
        // limits, growing one past 4 GiB makes wasmtime copy it whole into resident memory.
        self.features.apply(&mut config);
        config.consume_fuel(self.consume_fuel);
        if let Some(level) = self.opt_level {
            config.cranelift_opt_level(level);
        }
        config.wasm_backtrace_details(if self.backtrace_details {
            WasmBacktraceDetails::Enable
        } else {
            WasmBacktraceDetails::Disable
        });
        if self.serial_compilation {
            config.parallel_compilation(false);
        }
        if self.compact_memories {
            // No multi-gigabyte reservations: memories start small and may move when they
            // grow, and Wasm code checks bounds explicitly.
            config.memory_reservation(0);
            config.memory_guard_size(0);
            config.memory_reservation_for_growth(1 << 20);
            config.memory_may_move(true);
        }
        if let Some(dir) = &self.cache_dir {
            // wasmtime's cache gets a folder of its own: its cleanup removes files it does
            // not recognise, and the artifact cache (`artifact.rs`) lives beside it.
            let mut cache_config = CacheConfig::new();
            cache_config.with_directory(std::path::Path::new(dir).join("wasmtime"));
            let cache = Cache::new(cache_config)
                .map_err(|e| format!("cannot use cache directory {dir}: {e}"))?;
            config.cache(Some(cache));
        }
        Ok(config)
    }
}

/// `nil`, `false` or a slot count from 1 to [`MAX_INSTANCE_SLOTS`].
fn instance_slots(t: Option<&Term>) -> Fallible<Option<u32>> {
    match t {
        None => Ok(None),
        Some(t) if matches!(term::as_atom(t), Some("nil" | "false")) => Ok(None),
        Some(t) => match term::as_i64(t) {
            Some(n) if (1..=i64::from(MAX_INSTANCE_SLOTS)).contains(&n) => Ok(Some(n as u32)),
            _ => Err(format!(
                "instance_slots must be false or an integer from 1 to {MAX_INSTANCE_SLOTS}, got: {}",
                term::show(t)
            )),
        },
    }
}

/// wasmtime's pooling allocator with `slots` instances, memories and tables. Slots are
/// reserved once and reused, so instantiating costs no mmap/mprotect/munmap (3 us instead
/// of 10 - 19 us, measured). The per-module limits are set wide so that modules Wasmex
/// accepts fit: up to 16 memories and 16 tables each, tables of up to 10 M elements
/// (address space only; `Wasmex.StoreLimits` still caps growth), 4 MiB of instance state.
/// One async stack per slot: every call runs on a fiber (see `executor.rs`).
pub fn pool_config(slots: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .total_stacks(slots)
        .max_memories_per_module(16)
        .max_tables_per_module(16)
        .table_elements(10_000_000)
        .max_core_instance_size(4 << 20);
    pool
}

/// Adds what to do about it to an error that comes from the limits of the instance slots.
pub fn explain_pool_limit(message: String) -> String {
    if message.contains("pooling allocator") || message.contains("maximum concurrent limit") {
        format!(
            "{message} (the limits of the engine's instance slots: see the :instance_slots \
             option of Wasmex.Engine.new/2)"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_engine_options() {
        let t = term::map(vec![
            (term::atom("consume_fuel"), term::boolean(true)),
            (
                term::atom("cranelift_opt_level"),
                term::atom("speed_and_size"),
            ),
            (term::atom("wasm_backtrace_details"), term::boolean(false)),
            (term::atom("cache_dir"), term::nil()),
        ]);
        let o = EngineOptions::from_term(&t).unwrap();
        assert!(o.consume_fuel);
        assert_eq!(o.opt_level, Some(OptLevel::SpeedAndSize));
        assert_eq!(o.cache_dir, None);
    }

    #[test]
    fn a_setting_given_as_nil_is_refused() {
        let t = term::map(vec![(term::atom("consume_fuel"), term::nil())]);
        assert_eq!(
            EngineOptions::from_term(&t).err(),
            Some("consume_fuel must be a boolean, got: nil".into())
        );
    }

    fn pool_option(value: Term) -> Fallible<Option<u32>> {
        let t = term::map(vec![(term::atom("instance_slots"), value)]);
        EngineOptions::from_term(&t).map(|o| o.instance_slots)
    }

    #[test]
    fn reads_the_instance_slots() {
        assert_eq!(pool_option(term::uint(64)), Ok(Some(64)));
        assert_eq!(pool_option(term::atom("false")), Ok(None));
        assert_eq!(pool_option(term::nil()), Ok(None));
    }

    #[test]
    fn rejects_an_instance_slots_out_of_range() {
        for bad in [term::uint(0), term::uint(20_001), term::atom("big")] {
            let err = pool_option(bad).unwrap_err();
            assert!(err.contains("from 1 to 20000"), "{err}");
        }
    }

    /// Instantiates `module` in `n` stores of its own, keeping them alive.
    fn instantiate_n(engine: &Engine, n: usize) -> Vec<Result<(), String>> {
        let module = wasmtime::Module::new(engine, "(module (memory 1) (table 1 funcref))")
            .expect("compiles");
        let mut stores = Vec::new();
        (0..n)
            .map(|_| {
                let mut store = wasmtime::Store::new(engine, ());
                let made = wasmtime::Instance::new(&mut store, &module, &[])
                    .map(|_| ())
                    .map_err(|e| explain_pool_limit(format!("{e:#}")));
                stores.push(store);
                made
            })
            .collect()
    }

    #[test]
    fn a_pooled_engine_refuses_more_instances_than_it_has_slots_and_says_why() {
        let options = EngineOptions {
            instance_slots: Some(2),
            ..EngineOptions::default()
        };
        let made = instantiate_n(&options.build().unwrap(), 3);
        assert!(made[0].is_ok() && made[1].is_ok());
        let err = made[2].as_ref().unwrap_err();
        assert!(err.contains(":instance_slots"), "{err}");
    }

    #[test]
    fn capped_address_space_allocates_on_demand_whatever_the_pool() {
        let options = EngineOptions {
            instance_slots: Some(2),
            compact_memories: true,
            ..EngineOptions::default()
        };
        let made = instantiate_n(&options.build().unwrap(), 3);
        assert!(made.iter().all(Result::is_ok), "{made:?}");
    }

    #[test]
    fn rejects_unknown_opt_level() {
        let t = term::map(vec![(
            term::atom("cranelift_opt_level"),
            term::atom("fast"),
        )]);
        assert!(EngineOptions::from_term(&t)
            .unwrap_err()
            .contains(":speed_and_size"));
    }
}
