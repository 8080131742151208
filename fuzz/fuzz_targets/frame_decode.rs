//! Arbitrary bytes as they could arrive on the port's stdin: split into frames by
//! `frame::read_frame` (as `main.rs` does) until the stream ends, each payload read as a
//! request by `protocol::decode_request`, or split by `frame::batch_parts` when it is a
//! batch (its parts then read as requests). Nothing may panic, and what the decoder reads
//! must be describable (`term::show`) and, for store requests, parse as a context or fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmex_port::frame::{batch_parts, read_frame, Frame, BATCH};
use wasmex_port::protocol::{decode_request, Context};
use wasmex_port::term;

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    let mut frames = 0usize;
    loop {
        match read_frame(&mut stream) {
            Ok(Some(Frame::Data(payload))) if payload.first() == Some(&BATCH) => {
                frames += 1;
                match batch_parts(&payload[1..]) {
                    Ok(parts) => {
                        let total: usize = parts.iter().map(|p| 4 + p.len()).sum();
                        assert_eq!(total, payload.len() - 1, "the parts cover the batch");
                        for part in parts {
                            check_request(part);
                        }
                    }
                    Err(reason) => assert!(reason.starts_with("malformed batch")),
                }
            }
            Ok(Some(Frame::Data(payload))) => {
                frames += 1;
                check_request(&payload);
            }
            Ok(Some(Frame::TooLarge(len))) => {
                assert!(len > wasmex_port::frame::MAX_FRAME);
            }
            Ok(None) => break,
            Err(e) => panic!("reading from a slice cannot fail with I/O errors: {e}"),
        }
        // Every frame consumes at least its 4-byte prefix: the loop ends.
        assert!(frames <= data.len() / 4 + 1);
    }
});

/// Reads one payload as a request: nothing may panic, what it reads must be describable.
fn check_request(payload: &[u8]) {
    match decode_request(payload) {
        Ok(req) => {
            for a in &req.args {
                assert!(term::show(a).len() <= 80, "show must be bounded");
            }
            if let Some(first) = req.args.first() {
                if let Ok(ctx) = Context::parse(first) {
                    let _ = ctx.store_id();
                }
            }
            let _ = req.is_notification();
        }
        Err(rejected) => {
            assert!(!rejected.reason.is_empty(), "a rejection names its reason");
        }
    }
}
