//! `load::component`: what it accepts, and the error for each kind of wrong bytes.

use super::load::{component, LoadError};
use super::testing::{engine, fixture_bytes};

#[test]
fn compiles_a_component_binary_and_component_text() {
    let engine = engine();
    assert!(component(&engine, &fixture_bytes("types.wasm")).is_ok());
    let text = "(component (core module $m) (core instance (instantiate $m)))";
    assert!(component(&engine, text.as_bytes()).is_ok());
}

#[test]
fn a_core_module_is_not_a_component() {
    let engine = engine();
    let core = wat::parse_str("(module (func (export \"f\")))").expect("valid wat");
    let err = component(&engine, &core).unwrap_err();
    assert_eq!(err, LoadError::CoreModule);
    assert_eq!(
        err.to_string(),
        "the bytes are a core module, not a component: compile them with Wasmex.Module.compile/2"
    );
    let text = component(&engine, b"(module)").unwrap_err();
    assert_eq!(text, LoadError::CoreModule, "also in the text format");
}

#[test]
fn truncated_bytes_say_so() {
    let engine = engine();
    let bytes = fixture_bytes("types.wasm");
    let err = component(&engine, &bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, LoadError::Truncated(_)), "{err}");
    assert!(
        err.to_string().starts_with("the component is truncated: "),
        "{err}"
    );
    assert_eq!(
        component(&engine, &bytes[..6]).unwrap_err().to_string(),
        "the component is truncated: 6 bytes, shorter than the 8-byte header"
    );
    assert!(matches!(
        component(&engine, b"\0as"),
        Err(LoadError::Truncated(_))
    ));
}

#[test]
fn other_bytes_are_refused_with_what_they_are() {
    let engine = engine();
    assert_eq!(component(&engine, b"").unwrap_err(), LoadError::Empty);
    assert_eq!(
        component(&engine, &[0xff, 0x00, 0x12]).unwrap_err(),
        LoadError::NotWasm
    );
    let err = component(&engine, b"(component (oops))").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the component text does not parse: "),
        "{err}"
    );
    let err = component(&engine, b"\0asm\x0d\0\x02\0").unwrap_err();
    assert_eq!(err, LoadError::UnknownBinary([0x0d, 0, 2, 0]));
    // A valid header with a body that is not a valid component.
    let mut bad = b"\0asm\x0d\0\x01\0".to_vec();
    bad.extend_from_slice(&[0x7f, 0x01, 0x00]);
    assert!(matches!(
        component(&engine, &bad),
        Err(LoadError::Invalid(_))
    ));
}

#[test]
fn check_names_what_the_bytes_are_without_compiling() {
    use super::load::{check, is_component, LoadError};
    let types = super::testing::fixture_bytes("types.wasm");
    assert_eq!(check(&types), Ok(()));
    assert!(is_component(&types));
    assert!(is_component(b"(component)"));
    assert!(!is_component(b"(module)"));
    assert_eq!(check(b"(module)"), Err(LoadError::CoreModule));
    assert!(matches!(check(&types[..6]), Err(LoadError::Truncated(_))));
}
