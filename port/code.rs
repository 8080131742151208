//! A module's code: compiled from Wasm or WAT, serialized to an artifact and back. Used by
//! the compiler (in this process or a compile child) and by the module registry.

use crate::engine::explain_pool_limit;
use crate::term::Fallible;
use wasmtime::{Engine, Module};

pub fn compile(engine: &Engine, bytes: &[u8]) -> Fallible<Module> {
    let wasm = wat::parse_bytes(bytes).map_err(|e| format!("Error while parsing bytes: {e}."))?;
    Module::from_binary(engine, &wasm)
        .map_err(|e| explain_pool_limit(format!("Could not compile module: {e:#}")))
}

pub fn deserialize(engine: &Engine, bytes: &[u8]) -> Fallible<Module> {
    if Engine::detect_precompiled(bytes).is_none() {
        return Err(
            "Could not deserialize module: the bytes are not a serialized module".to_string(),
        );
    }
    // SAFETY: the artifact is checked by wasmtime for its format and engine settings;
    // like Wasmex's `unsafe_deserialize`, callers promise it came from `serialize`.
    unsafe { Module::deserialize(engine, bytes) }
        .map_err(|e| explain_pool_limit(format!("Could not deserialize module: {e:#}")))
}

pub fn serialize(module: &Module) -> Fallible<Vec<u8>> {
    module
        .serialize()
        .map_err(|e| format!("Could not serialize module: {e:#}"))
}
