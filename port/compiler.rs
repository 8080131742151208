//! Compiling Wasm in a child process.
//!
//! A wasmtime compilation cannot be interrupted, and hostile code can make it take minutes
//! (deeply nested blocks compile in time growing with the square of the depth). So the
//! port compiles in a short-lived child, `wasmex_port --compile`: it gets the engine options
//! and the bytes on stdin and writes the serialized module to stdout; the parent loads the
//! artifact, which its own engine accepts because both engines have the same settings. The
//! child is killed when the compile timeout passes or the request is cancelled, and it dies
//! with its parent (PR_SET_PDEATHSIG). Deserializing is cheap; the child's own wasmtime cache
//! makes repeated compiles fast.
//!
//! Without isolation (tests, fuzzing) compilation runs in-process.

use crate::engine::EngineOptions;
use crate::module;
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

pub struct Compiler {
    engine: Engine,
    options: EngineOptions,
    /// The program to run as a compile child; `None` compiles in-process.
    child: Option<PathBuf>,
    timeout: Option<Duration>,
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
            options,
            child,
            timeout,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `.wasm` or `.wat` bytes. `cancelled` is polled while a child compiles.
    /// With a `key` (the BEAM's name for these bytes), a large module's artifact is kept in
    /// the cache directory, and a host that needs the same module again maps it instead of
    /// compiling.
    pub fn compile(
        &self,
        bytes: &[u8],
        key: Option<&[u8]>,
        cancelled: &dyn Fn() -> bool,
    ) -> Fallible<Module> {
        let Some(exe) = self.child.as_ref().filter(|_| bytes.len() > INLINE_LIMIT) else {
            return module::compile(&self.engine, bytes);
        };
        let cached = key.and_then(|k| self.artifact_path(k));
        if let Some(path) = &cached {
            // SAFETY: files in the artifact directory are written by this program only
            // (below), in the user's own cache directory; wasmtime checks that the artifact
            // matches this engine, and anything it refuses is compiled again.
            if let Ok(module) = unsafe { Module::deserialize_file(&self.engine, path) } {
                return Ok(module);
            }
        }
        let artifact = self.run_child(exe, bytes, cancelled)?;
        let module = module::deserialize(&self.engine, &artifact)?;
        if let Some(path) = cached {
            keep_artifact(&path, &artifact);
        }
        Ok(module)
    }

    /// `<cache_dir>/artifacts/<key>-<settings>.cwasm`: named by the module and by the engine
    /// settings that shape the code.
    fn artifact_path(&self, key: &[u8]) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.options.cache_dir.as_ref()?;
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        // The Debug form, not the term: a term holds a map, whose encoding order changes
        // from one map to the next.
        let shaping = EngineOptions {
            cache_dir: None,
            spin_us: 0,
            serial_compilation: false,
            instance_slots: None,
            ..self.options.clone()
        };
        format!("{shaping:?}").hash(&mut settings);
        let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
        Some(
            PathBuf::from(dir)
                .join("artifacts")
                .join(format!("{name}-{:016x}.cwasm", settings.finish())),
        )
    }

    /// Compiles to a serialized module (what `Wasmex.Engine.precompile_module/2` returns).
    pub fn precompile(&self, bytes: &[u8], cancelled: &dyn Fn() -> bool) -> Fallible<Vec<u8>> {
        match &self.child {
            Some(exe) if bytes.len() > INLINE_LIMIT => self.run_child(exe, bytes, cancelled),
            _ => module::serialize(&module::compile(&self.engine, bytes)?),
        }
    }

    fn run_child(
        &self,
        exe: &PathBuf,
        bytes: &[u8],
        cancelled: &dyn Fn() -> bool,
    ) -> Fallible<Vec<u8>> {
        let mut child = Command::new(exe)
            .arg("--compile")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a compiler process: {e}"))?;
        let mut input = crate::frame::encode_frame(&self.options.to_term());
        input.extend_from_slice(bytes);
        let mut stdin = child.stdin.take().ok_or("compiler process has no stdin")?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err("compiler process has no output".into());
        };
        // The child reads all its input before it writes, so feeding it first is safe; the
        // output is collected on another thread so that this one can watch the clock.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let written = stdin.write_all(&input);
            drop(stdin);
            let mut out = Vec::new();
            let mut err = String::new();
            let read = stdout
                .read_to_end(&mut out)
                .and_then(|_| stderr.read_to_string(&mut err))
                .map(|_| ());
            let _ = tx.send((written.and(read), out, err));
        });
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let (io, out, err) = loop {
            match rx.recv_timeout(POLL) {
                Ok(result) => break result,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break (Ok(()), Vec::new(), String::new())
                }
            }
            let stop = if cancelled() {
                Some("compilation cancelled: the caller stopped waiting".to_string())
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                let ms = self.timeout.map_or(0, |t| t.as_millis());
                Some(format!("Could not compile module: compilation did not finish within {ms} ms and was stopped"))
            } else {
                None
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

/// Writes an artifact next to its final name and renames it there, so that a reader never
/// sees half a file. Best effort: without it the module is only compiled again next time.
fn keep_artifact(path: &std::path::Path, artifact: &[u8]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let staging = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&staging, artifact).is_ok() && std::fs::rename(&staging, path).is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    trim_artifacts(dir, MAX_ARTIFACTS);
}

/// How many artifact files the cache keeps; the oldest go first.
const MAX_ARTIFACTS: usize = 256;

fn trim_artifacts(dir: &std::path::Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    for (_, path) in &files[..files.len() - keep] {
        let _ = std::fs::remove_file(path);
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
mod tests {
    use super::*;

    #[test]
    fn engine_options_round_trip_through_terms() {
        let options = EngineOptions {
            consume_fuel: true,
            opt_level: Some(wasmtime::OptLevel::SpeedAndSize),
            backtrace_details: true,
            cache_dir: Some("/tmp/x".into()),
            compact_memories: true,
            spin_us: 0,
            serial_compilation: false,
            // A compile child never instantiates: it gets no pool.
            instance_slots: None,
            features: crate::engine::Features {
                memory64: true,
                debug_info: false,
                component_model: true,
            },
        };
        assert_eq!(
            EngineOptions::from_term(&options.to_term()).unwrap(),
            options
        );
    }

    #[test]
    fn a_child_compile_of_bad_input_is_an_error() {
        assert!(child_compile(b"").is_err());
        let mut input = crate::frame::encode_frame(&EngineOptions::default().to_term());
        input.extend_from_slice(b"(modul");
        assert!(child_compile(&input)
            .unwrap_err()
            .starts_with("Error while parsing bytes"));
    }

    #[test]
    fn a_child_compile_produces_an_artifact_the_same_engine_loads() {
        let options = EngineOptions::default();
        let mut input = crate::frame::encode_frame(&options.to_term());
        input.extend_from_slice(b"(module (func (export \"f\")))");
        let artifact = child_compile(&input).unwrap();
        assert!(module::deserialize(&options.build().unwrap(), &artifact).is_ok());
    }
}

#[cfg(test)]
mod artifact_tests {
    use super::*;

    #[test]
    fn the_artifact_directory_keeps_the_newest_files() {
        let dir = std::env::temp_dir().join(format!("wasmex-trim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..5u64 {
            let path = dir.join(format!("{i}.cwasm"));
            std::fs::write(&path, b"x").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(base + std::time::Duration::from_secs(i))
                .unwrap();
        }
        trim_artifacts(&dir, 2);
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(left, vec!["3.cwasm", "4.cwasm"]);
    }

    #[test]
    fn an_artifact_has_one_name_for_given_settings() {
        let options = EngineOptions {
            cache_dir: Some("/tmp/c".into()),
            ..EngineOptions::default()
        };
        let compiler = Compiler::new(options.build().unwrap(), options, None, None);
        let names: std::collections::HashSet<_> =
            (0..20).map(|_| compiler.artifact_path(b"k")).collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn the_parent_engine_maps_an_artifact_of_the_child_engine() {
        let child = EngineOptions::default();
        let parent = EngineOptions {
            serial_compilation: true,
            cache_dir: None,
            ..child.clone()
        };
        let artifact = module::serialize(
            &module::compile(&child.build().unwrap(), b"(module (func (export \"f\")))").unwrap(),
        )
        .unwrap();
        let path =
            std::env::temp_dir().join(format!("wasmex-artifact-test-{}.cwasm", std::process::id()));
        keep_artifact(&path, &artifact);
        let loaded = unsafe { Module::deserialize_file(&parent.build().unwrap(), &path) };
        let _ = std::fs::remove_file(&path);
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }
}
