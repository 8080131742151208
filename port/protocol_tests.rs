//! Decoding requests from frames: ids, ops, arguments, what is refused and why.

use super::*;

fn encode(t: &Term) -> Vec<u8> {
    let mut v = Vec::new();
    t.encode(&mut v).unwrap();
    v
}

#[test]
fn decodes_a_request() {
    let t = term::tuple(vec![
        term::int(7),
        term::atom("call"),
        term::tuple(vec![term::int(1)]),
    ]);
    let r = decode_request(&encode(&t)).unwrap();
    assert_eq!((r.id, r.op.as_str(), r.args.len()), (7, "call", 1));
}

fn write_request(op: &str, data: Vec<u8>) -> Vec<u8> {
    encode(&term::tuple(vec![
        term::int(9),
        term::atom(op),
        term::tuple(vec![term::uint(1), term::binary(data)]),
    ]))
}

#[test]
fn a_large_memory_write_keeps_its_bytes_in_the_frame() {
    let data: Vec<u8> = (0..TAIL_MIN as u32 + 3).map(|i| i as u8).collect();
    let r = decode_frame(write_request("memory_write", data.clone())).unwrap();
    assert_eq!(
        (r.tail.is_some(), r.bytes(1, "data").unwrap()),
        (true, &data[..])
    );
}

#[test]
fn a_large_binary_of_another_op_is_decoded_in_place() {
    let data = vec![5u8; TAIL_MIN];
    let r = decode_frame(write_request("module_load", data.clone())).unwrap();
    assert_eq!((r.tail, &r.args[1]), (None, &term::binary(data)));
}

#[test]
fn a_large_tail_in_a_term_that_is_no_request_is_rejected() {
    // {9, {1, <<...>>}}: the binary ends the payload at depth 2, but the term has two
    // elements, not three.
    let t = term::tuple(vec![
        term::int(9),
        term::tuple(vec![term::uint(1), term::binary(vec![1; TAIL_MIN])]),
    ]);
    let err = decode_frame(encode(&t)).unwrap_err();
    assert!(err.reason.contains("request"), "{}", err.reason);
}

#[test]
fn decode_frame_and_decode_request_agree_on_small_frames() {
    let payload = write_request("memory_write", b"abc".to_vec());
    assert_eq!(decode_frame(payload.clone()), decode_request(&payload));
}

#[test]
fn truncated_term_is_rejected() {
    let t = term::tuple(vec![term::int(7), term::atom("call"), term::tuple(vec![])]);
    let bytes = encode(&t);
    let err = decode_request(&bytes[..bytes.len() - 2]).unwrap_err();
    assert!(err.reason.starts_with("malformed frame"), "{}", err.reason);
}

#[test]
fn frames_that_would_crash_or_bloat_the_decoder_are_rejected() {
    let cases: Vec<Vec<u8>> = vec![
        vec![131, 68],                                            // distribution header
        vec![131, 82, 0],                                         // atom cache reference
        vec![131, 108, 255, 255, 255, 255],                       // list of 2^32-1 elements
        vec![131, 105, 255, 255, 255, 255],                       // tuple of 2^32-1 elements
        vec![131, 111, 255, 255, 255, 255, 0],                    // 4 GiB big integer
        vec![131, 77, 0, 0, 0, 1, 0, 255],                        // bit binary with 0 tail bits
        [vec![131], [104u8, 1].repeat(8000), vec![106]].concat(), // 8000 levels deep
    ];
    for payload in cases {
        let err = decode_request(&payload).unwrap_err();
        assert!(err.reason.starts_with("malformed frame"), "{}", err.reason);
    }
}

#[test]
fn a_request_too_deep_to_decode_is_rejected_under_its_own_id() {
    let deep = [[104u8, 1].repeat(8000), vec![106]].concat();
    let payload = [
        vec![131, 104, 3, 97, 42, 119, 4],
        b"call".to_vec(),
        vec![104, 2, 97, 1],
        deep.clone(),
    ]
    .concat();
    let err = decode_request(&payload).unwrap_err();
    assert_eq!((err.id, err.callback), (42, None));
    assert!(err.reason.contains("nested deeper than"), "{}", err.reason);

    let result = [
        vec![131, 104, 3, 97, 0, 119, 15],
        b"callback_return".to_vec(),
        vec![104, 3, 97, 5, 97, 9],
        deep,
    ]
    .concat();
    let err = decode_request(&result).unwrap_err();
    assert_eq!((err.id, err.callback), (0, Some((5, 9))));
}

#[test]
fn garbage_is_rejected() {
    assert!(decode_request(b"\x83\xff\xff").is_err());
    assert!(decode_request(b"").is_err());
}

#[test]
fn wrong_shapes_are_rejected_with_the_id_when_known() {
    let no_tuple = term::tuple(vec![term::int(3), term::atom("call"), term::int(1)]);
    assert_eq!(decode_request(&encode(&no_tuple)).unwrap_err().id, 3);
    let bad_op = term::tuple(vec![term::int(4), term::int(9), term::tuple(vec![])]);
    assert_eq!(decode_request(&encode(&bad_op)).unwrap_err().id, 4);
    let bad_id = term::tuple(vec![
        term::atom("x"),
        term::atom("call"),
        term::tuple(vec![]),
    ]);
    assert_eq!(decode_request(&encode(&bad_id)).unwrap_err().id, 0);
}

#[test]
fn parses_contexts() {
    assert_eq!(Context::parse(&term::int(5)).unwrap(), Context::Store(5));
    let caller = term::tuple(vec![term::atom("caller"), term::int(5), term::int(2)]);
    assert_eq!(
        Context::parse(&caller).unwrap(),
        Context::Caller {
            store: 5,
            caller: 2
        }
    );
    assert!(Context::parse(&term::atom("x")).is_err());
}
