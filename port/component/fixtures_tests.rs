//! The WASI preview 2 command and the endless loop fixtures run in wasmtime 48 (plain
//! sync stores; the port's own stores come with the integration).

use super::testing::{call, call1, engine, fixture, func, instance, store};
use crate::term::{atom, int};
use std::path::PathBuf;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

const RUN: &str = "wasi:cli/run@0.2.12";

struct Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Wasi {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("wasmex-components-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    result: Result<Vec<eetf::Term>, String>,
    stdout: String,
    stderr: String,
}

/// Runs the `wasi_cli` command with `args`, `GREETING=hi` and `dir` preopened as `data`.
fn run_cli(args: &[&str], dir: &TempDir, perms: FsPerms) -> Run {
    let engine = engine();
    let component = fixture(&engine, "wasi_cli.wasm");
    let (stdout, stderr) = (MemoryOutputPipe::new(4096), MemoryOutputPipe::new(4096));
    let mut builder = WasiCtxBuilder::new();
    builder
        .arg("wasi_cli")
        .args(args)
        .env("GREETING", "hi")
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    builder
        .preopened_dir(&dir.0, "data", perms)
        .expect("the dir opens");
    let wasi = Wasi {
        ctx: builder.build(),
        table: ResourceTable::new(),
    };
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
    let mut store: Store<Wasi> = store(&engine, wasi);
    let instance = linker
        .instantiate(&mut store, &component)
        .expect("instantiates");
    let run = func(&mut store, &instance, &[RUN, "run"]);
    let result = call(&mut store, run, &[]);
    let text = |pipe: MemoryOutputPipe| String::from_utf8_lossy(&pipe.contents()).into_owned();
    Run {
        result,
        stdout: text(stdout),
        stderr: text(stderr),
    }
}

#[test]
fn the_wasi_command_reads_args_env_and_a_preopen_and_writes_stdout_and_stderr() {
    let dir = TempDir::new("rw");
    std::fs::write(dir.0.join("in.txt"), "from the host\n").expect("writable");
    let run = run_cli(&["one", "two"], &dir, FsPerms::ReadWrite);
    assert_eq!(run.result, Ok(vec![atom("ok")]), "run returns ok");
    assert_eq!(
        run.stdout,
        "args: one two\nenv GREETING=hi\nfrom the host\n"
    );
    assert_eq!(run.stderr, "done\n");
    let written = std::fs::read_to_string(dir.0.join("out.txt")).expect("the guest wrote it");
    assert_eq!(written, "written by wasi_cli");
}

#[test]
fn a_read_only_preopen_keeps_the_guest_from_writing() {
    let dir = TempDir::new("ro");
    let run = run_cli(&[], &dir, FsPerms::ReadOnly);
    assert_eq!(run.result, Ok(vec![atom("ok")]));
    assert_eq!(run.stdout, "args:\nenv GREETING=hi\nno data/in.txt\n");
    assert!(!dir.0.join("out.txt").exists());
}

#[test]
fn a_failing_exit_status_is_an_error_of_run() {
    let dir = TempDir::new("fail");
    let run = run_cli(&["fail"], &dir, FsPerms::ReadOnly);
    let err = run.result.expect_err("exit status 1");
    assert!(err.contains("Exited with i32 exit status 1"), "{err}");
    assert_eq!(run.stderr, "done\n");
}

#[test]
fn the_endless_loop_runs_until_its_fuel_is_gone() {
    let (mut store, instance) = instance("spin.wasm");
    let ping = func(&mut store, &instance, &["ping"]);
    assert_eq!(call1(&mut store, ping, &[]), Ok(int(42)));
    store.set_fuel(100_000).expect("fuel is enabled");
    let spin = func(&mut store, &instance, &["spin-forever"]);
    let err = call(&mut store, spin, &[]).unwrap_err();
    assert!(err.contains("all fuel consumed"), "{err}");
}
