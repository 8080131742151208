//! The on-disk cache of compiled modules: `<cache_dir>/artifacts/<key>-<settings>.cwasm`.
//!
//! A host that needs a large module another host (or an earlier run) compiled maps the
//! artifact instead of compiling it again. Loading an artifact runs its code, so a file
//! must prove what it is before it is loaded: each one ends with a trailer holding the
//! module's key (the SHA-256 of its source, `module_key.rs`), the digest of the engine
//! settings that shaped the code, and the artifact's length. A file whose trailer does not
//! match the bytes and the engine it is loaded for (one of another module, of other
//! settings, cut short, or written by an older version without a trailer) is ignored, and
//! the module is compiled again and the file replaced.

use crate::engine::EngineOptions;
use crate::module_key::{hex, ModuleKey};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use wasmtime::{Engine, Module};

/// Marks a trailer of this format; a file without it is not loaded.
const MAGIC: &[u8; 8] = b"wasmexA2";
/// Magic, module key, settings digest, artifact length (u64, little-endian).
const TRAILER_LEN: usize = 8 + 32 + 32 + 8;

/// How many artifact files the cache keeps, and how many bytes they may take together
/// (the newest file is kept whatever its size); the least recently used go first.
pub const MAX_ARTIFACTS: usize = 256;
pub const MAX_ARTIFACT_BYTES: u64 = 2 << 30;

pub struct ArtifactCache {
    dir: PathBuf,
    settings: [u8; 32],
}

impl ArtifactCache {
    pub fn new(cache_dir: &str, options: &EngineOptions) -> ArtifactCache {
        ArtifactCache {
            dir: Path::new(cache_dir).join("artifacts"),
            settings: settings_digest(options),
        }
    }

    fn path(&self, key: &ModuleKey) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", key.hex(), hex(&self.settings[..8])))
    }

    /// The cached module of `key`, if a file proves it holds that module compiled with
    /// this engine's settings.
    pub fn load(&self, engine: &Engine, key: &ModuleKey) -> Option<Module> {
        let mut file = File::open(self.path(key)).ok()?;
        if !self.proves(&mut file, key) {
            return None;
        }
        // Used now: the cache drops the least recently used files first (see `trim`).
        let _ = file.set_modified(std::time::SystemTime::now());
        // SAFETY: the file was written by `keep` for exactly these bytes and settings (its
        // trailer says so), in the user's own cache directory; wasmtime checks the artifact
        // against this engine as well. The mapping is made from the same open file that was
        // checked, and writers never change a file in place (they rename a new one over it).
        unsafe { Module::deserialize_open_file(engine, file) }.ok()
    }

    /// The cached component of `key` (the digest of `"component"` and its bytes), under
    /// the same proof as a module. Read into memory, then deserialized: components are
    /// small, and the bytes read are the bytes checked.
    pub fn load_component(
        &self,
        engine: &Engine,
        key: &ModuleKey,
    ) -> Option<wasmtime::component::Component> {
        let mut file = File::open(self.path(key)).ok()?;
        if !self.proves(&mut file, key) {
            return None;
        }
        let _ = file.set_modified(std::time::SystemTime::now());
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        bytes.truncate(bytes.len().checked_sub(TRAILER_LEN)?);
        // SAFETY: as for `load`: the trailer proves the file was written by `keep` for this
        // key and these settings; wasmtime checks the artifact against the engine too.
        unsafe { wasmtime::component::Component::deserialize(engine, &bytes) }.ok()
    }

    fn proves(&self, file: &mut File, key: &ModuleKey) -> bool {
        let Ok(len) = file.metadata().map(|m| m.len()) else {
            return false;
        };
        let Some(artifact_len) = len.checked_sub(TRAILER_LEN as u64) else {
            return false;
        };
        let mut found = [0u8; TRAILER_LEN];
        let read = file
            .seek(SeekFrom::Start(artifact_len))
            .and_then(|_| file.read_exact(&mut found))
            .and_then(|_| file.rewind());
        read.is_ok() && found == trailer(key, &self.settings, artifact_len)
    }

    /// Keeps `artifact`, the compiled module of `key`. Best effort: without the file the
    /// module is only compiled again next time.
    pub fn keep(&self, key: &ModuleKey, artifact: &[u8]) {
        let path = self.path(key);
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let mut contents = Vec::with_capacity(artifact.len() + TRAILER_LEN);
        contents.extend_from_slice(artifact);
        contents.extend_from_slice(&trailer(key, &self.settings, artifact.len() as u64));
        write_atomically(&path, &contents);
        trim(&self.dir, MAX_ARTIFACTS, MAX_ARTIFACT_BYTES);
    }
}

fn trailer(key: &ModuleKey, settings: &[u8; 32], artifact_len: u64) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..8].copy_from_slice(MAGIC);
    t[8..40].copy_from_slice(key.as_bytes());
    t[40..72].copy_from_slice(settings);
    t[72..].copy_from_slice(&artifact_len.to_le_bytes());
    t
}

/// The digest of what shapes compiled code: the engine settings (not where files go, nor
/// how threads wait or how many instance slots there are) and this program's version.
fn settings_digest(options: &EngineOptions) -> [u8; 32] {
    let shaping = EngineOptions {
        cache_dir: None,
        spin_us: 0,
        serial_compilation: false,
        instance_slots: None,
        ..options.clone()
    };
    // The Debug form, not the term: a term holds a map, whose encoding order can change.
    let text = format!("wasmex_port {} {shaping:?}", env!("CARGO_PKG_VERSION"));
    Sha256::digest(text.as_bytes()).into()
}

/// Writes next to the final name and renames there, so that a reader never sees half a
/// file and a file never changes once written.
fn write_atomically(path: &Path, contents: &[u8]) {
    let staging = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&staging, contents).is_err() || std::fs::rename(&staging, path).is_err() {
        let _ = std::fs::remove_file(&staging);
    }
}

/// Removes the least recently used files (by modification time: `load` sets it) beyond
/// `max_files` files or `max_bytes` bytes; the most recent file stays, whatever its size.
fn trim(dir: &Path, max_files: usize, max_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let metadata = e.metadata().ok()?;
            Some((metadata.modified().ok()?, metadata.len(), e.path()))
        })
        .collect();
    // Newest first.
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut kept_bytes = 0u64;
    for (i, (_, len, path)) in files.iter().enumerate() {
        kept_bytes = kept_bytes.saturating_add(*len);
        if i > 0 && (i >= max_files || kept_bytes > max_bytes) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
#[path = "artifact_tests.rs"]
mod tests;
