//! Decoding requests into typed values: fields by name, errors naming what was wrong.

use super::*;

fn request(op: &str, args: Vec<Term>) -> Request {
    Request {
        id: 7,
        op: op.into(),
        args,
        tail: None,
    }
}

fn store_request(op: &str, args: Vec<Term>) -> Fallible<StoreRequest> {
    let req = request(op, args);
    let ctx = Context::parse(&req.args[0])?;
    StoreRequest::decode(ctx, req)
}

fn memory_args(rest: Vec<Term>) -> Vec<Term> {
    let mut args = vec![term::int(1), term::int(0), term::string("memory")];
    args.extend(rest);
    args
}

#[test]
fn a_call_decodes_into_its_named_fields() {
    let args = vec![
        term::int(3),
        term::int(2),
        term::string("sum"),
        term::list(vec![term::int(1), term::int(2)]),
        term::atom("infinity"),
    ];
    let decoded = store_request("call", args).unwrap();
    assert_eq!((decoded.id, decoded.ctx), (7, Context::Store(3)));
    let StoreOp::Call {
        function,
        params,
        timeout,
    } = decoded.op
    else {
        panic!("not a call");
    };
    let sum = Export {
        instance: 2,
        name: "sum".into(),
    };
    assert_eq!((function, params.len(), timeout), (sum, 2, None));
}

#[test]
fn a_memory_write_keeps_its_bytes_and_a_read_its_range() {
    let write = store_request(
        "memory_write",
        memory_args(vec![term::int(8), term::binary(b"hi".to_vec())]),
    );
    let StoreOp::MemoryWrite { offset, data, .. } = write.unwrap().op else {
        panic!("not a write");
    };
    assert_eq!((offset, data.bytes()), (8, &b"hi"[..]));
    let read = store_request(
        "memory_read",
        memory_args(vec![term::int(4), term::int(16)]),
    );
    assert!(matches!(
        read.unwrap().op,
        StoreOp::MemoryRead {
            offset: 4,
            len: 16,
            ..
        }
    ));
}

#[test]
fn wrong_shapes_are_errors_that_say_what_was_expected() {
    let short = store_request("memory_read", vec![term::int(1)]);
    assert_eq!(
        short.err().unwrap(),
        "memory_read expects 5 arguments, got 1"
    );
    let bad_name = store_request("global_get", vec![term::int(1), term::int(0), term::int(5)]);
    assert!(bad_name.err().unwrap().starts_with("global name"));
    let unknown = store_request("frobnicate", vec![term::int(1)]);
    assert_eq!(unknown.err().unwrap(), "unknown op: frobnicate");
    let bad_timeout = store_request(
        "call",
        vec![
            term::int(1),
            term::int(0),
            term::string("f"),
            term::list(vec![]),
            term::atom("never"),
        ],
    );
    assert!(bad_timeout.err().unwrap().contains("timeout"));
}

#[test]
fn host_ops_decode_and_a_store_op_waits_for_its_store() {
    let cancel = Op::decode(request("cancel", vec![term::nil(), term::int(9)])).unwrap();
    assert!(matches!(
        cancel,
        Op::Cancel {
            store: None,
            request: 9
        }
    ));
    let stdin = request(
        "stdin_data",
        vec![term::int(2), term::binary(b"x".to_vec())],
    );
    assert!(matches!(
        Op::decode(stdin).unwrap(),
        Op::StdinData { store: 2, .. }
    ));
    // A store op is only checked for its context here; its arguments when its store is
    // found.
    let call = Op::decode(request("call", vec![term::int(99), term::int(0)])).unwrap();
    assert!(matches!(
        call,
        Op::Store {
            ctx: Context::Store(99),
            ..
        }
    ));
    let no_store = Op::decode(request("frobnicate", vec![term::atom("x")]));
    assert!(no_store.err().unwrap().starts_with("expected a store id"));
    let short = Op::decode(request("module_compile", vec![term::int(1)]));
    assert_eq!(
        short.err().unwrap(),
        "module_compile expects 2 arguments, got 1"
    );
}

#[test]
fn an_instance_stop_names_a_core_or_a_component_instance() {
    let stop = |op| Op::decode(request(op, vec![term::int(3), term::int(5)])).unwrap();
    let stopped = [stop("instance_stop"), stop("component_instance_stop")].map(|op| match op {
        Op::InstanceStop { store: 3, instance } => Some(instance),
        _ => None,
    });
    assert_eq!(
        stopped,
        [Some(InstanceRef::Core(5)), Some(InstanceRef::Component(5))]
    );
}

#[test]
fn a_component_call_says_its_instance_and_timeout_before_it_is_served() {
    let args = vec![
        term::int(3),
        term::int(4),
        term::list(vec![term::string("run")]),
        term::list(vec![]),
        term::int(250),
    ];
    let call = store_request("component_call", args).unwrap();
    assert_eq!(
        (call.instance(), call.timeout(), call.timeout_kind()),
        (
            Some(InstanceRef::Component(4)),
            Some(std::time::Duration::from_millis(250)),
            crate::errors::Failure::Timeout
        )
    );
}
