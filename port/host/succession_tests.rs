//! A store opened right after an idle store is dropped runs on the dropped store's task
//! (see `store/succession.rs`); one opened after a busy store is dropped does not wait
//! for it.

use super::tests::{host, init, next_reply, request, store_with_instance};
use crate::term;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

fn open(host: &mut super::Host, store: i64) {
    host.handle_payload(&request(
        0,
        "store_open",
        vec![term::int(store), term::nil(), term::nil()],
    ));
}

fn drop_store(host: &mut super::Host, store: u64) {
    host.handle_payload(&request(0, "store_drop", vec![term::uint(store)]));
}

fn task_of(host: &super::Host, store: u64) -> usize {
    host.stores[&store].task.task_id()
}

/// Waits (5 s at most) until store `store` has gone back to waiting for requests.
fn wait_idle(host: &super::Host, store: u64) {
    let until = Instant::now() + Duration::from_secs(5);
    while !host.stores[&store].task.idle() {
        assert!(Instant::now() < until, "store {store} never became idle");
        std::thread::yield_now();
    }
}

/// A host whose store 10 was opened and then dropped before it served anything (idle).
fn host_with_store_10_dropped() -> (super::Host, Receiver<Vec<u8>>) {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    open(&mut host, 10);
    drop_store(&mut host, 10);
    (host, rx)
}

/// A host with store 10 opened, made and idle: the host, and store 10's task.
fn host_with_idle_store_10() -> (super::Host, usize) {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    open(&mut host, 10);
    host.handle_payload(&request(2, "store_ready", vec![term::int(10)]));
    assert_eq!(next_reply(&rx), (2, Ok(term::atom("ok"))));
    wait_idle(&host, 10);
    let task = task_of(&host, 10);
    (host, task)
}

#[test]
fn a_store_opened_after_an_idle_store_is_dropped_runs_on_its_task() {
    let (mut host, task) = host_with_idle_store_10();
    drop_store(&mut host, 10);
    open(&mut host, 11);
    assert_eq!(task_of(&host, 11), task);
}

#[test]
fn an_idle_store_whose_instance_server_stopped_still_hands_its_task_on() {
    let (mut host, task) = host_with_idle_store_10();
    // As an instance server's stop sends them: its instance, then its store, dropped.
    let stop = vec![term::int(10), term::int(0)];
    host.handle_payload(&request(0, "instance_stop", stop));
    drop_store(&mut host, 10);
    open(&mut host, 11);
    assert_eq!(task_of(&host, 11), task);
}

#[test]
fn a_store_dropped_while_idle_is_dropped_by_the_next_request_that_opens_none() {
    let (mut host, rx) = host_with_store_10_dropped();
    assert!(host.retiring.is_some());
    host.handle_payload(&request(2, "store_ready", vec![term::int(10)]));
    assert!(host.retiring.is_none());
    assert_eq!(next_reply(&rx), (2, Err("unknown store 10".into())));
}

#[test]
fn a_store_dropped_while_idle_is_dropped_once_the_input_read_is_handled() {
    let (mut host, _rx) = host_with_store_10_dropped();
    host.settle_retired();
    assert!(host.retiring.is_none());
}

#[test]
fn a_store_handed_over_serves_requests_and_the_dropped_one_is_gone() {
    let (mut host, rx) = host_with_store_10_dropped();
    open(&mut host, 11);
    host.handle_payload(&request(2, "store_ready", vec![term::int(11)]));
    assert_eq!(next_reply(&rx), (2, Ok(term::atom("ok"))));
    host.handle_payload(&request(3, "store_ready", vec![term::int(10)]));
    assert_eq!(next_reply(&rx), (3, Err("unknown store 10".into())));
}

#[test]
fn a_store_opened_after_a_busy_store_is_dropped_answers_at_once() {
    let (mut host, rx) = host();
    init(&mut host, &rx);
    let wat = b"(module (func (export \"spin\") (loop br 0)))";
    let (store, instance) = store_with_instance(&mut host, &rx, wat, vec![]);
    let busy = term::as_u64(&store, "store").unwrap();
    let call = vec![
        store.clone(),
        instance,
        term::string("spin"),
        term::list(vec![]),
        term::int(5_000),
    ];
    host.handle_payload(&request(4, "call", call));
    let task = task_of(&host, busy);
    // Dropped while its call is in hand: the call is stopped (or skipped, if it had not
    // begun), and the new store gets a task of its own.
    drop_store(&mut host, busy);
    open(&mut host, 20);
    assert_ne!(task_of(&host, 20), task);
    host.handle_payload(&request(5, "store_ready", vec![term::int(20)]));
    let mut replies = [next_reply(&rx), next_reply(&rx)];
    replies.sort_by_key(|(id, _)| *id);
    assert_eq!(
        (replies[0].0, replies[0].1.is_err(), &replies[1]),
        (4, true, &(5, Ok(term::atom("ok"))))
    );
}
