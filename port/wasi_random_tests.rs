use super::*;
use wasmtime::{Config, Engine, Module, Store};

struct Host {
    wasi: WasiP1Ctx,
    weight: Weight,
}

impl RandomHost for Host {
    fn wasi_and_weight(&mut self) -> (&mut WasiP1Ctx, &Weight) {
        (&mut self.wasi, &self.weight)
    }
}

/// A guest with 2 MiB + 64 KiB of memory whose `fill(buf, len)` returns
/// `random_get`'s errno.
const GUEST: &str = r#"
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 33)
  (func (export "fill") (param i32 i32) (result i32)
    (call $random_get (local.get 0) (local.get 1))))
"#;

const MEMORY: u32 = 33 * 65536;

/// What `fill(buf, len)` answers, with the guest's memory afterwards and the times the
/// call yielded; through the chunked `random_get` if `chunked`, else wasmtime-wasi's.
fn fill(chunked: bool, buf: u32, len: u32) -> (Result<i32, String>, Vec<u8>, usize, bool) {
    let engine = Engine::new(&Config::new()).unwrap();
    let mut linker = Linker::new(&engine);
    linker.allow_shadowing(true);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h: &mut Host| &mut h.wasi).unwrap();
    if chunked {
        add_to_linker(&mut linker).unwrap();
    }
    let host = Host {
        wasi: wasmtime_wasi::WasiCtxBuilder::new().build_p1(),
        weight: Weight::default(),
    };
    let mut store = Store::new(&engine, host);
    let module = Module::new(&engine, GUEST).unwrap();
    crate::executor::block_on(async {
        let instance = linker.instantiate_async(&mut store, &module).await.unwrap();
        let f = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "fill")
            .unwrap();
        let (result, yields) =
            crate::executor::counting_yields(f.call_async(&mut store, (buf as i32, len as i32)))
                .await;
        let result = result.map_err(|e| format!("{e:#}"));
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let bytes = memory.data(&store).to_vec();
        (result, bytes, yields, store.data().weight.heavy())
    })
}

#[test]
fn a_large_request_is_filled_in_chunks_yielding_between_them() {
    let len = 2 * CHUNK + 5;
    let (result, bytes, yields, heavy) = fill(true, 16, len);
    assert_eq!(result, Ok(Errno::Success as i32));
    assert_eq!(yields, 2, "one yield after each full chunk");
    assert!(heavy, "each chunk counts as a tick of the request's work");
    // Random bytes everywhere asked for (a run of 4 KiB zeros has no real chance), and
    // nothing written around them.
    assert!(bytes[16..16 + len as usize]
        .chunks(4096)
        .all(|block| block.iter().any(|&b| b != 0)));
    assert!(bytes[..16].iter().all(|&b| b == 0));
    assert!(bytes[16 + len as usize..].iter().all(|&b| b == 0));
}

#[test]
fn a_request_of_one_chunk_or_less_is_one_step() {
    let (result, _, yields, heavy) = fill(true, 0, CHUNK);
    assert_eq!(
        (result, yields, heavy),
        (Ok(Errno::Success as i32), 0, false)
    );
}

#[test]
fn a_request_past_the_memory_gets_wasmtime_wasis_answer() {
    let ours = fill(true, MEMORY - CHUNK, 2 * CHUNK);
    let theirs = fill(false, MEMORY - CHUNK, 2 * CHUNK);
    assert_eq!(ours.0, theirs.0);
    assert_ne!(ours.0, Ok(Errno::Success as i32));
    assert_eq!(ours.2, 0, "no chunk was filled");
}

#[test]
fn a_request_over_the_limit_gets_wasmtime_wasis_answer() {
    let ours = fill(true, 0, (LIMIT + 1) as u32);
    let theirs = fill(false, 0, (LIMIT + 1) as u32);
    assert_eq!(ours.0, theirs.0);
    assert!(ours.0.unwrap_err().contains("exceeds limit"));
}
