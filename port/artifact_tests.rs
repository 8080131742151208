use super::*;
use crate::compiler::Waiter;
use crate::module;

/// A fresh cache directory for one test.
fn cache_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmex-artifact-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(dir: &Path) -> EngineOptions {
    EngineOptions {
        cache_dir: Some(dir.to_string_lossy().into_owned()),
        ..EngineOptions::default()
    }
}

const SEVEN: &[u8] = b"(module (func (export \"f\") (result i32) i32.const 7))";
const EIGHT: &[u8] = b"(module (func (export \"f\") (result i32) i32.const 8))";

fn artifact_of(options: &EngineOptions, source: &[u8]) -> Vec<u8> {
    let engine = options.build().unwrap();
    module::serialize(&module::compile(&engine, source).unwrap()).unwrap()
}

/// The result of `f` in a fresh instance of `module`.
fn run_f(engine: &Engine, module: &Module) -> i32 {
    let mut store = wasmtime::Store::new(engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let _ = store.set_fuel(u64::MAX);
    let instance = wasmtime::Instance::new(&mut store, module, &[]).unwrap();
    let f = instance.get_typed_func::<(), i32>(&mut store, "f").unwrap();
    f.call(&mut store, ()).unwrap()
}

#[test]
fn a_kept_artifact_loads_for_its_key_and_runs() {
    let dir = cache_dir("kept");
    let options = options(&dir);
    let cache = ArtifactCache::new(options.cache_dir.as_deref().unwrap(), &options);
    let key = ModuleKey::of("wasm", SEVEN);
    cache.keep(&key, &artifact_of(&options, SEVEN));
    let engine = options.build().unwrap();
    let loaded = cache.load(&engine, &key).expect("the artifact loads");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run_f(&engine, &loaded), 7);
}

#[test]
fn an_artifact_filed_under_another_modules_key_is_not_loaded() {
    let dir = cache_dir("swapped");
    let options = options(&dir);
    let cache = ArtifactCache::new(options.cache_dir.as_deref().unwrap(), &options);
    let (seven, eight) = (ModuleKey::of("wasm", SEVEN), ModuleKey::of("wasm", EIGHT));
    cache.keep(&seven, &artifact_of(&options, SEVEN));
    // The file of one module under the name of another: what a key collision, or anyone
    // writing the directory, would produce.
    std::fs::rename(cache.path(&seven), cache.path(&eight)).unwrap();
    let loaded = cache.load(&options.build().unwrap(), &eight);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.is_none());
}

#[test]
fn an_artifact_of_other_engine_settings_is_not_loaded() {
    let dir = cache_dir("settings");
    let plain = options(&dir);
    let fueled = EngineOptions {
        consume_fuel: true,
        ..plain.clone()
    };
    let dir_str = plain.cache_dir.clone().unwrap();
    let (plain_cache, fueled_cache) = (
        ArtifactCache::new(&dir_str, &plain),
        ArtifactCache::new(&dir_str, &fueled),
    );
    let key = ModuleKey::of("wasm", SEVEN);
    plain_cache.keep(&key, &artifact_of(&plain, SEVEN));
    std::fs::copy(plain_cache.path(&key), fueled_cache.path(&key)).unwrap();
    let loaded = fueled_cache.load(&fueled.build().unwrap(), &key);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.is_none());
}

#[test]
fn a_file_without_a_trailer_from_an_older_version_is_not_loaded() {
    let dir = cache_dir("old");
    let options = options(&dir);
    let cache = ArtifactCache::new(options.cache_dir.as_deref().unwrap(), &options);
    let key = ModuleKey::of("wasm", SEVEN);
    std::fs::create_dir_all(&cache.dir).unwrap();
    // A bare artifact, valid for this engine, as older versions wrote them.
    std::fs::write(cache.path(&key), artifact_of(&options, SEVEN)).unwrap();
    let loaded = cache.load(&options.build().unwrap(), &key);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.is_none());
}

#[test]
fn a_file_cut_short_is_not_loaded() {
    let dir = cache_dir("short");
    let options = options(&dir);
    let cache = ArtifactCache::new(options.cache_dir.as_deref().unwrap(), &options);
    let key = ModuleKey::of("wasm", SEVEN);
    cache.keep(&key, &artifact_of(&options, SEVEN));
    let whole = std::fs::read(cache.path(&key)).unwrap();
    std::fs::write(cache.path(&key), &whole[..whole.len() - 1]).unwrap();
    let loaded = cache.load(&options.build().unwrap(), &key);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.is_none());
}

#[test]
fn an_artifact_has_one_name_for_given_settings_and_key() {
    let options = options(Path::new("/tmp/c"));
    let key = ModuleKey::of("wasm", SEVEN);
    let names: std::collections::HashSet<_> = (0..20)
        .map(|_| ArtifactCache::new("/tmp/c", &options).path(&key))
        .collect();
    assert_eq!(names.len(), 1);
}

/// A fresh directory of `sizes.len()` files `0.cwasm`, `1.cwasm`, ... of those sizes, each
/// used a second after the one before.
fn files_used_in_order(name: &str, sizes: &[usize]) -> PathBuf {
    let dir = cache_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, size) in sizes.iter().enumerate() {
        let path = dir.join(format!("{i}.cwasm"));
        std::fs::write(&path, vec![0u8; *size]).unwrap();
        used_at(&path, i as u64);
    }
    dir
}

fn used_at(path: &Path, second: u64) {
    let base = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(base + std::time::Duration::from_secs(second))
        .unwrap();
}

fn left_in(dir: &Path) -> Vec<String> {
    let mut left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let _ = std::fs::remove_dir_all(dir);
    left
}

#[test]
fn the_directory_keeps_the_most_recently_used_files() {
    let dir = files_used_in_order("trim", &[1, 1, 1, 1, 1]);
    trim(&dir, 2, u64::MAX);
    assert_eq!(left_in(&dir), vec!["3.cwasm", "4.cwasm"]);
}

#[test]
fn the_directory_keeps_no_more_bytes_than_its_bound() {
    let dir = files_used_in_order("trim-bytes", &[100, 100, 100, 100]);
    trim(&dir, 100, 250);
    assert_eq!(left_in(&dir), vec!["2.cwasm", "3.cwasm"]);
}

#[test]
fn the_most_recent_file_stays_even_past_the_byte_bound() {
    let dir = files_used_in_order("trim-big", &[10, 1000]);
    trim(&dir, 100, 500);
    assert_eq!(left_in(&dir), vec!["1.cwasm"]);
}

#[test]
fn loading_an_artifact_makes_it_the_last_to_go() {
    let dir = cache_dir("lru");
    let options = options(&dir);
    let engine = options.build().unwrap();
    let cache = ArtifactCache::new(dir.to_str().unwrap(), &options);
    let (seven, eight) = (ModuleKey::of("wasm", SEVEN), ModuleKey::of("wasm", EIGHT));
    cache.keep(&seven, &artifact_of(&options, SEVEN));
    cache.keep(&eight, &artifact_of(&options, EIGHT));
    let artifacts = dir.join("artifacts");
    used_at(&cache.path(&seven), 1);
    used_at(&cache.path(&eight), 2);
    assert!(cache.load(&engine, &seven).is_some());
    trim(&artifacts, 1, u64::MAX);
    let seven_name = cache
        .path(&seven)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(left_in(&artifacts), vec![seven_name]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_parent_engine_maps_an_artifact_of_the_child_engine() {
    let dir = cache_dir("parent");
    let child = options(&dir);
    let parent = EngineOptions {
        serial_compilation: true,
        ..child.clone()
    };
    let key = ModuleKey::of("wasm", SEVEN);
    ArtifactCache::new(&child.cache_dir.clone().unwrap(), &child)
        .keep(&key, &artifact_of(&child, SEVEN));
    let loaded = ArtifactCache::new(&parent.cache_dir.clone().unwrap(), &parent)
        .load(&parent.build().unwrap(), &key);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.is_some());
}

#[test]
fn a_module_sent_by_key_alone_is_mapped_from_its_artifact() {
    let dir = cache_dir("by-key");
    let options = options(&dir);
    let key = ModuleKey::of("wasm", SEVEN);
    ArtifactCache::new(options.cache_dir.as_deref().unwrap(), &options)
        .keep(&key, &artifact_of(&options, SEVEN));
    let engine = options.build().unwrap();
    let compiler = crate::compiler::Compiler::new(engine.clone(), options, None, None);
    let loaded = module::load(
        &compiler,
        key.as_bytes(),
        &crate::term::nil(),
        &Waiter::now(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(run_f(&engine, &loaded.unwrap()), 7);
}

#[test]
fn a_module_sent_by_key_alone_without_an_artifact_asks_for_its_source() {
    let dir = cache_dir("by-key-miss");
    let options = options(&dir);
    let key = ModuleKey::of("wasm", EIGHT);
    let compiler = crate::compiler::Compiler::new(options.build().unwrap(), options, None, None);
    let loaded = module::load(
        &compiler,
        key.as_bytes(),
        &crate::term::nil(),
        &Waiter::now(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(loaded.err().as_deref(), Some(module::NOT_LOADED));
}

#[test]
fn a_kept_component_loads_for_its_key_and_a_module_artifact_does_not() {
    let dir = cache_dir("component");
    let mut options = options(&dir);
    options.features.component_model = true;
    let cache = ArtifactCache::new(options.cache_dir.as_deref().unwrap(), &options);
    let engine = options.build().unwrap();
    let bytes = crate::component::testing::fixture_bytes("spin.wasm");
    let component = crate::component::load::component(&engine, &bytes).unwrap();
    let key = ModuleKey::of("component", &bytes);
    assert!(cache.load_component(&engine, &key).is_none());
    cache.keep(&key, &component.serialize().unwrap());
    assert!(cache.load_component(&engine, &key).is_some());
    // A module's artifact under a component's key proves nothing.
    let other = ModuleKey::of("component", b"other bytes");
    cache.keep(&key, &artifact_of(&options, SEVEN));
    assert!(cache.load_component(&engine, &key).is_none());
    assert!(cache.load_component(&engine, &other).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
