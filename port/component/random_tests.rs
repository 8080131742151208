use super::*;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::WasiCtx;

struct Host {
    ctx: WasiCtx,
    table: ResourceTable,
    weight: Weight,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl RandomHost for Host {
    fn weight(&self) -> &Weight {
        &self.weight
    }
}

/// A component built against WASI 0.2.0 whose `fill(len)` asks `interface` for `len`
/// random bytes (written at offset 64 of its 2 MiB + 128 KiB memory) and returns how
/// many came.
fn guest(interface: &str, function: &str) -> String {
    format!(
        r#"
(component
  (import "wasi:random/{interface}@0.2.0" (instance $random
    (export "{function}" (func (param "len" u64) (result (list u8))))))
  (core module $libc
    (memory (export "memory") 34)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 64)))
  (core instance $libc (instantiate $libc))
  (core func $get (canon lower (func $random "{function}")
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "random" "get" (func $get (param i64 i32)))
    (func (export "fill") (param i64) (result i32)
      (call $get (local.get 0) (i32.const 0))
      (i32.load offset=4 (i32.const 0))))
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "random" (instance (export "get" (func $get))))))
  (func (export "fill") (param "len" u64) (result u32) (canon lift (core func $main "fill"))))
"#
    )
}

/// What `fill(len)` of the guest for `interface`'s `function` answers, the times the
/// call yielded and whether its work counted as heavy; through the chunked functions if
/// `chunked`, else wasmtime-wasi's.
fn fill(
    chunked: bool,
    interface: &str,
    function: &str,
    len: u64,
) -> (Result<u32, String>, usize, bool) {
    let engine = Engine::new(&Config::new()).unwrap();
    let mut linker = Linker::new(&engine);
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    if chunked {
        add_to_linker(&mut linker).unwrap();
    }
    let host = Host {
        ctx: wasmtime_wasi::WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        weight: Weight::default(),
    };
    let mut store = Store::new(&engine, host);
    let component = Component::new(&engine, guest(interface, function)).unwrap();
    crate::executor::block_on(async {
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .unwrap();
        let f = instance
            .get_typed_func::<(u64,), (u32,)>(&mut store, "fill")
            .unwrap();
        let (result, yields) =
            crate::executor::counting_yields(f.call_async(&mut store, (len,))).await;
        let result = result.map(|(n,)| n).map_err(|e| format!("{e:#}"));
        (result, yields, store.data().weight.heavy())
    })
}

const LEN: u64 = 2 * CHUNK as u64 + 5;

#[test]
fn a_large_request_is_made_in_chunks_yielding_between_them() {
    for (interface, function) in [
        ("random", "get-random-bytes"),
        ("insecure", "get-insecure-random-bytes"),
    ] {
        let (result, yields, heavy) = fill(true, interface, function, LEN);
        assert_eq!(result, Ok(LEN as u32), "{function}");
        assert_eq!(yields, 2, "{function}: one yield after each full chunk");
        assert!(
            heavy,
            "{function}: each chunk counts as a tick of the request's work"
        );
    }
}

#[test]
fn without_the_chunks_a_large_request_is_one_step() {
    let (result, yields, heavy) = fill(false, "random", "get-random-bytes", LEN);
    assert_eq!((result, yields, heavy), (Ok(LEN as u32), 0, false));
}

#[test]
fn a_request_of_one_chunk_is_one_step() {
    let (result, yields, _) = fill(true, "random", "get-random-bytes", u64::from(CHUNK));
    assert_eq!((result, yields), (Ok(CHUNK), 0));
}

#[test]
fn a_request_over_the_limit_gets_wasmtime_wasis_answer() {
    let ours = fill(true, "random", "get-random-bytes", LIMIT + 1);
    let theirs = fill(false, "random", "get-random-bytes", LIMIT + 1);
    assert_eq!(ours.0, theirs.0);
    assert!(ours.0.unwrap_err().contains("exceeds limit"));
}
