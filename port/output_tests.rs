use super::*;
use crate::frame::{read_frame, Frame};
use std::sync::mpsc::Receiver;

/// Store ids of these tests, apart from each other's (the registry is process-wide).
fn outputs(store_id: u64) -> (Outputs, Receiver<Vec<u8>>) {
    let (outbox, frames) = Outbox::channel();
    (Outputs::new(outbox, 1_000_000 + store_id), frames)
}

fn spec(handler: &[u8], window: u64, room: Option<u64>) -> SinkSpec {
    SinkSpec {
        handler: handler.to_vec(),
        window,
        room,
    }
}

/// The `(handler, bytes)` of every frame sent so far.
fn sent(frames: &Receiver<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    frames
        .try_iter()
        .map(|frame| {
            let Ok(Some(Frame::Data(payload))) = read_frame(&mut &frame[..]) else {
                panic!("not a frame");
            };
            let t = Term::decode(&payload[..]).unwrap();
            let t = term::as_tuple(&t, 4, "stdio").unwrap();
            assert_eq!(term::as_atom(&t[0]), Some("stdio"));
            let h = term::as_bytes(&t[2], "h").unwrap().to_vec();
            (h, term::as_bytes(&t[3], "b").unwrap().to_vec())
        })
        .collect()
}

fn acknowledgement(store_id: u64, handler: &[u8], bytes: u64, room: AckRoom) -> Ack {
    Ack {
        store_id: 1_000_000 + store_id,
        handler: handler.to_vec(),
        bytes,
        room,
    }
}

/// Adjacent frames to one handler, joined.
fn joined(frames: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut runs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (h, bytes) in frames {
        match runs.last_mut() {
            Some((last, data)) if *last == h => data.extend(bytes),
            _ => runs.push((h, bytes)),
        }
    }
    runs
}

#[test]
fn writes_leave_in_program_order() {
    let (out, frames) = outputs(1);
    let a = out.sink(spec(b"a", 100, None));
    let b = out.sink(spec(b"b", 100, None));
    out.buffer(out.lock(), a, b"one ");
    out.buffer(out.lock(), a, b"two ");
    out.buffer(out.lock(), b, b"err");
    out.buffer(out.lock(), a, b"three");
    flush_store(1_000_001);
    assert_eq!(
        joined(sent(&frames)),
        vec![
            (b"a".to_vec(), b"one two ".to_vec()),
            (b"b".to_vec(), b"err".to_vec()),
            (b"a".to_vec(), b"three".to_vec()),
        ]
    );
}

#[test]
fn small_writes_share_frames_sent_after_the_linger() {
    let (out, frames) = outputs(10);
    let a = out.sink(spec(b"a", 1 << 20, None));
    crate::executor::block_on(async {
        for _ in 0..1_000 {
            out.buffer(out.lock(), a, b"0123456789");
        }
    });
    let mut got = Vec::new();
    while got
        .iter()
        .map(|(_, b): &(Vec<u8>, Vec<u8>)| b.len())
        .sum::<usize>()
        < 10_000
    {
        let frame = frames
            .recv_timeout(Duration::from_secs(5))
            .expect("a frame");
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(frame).unwrap();
        got.extend(sent(&rx));
    }
    assert!(got.len() <= 100, "{} frames for 1,000 writes", got.len());
}

#[test]
fn a_full_buffer_is_sent_at_once() {
    let (out, frames) = outputs(2);
    let a = out.sink(spec(b"a", 1 << 30, None));
    out.buffer(out.lock(), a, &vec![7; FLUSH_SIZE]);
    assert_eq!(sent(&frames).len(), 1);
}

#[test]
fn streams_naming_one_handler_share_its_sink() {
    let (out, _frames) = outputs(3);
    let stdout = out.sink(spec(b"pipe", 100, Some(10)));
    let stderr = out.sink(spec(b"pipe", 100, Some(10)));
    assert_eq!(stdout, stderr);
    assert_eq!(out.sink(spec(b"other", 100, None)), 1);
}

#[test]
fn the_window_counts_buffered_and_unacknowledged_bytes() {
    let (out, _frames) = outputs(4);
    let a = out.sink(spec(b"a", 100, None));
    out.buffer(out.lock(), a, &[1; 60]);
    assert_eq!(out.lock().sinks[a].permit(), 40);
    out.flush();
    assert_eq!(out.lock().sinks[a].permit(), 40);
    ack(acknowledgement(4, b"a", 25, AckRoom::None));
    assert_eq!(out.lock().sinks[a].permit(), 65);
}

#[test]
fn an_acknowledgement_frees_at_most_what_was_sent() {
    let (out, _frames) = outputs(5);
    let a = out.sink(spec(b"a", 100, None));
    ack(acknowledgement(5, b"a", 1_000, AckRoom::None));
    out.buffer(out.lock(), a, &[1; 100]);
    assert_eq!(out.lock().sinks[a].permit(), 0);
    out.flush();
    ack(acknowledgement(5, b"a", u64::MAX, AckRoom::None));
    assert_eq!(out.lock().sinks[a].permit(), 100);
}

#[test]
fn acknowledgements_naming_another_handler_or_store_change_nothing() {
    let (out, _frames) = outputs(6);
    let a = out.sink(spec(b"a", 100, None));
    out.buffer(out.lock(), a, &[1; 100]);
    out.flush();
    let acks = out.lock().acks;
    ack(acknowledgement(6, b"someone else", 100, AckRoom::None));
    ack(acknowledgement(999, b"a", 100, AckRoom::None));
    assert_eq!(out.lock().sinks[a].permit(), 0);
    assert_eq!(out.lock().acks, acks);
}

#[test]
fn a_pipe_sink_is_bounded_by_the_room_of_its_last_answer() {
    let (out, frames) = outputs(7);
    let p = out.sink(spec(b"p", 1_000, Some(50)));
    out.buffer(out.lock(), p, &[1; 30]);
    assert_eq!(out.lock().sinks[p].room_left(), Some(20));
    // A probe goes after the buffered bytes and is counted until answered.
    out.send_buffered(out.lock(), Some(p));
    assert_eq!(
        sent(&frames),
        vec![(b"p".to_vec(), vec![1; 30]), (b"p".to_vec(), vec![])]
    );
    assert!(!out.lock().sinks[p].settled());
    ack(acknowledgement(7, b"p", 30, AckRoom::Pipe(500)));
    ack(acknowledgement(7, b"p", 0, AckRoom::Pipe(480)));
    let state = out.lock();
    assert!(state.sinks[p].settled());
    assert_eq!(state.sinks[p].room_left(), Some(480));
}

#[test]
fn a_closed_receiver_is_remembered() {
    let (out, _frames) = outputs(8);
    let a = out.sink(spec(b"a", 100, None));
    ack(acknowledgement(8, b"a", 0, AckRoom::Closed));
    assert!(out.lock().sinks[a].closed());
}

#[test]
fn a_dropped_output_leaves_the_registry() {
    let (out, _frames) = outputs(9);
    drop(out);
    assert!(lookup(1_000_009).is_none());
}

#[test]
fn acknowledgements_are_parsed_from_the_wire() {
    let args = |room: Term| {
        vec![
            term::uint(3),
            term::binary(b"h".to_vec()),
            term::uint(10),
            room,
        ]
    };
    let parsed = Ack::parse(&args(term::atom("nil"))).unwrap();
    assert_eq!((parsed.store_id, parsed.bytes), (3, 10));
    assert_eq!(parsed.room, AckRoom::None);
    assert_eq!(
        Ack::parse(&args(term::uint(7))).unwrap().room,
        AckRoom::Pipe(7)
    );
    assert_eq!(
        Ack::parse(&args(term::atom("closed"))).unwrap().room,
        AckRoom::Closed
    );
    assert!(Ack::parse(&args(term::atom("full"))).is_err());
    assert!(Ack::parse(&args(term::uint(1))[..3])
        .unwrap_err()
        .contains("expects 4 arguments"));
}
