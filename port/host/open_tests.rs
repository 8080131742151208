//! Stores opened under an id the BEAM chose (`store_open`): made without a reply, and a
//! failure told to the store's requests until the BEAM drops it.

use super::tests::{host, init, next_reply, request};
use crate::term;
use eetf::Term;
use std::sync::mpsc::Receiver;
use std::time::Duration;

fn open(host: &mut super::Host, store: i64, limits: Term) {
    host.handle_payload(&request(
        0,
        "store_open",
        vec![term::int(store), limits, term::nil()],
    ));
}

fn bad_limits() -> Term {
    term::map(vec![(term::atom("memory_size"), term::int(-1))])
}

/// The next frame, decoded.
fn next_frame(rx: &Receiver<Vec<u8>>) -> Term {
    let frame = rx.recv_timeout(Duration::from_secs(10)).expect("a frame");
    Term::decode(&frame[4..]).unwrap()
}

#[test]
fn an_opened_store_serves_requests_and_sends_no_reply_of_its_own() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    open(&mut host, 7, term::nil());
    host.handle_payload(&request(2, "store_ready", vec![term::int(7)]));
    // The first frame is the answer to request 2: the open itself was not answered.
    assert_eq!(next_reply(&rx), (2, Ok(term::atom("ok"))));
    host.handle_payload(&request(3, "fuel_get", vec![term::int(7)]));
    assert!(next_reply(&rx).1.unwrap_err().contains("fuel"));
}

#[test]
fn a_store_that_could_not_be_opened_says_why_until_it_is_dropped() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    open(&mut host, 4, bad_limits());
    // Sent at once (queued in the store's task, or refused by the dispatcher once the
    // task ended), each request gets the reason.
    for id in 2..6 {
        host.handle_payload(&request(id, "store_ready", vec![term::int(4)]));
        let (got, result) = next_reply(&rx);
        assert_eq!(got, id as u64);
        let reason = result.unwrap_err();
        assert!(
            reason.starts_with("the store could not be created: ")
                && reason.contains("memory_size"),
            "{reason}"
        );
    }
    host.handle_payload(&request(0, "store_drop", vec![term::int(4)]));
    host.handle_payload(&request(9, "store_ready", vec![term::int(4)]));
    assert_eq!(next_reply(&rx), (9, Err("unknown store 4".into())));
    assert!(host.failed.is_empty());
}

#[test]
fn opening_an_id_in_use_is_logged_and_leaves_the_store_alone() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    open(&mut host, 3, term::nil());
    open(&mut host, 3, bad_limits());
    let log = next_frame(&rx);
    let parts = term::as_tuple(&log, 2, "log").unwrap();
    assert_eq!(term::as_atom(&parts[0]), Some("log"));
    assert!(term::as_str(&parts[1], "message")
        .unwrap()
        .contains("store id 3 is in use"));
    host.handle_payload(&request(2, "store_ready", vec![term::int(3)]));
    assert_eq!(next_reply(&rx), (2, Ok(term::atom("ok"))));
}

#[test]
fn store_new_skips_the_ids_of_opened_stores() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    open(&mut host, 1, term::nil());
    open(&mut host, 2, term::nil());
    host.handle_payload(&request(5, "store_new", vec![term::nil(), term::nil()]));
    assert_eq!(next_reply(&rx), (5, Ok(term::uint(3))));
}
