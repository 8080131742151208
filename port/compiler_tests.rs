//! The compiler: engine options through terms, compile children's input, output and
//! messages, and the compile timeout.

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

/// The options a compile child would read from `input`.
fn options_in(input: &[u8]) -> EngineOptions {
    let mut reader = input;
    let Ok(Some(crate::frame::Frame::Data(payload))) = crate::frame::read_frame(&mut reader) else {
        panic!("no options frame");
    };
    EngineOptions::from_term(&Term::decode(&payload[..]).unwrap()).unwrap()
}

#[test]
fn a_child_gets_the_wasmtime_cache_only_when_asked() {
    let options = EngineOptions {
        cache_dir: Some("/tmp/x".into()),
        ..EngineOptions::default()
    };
    let engine = options.build().unwrap();
    let compiler = Compiler::new(engine, options.clone(), None, None);
    let with = compiler.child_input(b"wasm", true);
    let without = compiler.child_input(b"wasm", false);
    assert_eq!(options_in(&with), options);
    assert_eq!(options_in(&without).cache_dir, None);
    assert!(without.ends_with(b"wasm"));
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
fn a_message_is_kept_whole_up_to_the_cap() {
    let text = "e".repeat(MAX_MESSAGE);
    assert_eq!(read_message(&mut text.as_bytes()), text);
}

#[test]
fn a_longer_message_is_read_to_its_end_and_cut_at_the_cap() {
    let text = "e".repeat(MAX_MESSAGE + 10);
    let mut input = text.as_bytes();
    let message = read_message(&mut input);
    assert_eq!(
        (
            message.len(),
            message.ends_with("... (10 more bytes)"),
            input.len()
        ),
        (MAX_MESSAGE + "... (10 more bytes)".len(), true, 0)
    );
}

#[test]
fn the_timeout_counts_from_when_the_compile_was_asked_for() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("wasmex-slow-child-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("slow");
    std::fs::write(&exe, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let timeout = Duration::from_secs(5);
    let compiler = Compiler::new(
        Engine::default(),
        EngineOptions::default(),
        Some(exe),
        Some(timeout),
    );
    // Asked for longer ago than the timeout (its source took that long to come): the
    // child is stopped at once, not a whole timeout after it started.
    let waiter = Waiter {
        asked: Instant::now() - timeout,
        cancelled: &|| false,
    };
    let started = Instant::now();
    let result = compiler.precompile(&[0; INLINE_LIMIT + 1], &waiter);
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (result.unwrap_err(), took < timeout),
        (
            "Could not compile module: compilation did not finish within 5000 ms and was stopped \
             (raise it with compile_timeout: of Wasmex.Engine.new/2, or config :wasmex, \
             compile_timeout: for stores without an engine)"
                .to_string(),
            true
        )
    );
}

#[test]
fn a_child_compile_produces_an_artifact_the_same_engine_loads() {
    let options = EngineOptions::default();
    let mut input = crate::frame::encode_frame(&options.to_term());
    input.extend_from_slice(b"(module (func (export \"f\")))");
    let artifact = child_compile(&input).unwrap();
    assert!(module::deserialize(&options.build().unwrap(), &artifact).is_ok());
}

fn leb(mut n: u32, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len() as u32, out);
    out.extend(body);
}

/// A module of `functions` functions of no params, each declaring `locals` i32 locals.
pub(super) fn many_locals(functions: u32, locals: u32) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, vec![1, 0x60, 0, 0], &mut module);
    let mut funcs = Vec::new();
    leb(functions, &mut funcs);
    funcs.resize(funcs.len() + functions as usize, 0);
    section(3, funcs, &mut module);
    let mut body = vec![1];
    leb(locals, &mut body);
    body.extend([0x7f, 0x0b]);
    let mut code = Vec::new();
    leb(functions, &mut code);
    for _ in 0..functions {
        leb(body.len() as u32, &mut code);
        code.extend(&body);
    }
    section(10, code, &mut module);
    module
}

#[test]
fn a_small_module_with_few_locals_compiles_in_process() {
    let module = many_locals(10, 100);
    assert!(module::compile(&Engine::default(), &module).is_ok());
    assert!(inline(&module));
}

#[test]
fn a_small_module_declaring_many_locals_compiles_in_a_child() {
    let module = many_locals(500, 50_000);
    assert_eq!(
        (module.len() <= INLINE_LIMIT, inline(&module)),
        (true, false)
    );
}

#[test]
fn small_text_with_few_locals_compiles_in_process() {
    assert!(inline(b"(module (func (local i32 i64) (nop)))"));
}

#[test]
fn small_input_that_does_not_parse_compiles_in_process_which_names_its_fault() {
    assert!(inline(b"\0asm\x01\0\0\0\x0a\xff"));
}
