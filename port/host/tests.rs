//! The dispatcher driven frame by frame, as the stdin reader drives it.

use super::*;
use crate::term;
use eetf::Term;
use std::sync::mpsc::Receiver;
use std::time::Duration;

pub(super) fn host() -> (Host, Receiver<Vec<u8>>) {
    let (outbox, rx) = Outbox::channel();
    (Host::new(outbox), rx)
}

fn encode(t: &Term) -> Vec<u8> {
    let mut v = Vec::new();
    t.encode(&mut v).unwrap();
    v
}

pub(super) fn request(id: i64, op: &str, args: Vec<Term>) -> Vec<u8> {
    encode(&term::tuple(vec![
        term::int(id),
        term::atom(op),
        term::tuple(args),
    ]))
}

/// The next reply as `(Id, Result)` (events in between are skipped).
pub(super) fn next_reply(rx: &Receiver<Vec<u8>>) -> (u64, Result<Term, String>) {
    let t = loop {
        let frame = rx.recv_timeout(Duration::from_secs(10)).expect("a reply");
        let t = Term::decode(&frame[4..]).unwrap();
        if matches!(&t, Term::Tuple(tp) if term::as_atom(&tp.elements[0]) == Some("reply")) {
            break t;
        }
    };
    let parts = term::as_tuple(&t, 3, "reply").unwrap();
    assert_eq!(term::as_atom(&parts[0]), Some("reply"));
    let id = term::as_u64(&parts[1], "id").unwrap();
    let result = term::as_tuple(&parts[2], 2, "result").unwrap();
    // A failure while Wasm ran is `{trap, Message}`: read as its message, as the BEAM does.
    let reason = match &result[1] {
        Term::Tuple(t) if term::as_atom(&t.elements[0]) == Some("trap") => &t.elements[1],
        other => other,
    };
    match term::as_atom(&result[0]) {
        Some("ok") => (id, Ok(result[1].clone())),
        _ => (id, Err(term::as_str(reason, "reason").unwrap().to_string())),
    }
}

pub(super) fn init(host: &mut Host, rx: &Receiver<Vec<u8>>) {
    host.handle_payload(&request(1, "init", vec![term::map(vec![])]));
    let (id, bulk) = next_reply(rx);
    assert_eq!(id, 1);
    // The shared buffer's `{Fd, Size}`.
    let bulk = bulk.unwrap();
    assert_eq!(
        term::as_tuple(&bulk, 2, "bulk").unwrap()[1],
        term::uint(crate::bulk::SIZE as u64)
    );
}

/// Makes a store (request 2) and instantiates `wat` in it with `imports` (request 3):
/// the store's and the instance's ids.
pub(super) fn store_with_instance(
    host: &mut Host,
    rx: &Receiver<Vec<u8>>,
    wat: &[u8],
    imports: Vec<Term>,
) -> (Term, Term) {
    host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
    let store = next_reply(rx).1.unwrap();
    let source = term::tuple(vec![term::atom("wasm"), term::binary(wat.to_vec())]);
    let args = vec![
        store.clone(),
        key_of(wat),
        source,
        term::binary(vec![]),
        term::list(imports),
        term::list(vec![]),
        term::int(1000),
    ];
    host.handle_payload(&request(3, "instantiate", args));
    (store, next_reply(rx).1.unwrap())
}

#[test]
fn garbage_gets_an_error_reply_with_id_zero() {
    let (mut host, rx) = host();
    host.handle_payload(b"\x00\x01garbage");
    let (id, result) = next_reply(&rx);
    assert_eq!(id, 0);
    assert!(result.unwrap_err().starts_with("malformed frame"));
}

#[test]
fn a_truncated_term_gets_an_error_reply() {
    let (mut host, rx) = host();
    let full = request(5, "init", vec![term::map(vec![])]);
    host.handle_payload(&full[..full.len() - 3]);
    assert!(next_reply(&rx)
        .1
        .unwrap_err()
        .starts_with("malformed frame"));
}

#[test]
fn requests_before_init_are_refused() {
    let (mut host, rx) = host();
    host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
    assert_eq!(
        next_reply(&rx),
        (
            2,
            Err("the host is not initialised: send init first".into())
        )
    );
}

#[test]
fn an_unknown_op_names_what_was_expected() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    host.handle_payload(&request(3, "frobnicate", vec![term::atom("x")]));
    let (id, result) = next_reply(&rx);
    assert_eq!(id, 3);
    assert!(result.unwrap_err().starts_with("expected a store id"));
}

#[test]
fn wrong_shapes_and_unknown_stores_get_errors_and_the_host_keeps_serving() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    host.handle_payload(&request(4, "module_compile", vec![term::int(1)]));
    assert_eq!(
        next_reply(&rx),
        (4, Err("module_compile expects 2 arguments, got 1".into()))
    );
    host.handle_payload(&request(5, "call", vec![term::int(99), term::int(0)]));
    assert_eq!(next_reply(&rx), (5, Err("unknown store 99".into())));
    host.handle_payload(&request(
        6,
        "module_compile",
        vec![term::binary(vec![1]), term::atom("wasm")],
    ));
    assert!(next_reply(&rx)
        .1
        .unwrap_err()
        .starts_with("module source must be"));

    host.handle_payload(&request(7, "store_new", vec![term::nil(), term::nil()]));
    assert_eq!(next_reply(&rx), (7, Ok(term::uint(1))));
    host.handle_payload(&request(
        8,
        "call",
        vec![
            term::int(1),
            term::int(0),
            term::string("f"),
            term::list(vec![]),
            term::int(100),
        ],
    ));
    assert_eq!(next_reply(&rx), (8, Err("unknown instance 0".into())));
}

#[test]
fn a_store_op_with_wrong_arity_is_an_error_from_the_store() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
    let (_, store) = next_reply(&rx);
    host.handle_payload(&request(3, "memory_read", vec![store.unwrap()]));
    assert_eq!(
        next_reply(&rx),
        (3, Err("memory_read expects 5 arguments, got 1".into()))
    );
}

/// The key `Wasmex.Module` names `.wat` or `.wasm` bytes by.
fn key_of(wasm: &[u8]) -> Term {
    term::binary(
        crate::module_key::ModuleKey::of("wasm", wasm)
            .as_bytes()
            .to_vec(),
    )
}

#[test]
fn a_module_sent_under_another_modules_key_is_refused() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let source = term::tuple(vec![
        term::atom("wasm"),
        term::binary(b"(module $a)".to_vec()),
    ]);
    host.handle_payload(&request(
        2,
        "module_compile",
        vec![key_of(b"(module $b)"), source],
    ));
    assert!(next_reply(&rx)
        .1
        .unwrap_err()
        .contains("module key is not the SHA-256 digest"));
}

#[test]
fn compiles_instantiates_and_calls() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let wat = b"(module (func (export \"add\") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))";
    let key = key_of(wat);
    let source = term::tuple(vec![term::atom("wasm"), term::binary(wat.to_vec())]);
    host.handle_payload(&request(2, "module_compile", vec![key.clone(), source]));
    assert!(next_reply(&rx).1.is_ok());
    host.handle_payload(&request(3, "store_new", vec![term::nil(), term::nil()]));
    let store = next_reply(&rx).1.unwrap();
    let handler = term::binary(vec![]);
    let empty = term::list(vec![]);
    host.handle_payload(&request(
        4,
        "instantiate",
        vec![
            store.clone(),
            key,
            term::nil(),
            handler,
            empty.clone(),
            empty,
            term::int(1000),
        ],
    ));
    let instance = next_reply(&rx).1.unwrap();
    let params = term::list(vec![term::int(-5), term::int(7)]);
    host.handle_payload(&request(
        5,
        "call",
        vec![
            store,
            instance,
            term::string("add"),
            params,
            term::int(1000),
        ],
    ));
    let result = next_reply(&rx).1.unwrap();
    assert_eq!(
        term::as_list(&result, "r")
            .unwrap()
            .iter()
            .map(term::as_i64)
            .collect::<Vec<_>>(),
        vec![Some(2)]
    );
}

#[test]
fn a_memory_read_over_the_frame_limit_is_refused() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    // 4 GiB of memory, reserved and never touched.
    let wat = b"(module (memory (export \"memory\") 65536))";
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
    let read = vec![
        store,
        instance,
        term::string("memory"),
        term::uint(0),
        term::uint(1 << 32),
    ];
    host.handle_payload(&request(4, "memory_read", read));
    assert_eq!(
        next_reply(&rx),
        (
            4,
            Err(
                "a read of 4294967296 bytes is over the limit of 269484032 bytes the BEAM takes in one answer"
                    .into()
            )
        )
    );
}

#[test]
fn a_store_dropped_while_a_callback_waits_answers_every_queued_request() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let wat = b"(module (import \"env\" \"f\" (func $f)) (memory (export \"memory\") 1) (func (export \"run\") call $f))";
    let import = term::tuple(vec![
        term::string("env"),
        term::string("f"),
        term::list(vec![]),
        term::list(vec![]),
    ]);
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![import]);
    let call = vec![
        store.clone(),
        instance.clone(),
        term::string("run"),
        term::list(vec![]),
        term::int(10_000),
    ];
    host.handle_payload(&request(4, "call", call));
    // The callback event: the call now waits in the import.
    let frame = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let event = Term::decode(&frame[4..]).unwrap();
    assert_eq!(
        term::as_atom(&term::as_tuple(&event, 7, "event").unwrap()[0]),
        Some("callback")
    );
    // Requests for the store itself queue behind the call; then the store is dropped.
    host.handle_payload(&request(
        5,
        "memory_size",
        vec![store.clone(), instance.clone(), term::string("memory")],
    ));
    host.handle_payload(&request(6, "fuel_get", vec![store.clone()]));
    host.handle_payload(&request(0, "store_drop", vec![store]));
    let mut replies: Vec<(u64, Result<Term, String>)> = (0..3).map(|_| next_reply(&rx)).collect();
    replies.sort_by_key(|r| r.0);
    assert_eq!(
        replies.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert!(replies.iter().all(|r| r.1.is_err()));
    assert_eq!(
        replies[1].1,
        Err("the store was dropped before serving this request".into())
    );
}

#[test]
fn requests_that_reach_a_dropped_store_are_answered() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    host.handle_payload(&request(2, "store_new", vec![term::nil(), term::nil()]));
    let store = next_reply(&rx).1.unwrap();
    host.handle_payload(&request(0, "store_drop", vec![store.clone()]));
    // Sent while the store may be ending: each gets its one answer.
    for id in 3..50 {
        host.handle_payload(&request(id, "fuel_get", vec![store.clone()]));
        assert_eq!(next_reply(&rx).0, id as u64);
    }
}

#[test]
fn a_store_that_failed_to_start_is_forgotten() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let bad_limits = term::map(vec![(term::atom("memory_size"), term::int(-1))]);
    host.handle_payload(&request(2, "store_new", vec![bad_limits, term::nil()]));
    assert!(next_reply(&rx).1.is_err());
    // Requests for it get errors; the host forgets it once it has ended (its task
    // says so right after its reply).
    for id in 3..1000 {
        host.handle_payload(&request(id, "fuel_get", vec![term::int(1)]));
        assert!(next_reply(&rx).1.is_err());
        if host.stores.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(host.stores.is_empty());
}
