//! Compiling component bytes, with errors that say what is wrong with them: a core module
//! passed where a component belongs, truncated bytes, text that does not parse.

use std::fmt;
use wasmtime::component::Component;
use wasmtime::Engine;

const MAGIC: &[u8; 4] = b"\0asm";
/// The version and layer fields after the magic: core modules are version 1, layer 0;
/// components are version 0x0d, layer 1.
const CORE_MODULE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_LAYER: [u8; 2] = [0x01, 0x00];

/// Why bytes are not a component that can be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    Empty,
    CoreModule,
    Truncated(String),
    /// A Wasm binary of some other version or layer.
    UnknownBinary([u8; 4]),
    /// Neither a Wasm binary nor the text format.
    NotWasm,
    /// The text format did not parse.
    Text(String),
    /// wasmtime refused the component (validation, unsupported features).
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Empty => f.write_str("the bytes are empty, not a component"),
            LoadError::CoreModule => f.write_str(
                "the bytes are a core module, not a component: \
                 compile them with Wasmex.Module.compile/2",
            ),
            LoadError::Truncated(cause) => write!(f, "the component is truncated: {cause}"),
            LoadError::UnknownBinary(v) => write!(
                f,
                "the bytes are a WebAssembly binary of version/layer {v:02x?}, not a component"
            ),
            LoadError::NotWasm => f.write_str(
                "the bytes are not a component: they start neither with \\0asm nor with text",
            ),
            LoadError::Text(cause) => write!(f, "the component text does not parse: {cause}"),
            LoadError::Invalid(cause) => write!(f, "invalid component: {cause}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Compiles `bytes` (the binary or text format of a component) for `engine`.
pub fn component(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    let binary = binary(bytes)?;
    check_header(&binary)?;
    Component::from_binary(engine, &binary).map_err(|e| {
        let cause = format!("{e:#}");
        // wasmparser reports a cut-off body as an end-of-file, or as a section that
        // reaches past the end of the bytes.
        if cause.contains("unexpected end-of-file") || cause.contains("out of bounds (bound =") {
            LoadError::Truncated(cause)
        } else {
            LoadError::Invalid(cause)
        }
    })
}

/// Checks `bytes` as `component` does before compiling (empty, a core module, a short
/// header, text that does not parse), without compiling them.
pub fn check(bytes: &[u8]) -> Result<(), LoadError> {
    check_header(&binary(bytes)?)
}

/// Whether `bytes` are a component in the binary format (what a compile child is given
/// after `check`: text is parsed there too, so it is tried as text otherwise).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) && bytes.len() >= 8 && bytes[6..8] == COMPONENT_LAYER
        || (!bytes.starts_with(MAGIC) && check(bytes).is_ok())
}

/// The binary format of `bytes`: themselves, or the text format parsed.
fn binary(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if bytes.starts_with(MAGIC) || MAGIC.starts_with(bytes) {
        return Ok(bytes.into());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| LoadError::NotWasm)?;
    wat::parse_str(text)
        .map(Into::into)
        .map_err(|e| LoadError::Text(e.to_string()))
}

/// Tells a core module and a short header from a component before wasmtime parses it.
fn check_header(binary: &[u8]) -> Result<(), LoadError> {
    if binary.len() < 8 {
        return Err(LoadError::Truncated(format!(
            "{} bytes, shorter than the 8-byte header",
            binary.len()
        )));
    }
    let version: [u8; 4] = [binary[4], binary[5], binary[6], binary[7]];
    if version == CORE_MODULE {
        return Err(LoadError::CoreModule);
    }
    if version[2..] != COMPONENT_LAYER {
        return Err(LoadError::UnknownBinary(version));
    }
    Ok(())
}
