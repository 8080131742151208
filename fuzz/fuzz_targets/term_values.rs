//! Arbitrary terms through the helpers that turn request arguments into Rust and Wasm
//! values: the first byte picks value types, the rest is one ETF term (as a payload).
//! Besides "no panic", conversions must round-trip: a term accepted as a Wasm value of
//! some type, sent back as the port sends results and read again, is the same value.
#![no_main]

use eetf::Term;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use wasmex_port::callback::Import;
use wasmex_port::engine::EngineOptions;
use wasmex_port::frame::{encode_frame, read_frame, Frame};
use wasmex_port::protocol::Context;
use wasmex_port::{term, values};
use wasmtime::{Val, ValType};

const TYPES: [ValType; 5] = [
    ValType::I32,
    ValType::I64,
    ValType::F32,
    ValType::F64,
    ValType::V128,
];

fn same(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::I32(x), Val::I32(y)) => x == y,
        (Val::I64(x), Val::I64(y)) => x == y,
        (Val::F32(x), Val::F32(y)) => {
            let (x, y) = (f32::from_bits(*x), f32::from_bits(*y));
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Val::F64(x), Val::F64(y)) => {
            let (x, y) = (f64::from_bits(*x), f64::from_bits(*y));
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Val::V128(x), Val::V128(y)) => x.as_u128() == y.as_u128(),
        _ => false,
    }
}

/// What the BEAM would read back: through a frame, as the port writes it.
fn over_the_wire(t: &Term) -> Term {
    let frame = encode_frame(t);
    let mut r = &frame[..];
    let Ok(Some(Frame::Data(payload))) = read_frame(&mut r) else {
        panic!("encode_frame output does not read back as a frame")
    };
    Term::decode(&payload[..]).expect("encode_frame output decodes")
}

fn round_trip(t: &Term, ty: &ValType) {
    let Some(v) = values::to_val(t, ty) else {
        return;
    };
    let back = over_the_wire(&values::from_val(&v).expect("numbers convert back"));
    let again = values::to_val(&back, ty).unwrap_or_else(|| {
        panic!(
            "{} accepted as {} comes back as {}, which is refused",
            term::show(t),
            values::type_name(ty),
            term::show(&back)
        )
    });
    assert!(
        same(&v, &again),
        "{} as {}: {v:?} comes back as {again:?}",
        term::show(t),
        values::type_name(ty)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    // The port decodes only what its guard lets through (protocol::decode_request).
    if wasmex_port::etf_guard::payload_hazard(payload).is_some() {
        return;
    }
    let Ok(t) = Term::decode(payload) else { return };

    assert!(term::show(&t).len() <= 80);
    // Whatever was read can be written: encode_frame must produce a frame that decodes.
    let _ = over_the_wire(&t);

    for ty in &TYPES {
        round_trip(&t, ty);
    }
    if let Some(i) = term::as_i64(&t) {
        assert_eq!(term::as_i64(&over_the_wire(&term::int(i))), Some(i));
    }
    if let Ok(u) = term::as_u64(&t, "u") {
        assert_eq!(term::as_u64(&over_the_wire(&term::uint(u)), "u"), Ok(u));
    }
    if let Some(f) = term::as_f64(&t) {
        let back = term::as_f64(&over_the_wire(&term::float(f))).expect("a float reads back");
        assert!(back.to_bits() == f.to_bits() || (f.is_nan() && back.is_nan()));
    }

    // A list of params against types chosen by the selector bits.
    if let Ok(params) = term::as_list(&t, "params") {
        let types: Vec<ValType> = (0..params.len())
            .map(|i| TYPES[(usize::from(selector) + i) % TYPES.len()].clone())
            .collect();
        if let Ok(vals) = values::to_vals(&params, &types) {
            let back = over_the_wire(&values::from_vals(&vals).expect("numbers convert back"));
            let back = term::as_list(&back, "results").expect("results are a list");
            let again = values::to_vals(&back, &types).expect("results convert again");
            assert!(vals.iter().zip(&again).all(|(a, b)| same(a, b)));
        }
        // One type too many is always refused.
        let mut more = types;
        more.push(ValType::I32);
        assert!(values::to_vals(&params, &more).is_err());
    }

    let _ = values::parse_type(&t);
    let _ = Context::parse(&t);
    let _ = EngineOptions::from_term(&t);
    let _ = Import::parse(&t, Arc::new(vec![selector]));
    let _ = term::as_str(&t, "s");
    let _ = term::as_bytes(&t, "b");
    let _ = term::as_bool(&t, "b");
    if let Ok(m) = term::as_map(&t, "m") {
        for key in ["consume_fuel", "args", "env", "memory_size"] {
            let _ = term::map_get(m, key);
        }
    }
});
