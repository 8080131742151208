//! A store's future moving between the runtimes in the middle of a wasmtime call.

use super::*;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;
use wasmtime::{Config, Engine, Instance, Module, Store, UpdateDeadline};

/// A loop of `$n` iterations, and where each epoch callback of it ran.
const LOOP: &str = r#"(module (func (export "run") (param $n i32) (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))))"#;

struct Data {
    weight: Arc<Weight>,
    threads: Arc<Mutex<Vec<String>>>,
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

/// Runs `run(n)` in a store on the roaming task, the engine's epoch ticking every
/// millisecond meanwhile: the threads its epoch callbacks ran on, then the thread of the
/// task's first poll after the call.
fn run_loop(n: i32) -> (Vec<String>, String) {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, LOOP).unwrap();
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = {
        let (engine, ticking) = (engine.clone(), ticking.clone());
        std::thread::spawn(move || {
            while ticking.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                engine.increment_epoch();
            }
        })
    };
    let weight = Arc::new(Weight::default());
    let threads = Arc::new(Mutex::new(Vec::new()));
    let (done, finished) = std::sync::mpsc::channel();
    let data = Data {
        weight: weight.clone(),
        threads: threads.clone(),
    };
    spawn(
        async move {
            let mut store = Store::new(&engine, data);
            store.epoch_deadline_callback(|cx| {
                cx.data().weight.tick();
                cx.data().threads.lock().unwrap().push(thread_name());
                Ok(UpdateDeadline::Yield(1))
            });
            store.set_epoch_deadline(1);
            let instance = Instance::new_async(&mut store, &module, &[]).await.unwrap();
            let run = instance
                .get_typed_func::<i32, ()>(&mut store, "run")
                .unwrap();
            run.call_async(&mut store, n).await.unwrap();
            store.data().weight.clear();
            // The next poll is on the light runtime again.
            tokio::task::yield_now().await;
            done.send(thread_name()).unwrap();
        },
        weight,
    );
    let after = finished.recv_timeout(Duration::from_secs(60)).unwrap();
    ticking.store(false, Ordering::Relaxed);
    ticker.join().unwrap();
    let threads = threads.lock().unwrap().clone();
    (threads, after)
}

#[test]
fn a_call_that_computes_moves_to_the_heavy_runtime_and_its_store_comes_back() {
    // Long enough for several ticks on any machine.
    let (threads, after) = run_loop(i32::MAX / 4);
    assert!(threads.len() > HEAVY_AFTER_TICKS as usize, "{threads:?}");
    assert!(threads.iter().any(|t| t == "heavy-worker"), "{threads:?}");
    assert_eq!(after, "store-worker");
}
