//! Large memory transfers: reads answered in parts, writes staged in parts and applied in
//! one step.

use super::tests::{host, init, next_reply, request, store_with_instance};
use crate::term;
use eetf::Term;
use std::time::Duration;

#[test]
fn a_memory_read_of_more_than_a_part_comes_in_parts_ahead_of_its_reply() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    // 40 pages (2.5 MiB), with a byte set at the start of each MiB.
    let wat = br#"(module (memory (export "memory") 40)
        (data (i32.const 0) "a") (data (i32.const 1048576) "b") (data (i32.const 2097152) "c"))"#;
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
    let len = 2 * crate::memory::READ_PART + 5;
    let read = vec![
        store,
        instance,
        term::string("memory"),
        term::uint(0),
        term::uint(len as u64),
    ];
    host.handle_payload(&request(4, "memory_read", read));
    let mut parts = Vec::new();
    let last = loop {
        let frame = rx.recv_timeout(Duration::from_secs(10)).expect("a frame");
        let t = Term::decode(&frame[4..]).unwrap();
        let fields = term::as_tuple(&t, 3, "frame").unwrap();
        match term::as_atom(&fields[0]) {
            Some("reply_part") => {
                assert_eq!(term::as_u64(&fields[1], "id"), Ok(4));
                parts.push(term::as_bytes(&fields[2], "part").unwrap().to_vec());
            }
            Some("reply") => break t,
            _ => continue,
        }
    };
    let mut expected = vec![0u8; len];
    for (at, byte) in [(0, b'a'), (1 << 20, b'b'), (2 << 20, b'c')] {
        expected[at] = byte;
    }
    let rest = expected.split_off(2 * crate::memory::READ_PART);
    assert_eq!(
        (parts.concat(), parts.len(), last),
        (
            expected,
            2,
            crate::protocol::reply(4, Ok(term::binary(rest)))
        )
    );
}

/// `memory_stage` of `part` for `write` (request `id`) on `store`: its result.
fn stage(
    host: &mut super::Host,
    rx: &std::sync::mpsc::Receiver<Vec<u8>>,
    id: i64,
    store: &Term,
    write: u64,
    part: &[u8],
) -> Result<Term, String> {
    let args = vec![
        store.clone(),
        term::uint(write),
        term::binary(part.to_vec()),
    ];
    host.handle_payload(&request(id, "memory_stage", args));
    next_reply(rx).1
}

fn write_staged(store: &Term, instance: &Term, offset: u64, write: u64) -> Vec<Term> {
    vec![
        store.clone(),
        instance.clone(),
        term::string("memory"),
        term::uint(offset),
        term::uint(write),
    ]
}

#[test]
fn a_staged_write_lands_whole_in_one_step() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let wat = br#"(module (memory (export "memory") 1))"#;
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
    assert_eq!(
        stage(&mut host, &rx, 4, &store, 9, b"hello, "),
        Ok(term::atom("ok"))
    );
    assert_eq!(
        stage(&mut host, &rx, 5, &store, 9, b"world"),
        Ok(term::atom("ok"))
    );
    host.handle_payload(&request(
        6,
        "memory_write_staged",
        write_staged(&store, &instance, 100, 9),
    ));
    assert_eq!(next_reply(&rx), (6, Ok(term::atom("ok"))));
    let read = vec![
        store,
        instance,
        term::string("memory"),
        term::uint(100),
        term::uint(12),
    ];
    host.handle_payload(&request(7, "memory_read", read));
    assert_eq!(
        next_reply(&rx),
        (7, Ok(term::binary(b"hello, world".to_vec())))
    );
}

#[test]
fn a_staged_write_past_the_end_writes_nothing_and_is_gone() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let wat = br#"(module (memory (export "memory") 1))"#;
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
    assert_eq!(
        stage(&mut host, &rx, 4, &store, 3, b"abcd"),
        Ok(term::atom("ok"))
    );
    host.handle_payload(&request(
        5,
        "memory_write_staged",
        write_staged(&store, &instance, 65534, 3),
    ));
    assert_eq!(
        next_reply(&rx),
        (5, Err("out of bounds memory access".into()))
    );
    host.handle_payload(&request(
        6,
        "memory_write_staged",
        write_staged(&store, &instance, 0, 3),
    ));
    assert_eq!(next_reply(&rx), (6, Err(crate::staging::unknown(3))));
}

#[test]
fn a_write_nobody_waits_for_is_served_without_a_reply() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let wat = br#"(module (memory (export "memory") 1))"#;
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
    let at = |offset: u64| {
        vec![
            store.clone(),
            instance.clone(),
            term::string("memory"),
            term::uint(offset),
        ]
    };
    let mut write = at(8);
    write.push(term::binary(b"abc".to_vec()));
    let unanswered = crate::protocol::UNANSWERED_ID as i64;
    host.handle_payload(&request(unanswered, "memory_write", write));
    let mut read = at(8);
    read.push(term::uint(3));
    host.handle_payload(&request(5, "memory_read", read));
    // The next frame is the read's reply, with the write's bytes.
    let frame = rx.recv_timeout(Duration::from_secs(10)).expect("a frame");
    assert_eq!(
        Term::decode(&frame[4..]).unwrap(),
        crate::protocol::reply(5, Ok(term::binary(b"abc".to_vec())))
    );
}
