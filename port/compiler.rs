//! Compiling Wasm in a child process.
//!
//! A wasmtime compilation cannot be interrupted, and hostile code can make it take minutes
//! (deeply nested blocks compile in time growing with the square of the depth). So the
//! port compiles in a short-lived child, `wasmex_port --compile`: it gets the engine options
//! and the bytes on stdin and writes the serialized module to stdout; the parent loads the
//! artifact, which its own engine accepts because both engines have the same settings. The
//! child is killed when the compile timeout passes or the request is cancelled, and it dies
//! with its parent (PR_SET_PDEATHSIG). Deserializing is cheap; repeated compiles are fast
//! through the artifact cache (`artifact.rs`), or, for what it does not keep (precompiling),
//! through the child's own wasmtime cache.
//!
//! Without isolation (tests, fuzzing) compilation runs in-process.

use crate::artifact::ArtifactCache;
use crate::code as module;
use crate::engine::EngineOptions;
use crate::module_key::ModuleKey;
use crate::os_limits::resident_bytes_of;
use crate::term::{self, Fallible};
use eetf::Term;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use wasmtime::{Engine, Module};

/// How often a parent waiting for its compile child checks for a cancellation.
const POLL: Duration = Duration::from_millis(5);

/// Inputs up to this size compile in-process: starting a child costs milliseconds, and the
/// worst case found for small inputs is short (compile time grows with the square of the
/// nesting depth; 7.5 KB of nested loops, the most that fits, compiled in 0.25 s).
pub const INLINE_LIMIT: usize = 4096;

/// Locals, declared over all functions, past which a small input still compiles in a
/// child: a declaration names thousands of locals in a few bytes, and each costs compile
/// time (500 functions of 50,000 locals fit in 4 KiB and took 1.4 - 2.3 s to compile).
/// 100,000 compile in about 10 ms.
pub const INLINE_LOCALS: u64 = 100_000;

/// Whether `bytes` compile in-process: small, and declaring few locals. Text is read as
/// Wasm first; input that does not parse compiles in-process (which names its error),
/// unless the locals counted before the fault are too many already.
pub fn inline(bytes: &[u8]) -> bool {
    use wasmtime_environ::wasmparser::{Parser, Payload};
    if bytes.len() > INLINE_LIMIT {
        return false;
    }
    let Ok(binary) = wat::parse_bytes(bytes) else {
        return true;
    };
    let mut locals = 0u64;
    for payload in Parser::new(0).parse_all(&binary) {
        let Ok(Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return true;
            }
            continue;
        };
        let Ok(reader) = body.get_locals_reader() else {
            return true;
        };
        for declared in reader {
            let Ok((count, _)) = declared else {
                return true;
            };
            locals += u64::from(count);
            if locals > INLINE_LOCALS {
                return false;
            }
        }
    }
    true
}

/// Who waits for a compile: when they asked (the compile timeout counts from then, so the
/// time spent checking the key and feeding the child counts too), and whether they
/// stopped waiting (polled while a child compiles).
pub struct Waiter<'a> {
    pub asked: Instant,
    pub cancelled: &'a dyn Fn() -> bool,
}

impl Waiter<'static> {
    /// A waiter asking now that never stops waiting.
    pub fn now() -> Waiter<'static> {
        Waiter {
            asked: Instant::now(),
            cancelled: &|| false,
        }
    }
}

pub struct Compiler {
    engine: Engine,
    options: EngineOptions,
    /// Where large modules' compiled code is kept, when the engine has a cache directory.
    artifacts: Option<ArtifactCache>,
    /// The program to run as a compile child; `None` compiles in-process.
    child: Option<PathBuf>,
    timeout: Option<Duration>,
    /// The host's `resident_memory` cap, which binds its compile children too.
    resident_cap: Option<u64>,
}

impl Compiler {
    pub fn new(
        engine: Engine,
        options: EngineOptions,
        child: Option<PathBuf>,
        timeout: Option<Duration>,
    ) -> Compiler {
        Compiler {
            engine,
            artifacts: options
                .cache_dir
                .as_deref()
                .map(|dir| ArtifactCache::new(dir, &options)),
            options,
            child,
            timeout,
            resident_cap: None,
        }
    }

    /// Stops a compile child whose resident memory goes over `cap` bytes: a host's
    /// `resident_memory` cap covers the compilations it starts.
    pub fn with_resident_cap(mut self, cap: Option<u64>) -> Compiler {
        self.resident_cap = cap;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The on-disk cache of compiled code, when the engine has a cache directory
    /// (components use it too, `component/registry.rs`).
    pub fn artifacts(&self) -> Option<&ArtifactCache> {
        self.artifacts.as_ref()
    }

    /// Compiles `.wasm` or `.wat` bytes for `waiter`.
    /// With a `key` (the digest of these bytes, checked by the caller), a large module's
    /// artifact is kept in the cache directory, and a host that needs the same module again
    /// maps it instead of compiling.
    pub fn compile(
        &self,
        bytes: &[u8],
        key: Option<&ModuleKey>,
        waiter: &Waiter<'_>,
    ) -> Fallible<Module> {
        let Some(exe) = self.child.as_ref().filter(|_| !inline(bytes)) else {
            return module::compile(&self.engine, bytes);
        };
        let cache = key.zip(self.artifacts.as_ref());
        if let Some(module) = cache.and_then(|(key, cache)| cache.load(&self.engine, key)) {
            return Ok(module);
        }
        // A module whose artifact this host keeps needs no second copy in the child's
        // wasmtime cache, which would never be read: on a miss the child serializes and
        // zstd-compresses the entry before it answers (for a 26 MB module, a 27 MB
        // artifact, 11 MB compressed: about 0.15 s of one CPU on the compile's path).
        let input = self.child_input(bytes, cache.is_none());
        let artifact = self.run_child(exe, "--compile", input, waiter)?;
        let module = module::deserialize(&self.engine, &artifact)?;
        if let Some((key, cache)) = cache {
            cache.keep(key, &artifact);
        }
        Ok(module)
    }

    /// The module of `key` from the artifact cache, if a file there proves it holds that
    /// module compiled with this engine's settings: a host that was sent only the key of
    /// a module another host compiled maps it without seeing its source.
    pub fn cached(&self, key: &ModuleKey) -> Option<Module> {
        self.artifacts.as_ref()?.load(&self.engine, key)
    }

    /// Compiles a component (binary or text): in a compile child above the inline limit,
    /// under the compile timeout, for `waiter`, like a module, and kept in the artifact
    /// cache under `key`. `load::component` checks the bytes first, so a core module or
    /// truncated bytes are named before any child starts.
    pub fn compile_component(
        &self,
        bytes: &[u8],
        key: &ModuleKey,
        waiter: &Waiter<'_>,
    ) -> Fallible<wasmtime::component::Component> {
        use crate::component::load;
        let cache = self.artifacts.as_ref();
        if let Some(component) = cache.and_then(|c| c.load_component(&self.engine, key)) {
            return Ok(component);
        }
        let Some(exe) = self.child.as_ref().filter(|_| !inline(bytes)) else {
            let component = load::component(&self.engine, bytes).map_err(|e| e.to_string())?;
            if let (Some(cache), Ok(artifact)) = (cache, component.serialize()) {
                cache.keep(key, &artifact);
            }
            return Ok(component);
        };
        load::check(bytes).map_err(|e| e.to_string())?;
        let artifact = self.run_child(exe, "--compile", self.child_input(bytes, false), waiter)?;
        if Engine::detect_precompiled(&artifact) != Some(wasmtime::Precompiled::Component) {
            return Err("the compiler process did not answer with a component".into());
        }
        // SAFETY: the artifact was just made by this program's compile child for an engine
        // of the same settings; wasmtime checks it against this engine too.
        let component =
            unsafe { wasmtime::component::Component::deserialize(&self.engine, &artifact) }
                .map_err(|e| format!("invalid component: {e:#}"))?;
        if let Some(cache) = cache {
            cache.keep(key, &artifact);
        }
        Ok(component)
    }

    /// Compiles to a serialized module (what `Wasmex.Engine.precompile_module/2` returns).
    pub fn precompile(&self, bytes: &[u8], waiter: &Waiter<'_>) -> Fallible<Vec<u8>> {
        match &self.child {
            Some(exe) if !inline(bytes) => {
                self.run_child(exe, "--compile", self.child_input(bytes, true), waiter)
            }
            _ => module::serialize(&module::compile(&self.engine, bytes)?),
        }
    }

    /// Runs the init export of `bytes` and returns the pre-initialized module
    /// (`preinit.rs`), in a child like a compile, under the same timeout and caps.
    pub fn preinitialize(
        &self,
        bytes: &[u8],
        options: &crate::preinit::PreinitOptions,
        waiter: &Waiter<'_>,
    ) -> Fallible<Vec<u8>> {
        let Some(exe) = &self.child else {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            return runtime.block_on(crate::preinit::snapshot(&self.engine, options, bytes));
        };
        let input = crate::preinit::child_input(&self.options, options, bytes);
        self.run_child(exe, "--preinitialize", input, waiter)
    }

    /// What a compile child reads: the engine options, then the bytes. Without
    /// `wasmtime_cache` the child's engine has no cache directory (it compiles, and writes
    /// no cache entry).
    fn child_input(&self, bytes: &[u8], wasmtime_cache: bool) -> Vec<u8> {
        let options = if wasmtime_cache {
            self.options.to_term()
        } else {
            EngineOptions {
                cache_dir: None,
                ..self.options.clone()
            }
            .to_term()
        };
        let mut input = crate::frame::encode_frame(&options);
        input.extend_from_slice(bytes);
        input
    }

    fn run_child(
        &self,
        exe: &PathBuf,
        mode: &str,
        input: Vec<u8>,
        waiter: &Waiter<'_>,
    ) -> Fallible<Vec<u8>> {
        let mut child = Command::new(exe)
            .arg(mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a compiler process: {e}"))?;
        let mut stdin = child.stdin.take().ok_or("compiler process has no stdin")?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err("compiler process has no output".into());
        };
        // The child reads all its input before it writes, so feeding it first is safe; the
        // output is collected on other threads so that this one can watch the clock. Its
        // error message is read at the same time as its output: one longer than a pipe
        // holds would otherwise block the child, and this side with it, until the timeout.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let errors = thread::spawn(move || read_message(&mut stderr));
            let written = stdin.write_all(&input);
            drop(stdin);
            let mut out = Vec::new();
            let read = stdout.read_to_end(&mut out).map(|_| ());
            let err = errors.join().unwrap_or_default();
            let _ = tx.send((written.and(read), out, err));
        });
        let deadline = self.timeout.map(|t| waiter.asked + t);
        let (io, out, err) = loop {
            match rx.recv_timeout(POLL) {
                Ok(result) => break result,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break (Ok(()), Vec::new(), String::new())
                }
            }
            let stop = if (waiter.cancelled)() {
                Some("compilation cancelled: the caller stopped waiting".to_string())
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                let ms = self.timeout.map_or(0, |t| t.as_millis());
                Some(format!(
                    "Could not compile module: compilation did not finish within {ms} ms and \
                     was stopped (raise it with compile_timeout: of Wasmex.Engine.new/2, or \
                     config :wasmex, compile_timeout: for stores without an engine)"
                ))
            } else {
                self.over_resident_cap(child.id())
            };
            if let Some(reason) = stop {
                let _ = child.kill();
                let _ = child.wait();
                return Err(reason);
            }
        };
        let status = child.wait().map_err(|e| format!("compiler process: {e}"))?;
        match (status.success(), io) {
            (true, Ok(())) => Ok(out),
            (false, _) if !err.is_empty() => Err(err.trim_end().to_string()),
            (_, Err(e)) => Err(format!("compiler process: {e}")),
            (false, Ok(())) => Err(format!("the compiler process failed ({status})")),
        }
    }
}

/// The longest error message kept from a child; the rest is read and dropped.
const MAX_MESSAGE: usize = 64 * 1024;

/// A child's error message (stderr), read to its end and kept up to [`MAX_MESSAGE`] bytes.
fn read_message(stderr: &mut impl Read) -> String {
    let mut kept = Vec::new();
    let _ = stderr.take(MAX_MESSAGE as u64).read_to_end(&mut kept);
    let dropped = std::io::copy(stderr, &mut std::io::sink()).unwrap_or(0);
    let mut message = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        message.push_str(&format!("... ({dropped} more bytes)"));
    }
    message
}

impl Compiler {
    /// The error for a compile child over the resident memory cap, if it is.
    fn over_resident_cap(&self, pid: u32) -> Option<String> {
        let cap = self.resident_cap?;
        let rss = resident_bytes_of(pid).filter(|&rss| rss > cap)?;
        Some(format!(
            "Could not compile module: compiling used {rss} bytes of resident memory, over \
             the host's resident memory cap of {cap} bytes (os_limits), and was stopped"
        ))
    }
}

/// The `--compile` mode of the program: reads a frame with the engine options, then the
/// module bytes until EOF; writes the serialized module to stdout. Returns the exit code.
pub fn child_main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("cannot read input: {e}");
        return 2;
    }
    match child_compile(&input) {
        Ok(artifact) => match std::io::stdout().write_all(&artifact) {
            Ok(()) => 0,
            Err(_) => 2,
        },
        Err(message) => {
            eprint!("{message}");
            1
        }
    }
}

fn child_compile(input: &[u8]) -> Fallible<Vec<u8>> {
    let mut reader = input;
    let options = match crate::frame::read_frame(&mut reader) {
        Ok(Some(crate::frame::Frame::Data(payload))) => {
            let t = Term::decode(&payload[..]).map_err(|e| format!("bad options: {e}"))?;
            EngineOptions::from_term(&t)?
        }
        _ => return Err("no options frame".into()),
    };
    let engine = options.build()?;
    if crate::component::load::is_component(reader) {
        let component =
            crate::component::load::component(&engine, reader).map_err(|e| e.to_string())?;
        return component
            .serialize()
            .map_err(|e| format!("Could not serialize component: {e:#}"));
    }
    // Module::from_binary consults wasmtime's cache (when configured); serialize hands
    // the result to the parent.
    module::serialize(&module::compile(&engine, reader)?)
}

impl EngineOptions {
    /// The options as the term `from_term` reads (what a compile child needs).
    pub fn to_term(&self) -> Term {
        let a = term::atom;
        let level = match self.opt_level {
            Some(wasmtime::OptLevel::None) => a("none"),
            Some(wasmtime::OptLevel::Speed) => a("speed"),
            Some(wasmtime::OptLevel::SpeedAndSize) => a("speed_and_size"),
            Some(_) | None => term::nil(),
        };
        let mut pairs = vec![
            (a("consume_fuel"), term::boolean(self.consume_fuel)),
            (a("cranelift_opt_level"), level),
            (
                a("wasm_backtrace_details"),
                term::boolean(self.backtrace_details),
            ),
            (
                a("cache_dir"),
                self.cache_dir
                    .as_deref()
                    .map(term::string)
                    .unwrap_or_else(term::nil),
            ),
            (a("compact_memories"), term::boolean(self.compact_memories)),
        ];
        pairs.extend(self.features.to_pairs());
        term::map(pairs)
    }
}

#[cfg(test)]
#[path = "compiler_tests.rs"]
mod tests;
