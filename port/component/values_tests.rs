//! The term mapping of every WIT type family, checked by round trips through the `types`
//! fixture's `echo-*` exports (each returns its argument), and its errors.

use super::testing::{call, call1, func, instance, record, tagged, ROUNDTRIP};
use crate::term::{self, atom, int, string, uint};
use eetf::Term;
use num_bigint::BigInt;
use wasmtime::component::Instance;
use wasmtime::Store;

struct Types {
    store: Store<()>,
    instance: Instance,
}

impl Types {
    fn new() -> Self {
        let (store, instance) = instance("types.wasm");
        Types { store, instance }
    }

    /// Calls `echo-<name>` of the roundtrip interface with one argument.
    fn echo(&mut self, name: &str, v: Term) -> Result<Term, String> {
        let f = func(
            &mut self.store,
            &self.instance,
            &[ROUNDTRIP, &format!("echo-{name}")],
        );
        call1(&mut self.store, f, &[v])
    }

    /// Asserts that `v` comes back unchanged.
    fn same(&mut self, name: &str, v: Term) {
        assert_eq!(self.echo(name, v.clone()), Ok(v), "echo-{name}");
    }

    fn fails(&mut self, name: &str, v: Term) -> String {
        self.echo(name, v).expect_err("a wrong value is refused")
    }
}

fn big(v: impl Into<BigInt>) -> Term {
    Term::BigInteger(eetf::BigInteger { value: v.into() })
}

#[test]
fn integers_round_trip_at_the_ends_of_their_ranges() {
    let mut t = Types::new();
    for (name, min, max) in [
        ("s8", i64::from(i8::MIN), i64::from(i8::MAX)),
        ("s16", i16::MIN.into(), i16::MAX.into()),
        ("s32", i32::MIN.into(), i32::MAX.into()),
        ("s64", i64::MIN, i64::MAX),
    ] {
        t.same(name, int(min));
        t.same(name, int(max));
    }
    for (name, max) in [("u8", 255u64), ("u16", 65535), ("u32", 4294967295)] {
        t.same(name, uint(0));
        t.same(name, uint(max));
    }
    t.same("u64", uint(u64::MAX));
    // A big integer the BEAM sends for a small value reads the same.
    assert_eq!(t.echo("u8", big(7)), Ok(int(7)));
}

#[test]
fn an_integer_out_of_range_is_an_error_not_wrapped() {
    let mut t = Types::new();
    assert_eq!(
        t.fails("u8", int(256)),
        "256 is out of range for u8 (0 to 255) at \"v\""
    );
    assert_eq!(
        t.fails("s8", int(-129)),
        "-129 is out of range for s8 (-128 to 127) at \"v\""
    );
    assert_eq!(
        t.fails("u64", int(-1)),
        "-1 is out of range for u64 (0 to 18446744073709551615) at \"v\""
    );
    let too_big = BigInt::from(u64::MAX) + 1;
    assert!(t
        .fails("u64", big(too_big))
        .starts_with("18446744073709551616 is out of range"));
    assert_eq!(
        t.fails("s32", string("1")),
        "expected a s32 (an integer), got: \"1\" at \"v\""
    );
}

#[test]
fn floats_round_trip_with_non_finite_values_as_atoms() {
    let mut t = Types::new();
    t.same("f32", term::float(1.5));
    t.same("f64", term::float(-0.25));
    t.same("f64", atom("infinity"));
    t.same("f32", atom("neg_infinity"));
    t.same("f64", atom("nan"));
    assert_eq!(
        t.echo("f64", int(3)),
        Ok(term::float(3.0)),
        "an integer is accepted"
    );
    assert_eq!(
        t.fails("f32", term::float(1e300)),
        "1e300 is out of range for f32 at \"v\""
    );
    assert!(t
        .fails("f64", atom("pi"))
        .starts_with("expected an f64 (a float), got: :pi"));
}

#[test]
fn bools_chars_and_strings() {
    let mut t = Types::new();
    t.same("bool", atom("true"));
    t.same("bool", atom("false"));
    assert!(t
        .fails("bool", atom("nil"))
        .starts_with("expected a bool (true or false)"));
    t.same("char", string("Ω"));
    assert_eq!(
        t.echo("char", int(937)),
        Ok(string("Ω")),
        "a code point is accepted"
    );
    assert!(t.fails("char", string("ab")).starts_with("expected a char"));
    assert_eq!(
        t.fails("char", int(0xD800)),
        "55296 is not a Unicode scalar value at \"v\""
    );
    t.same("string", string("héllo, wörld"));
    t.same("string", string(""));
    assert_eq!(
        t.fails("string", term::binary(vec![0xff, 0xfe])),
        "the string is not valid UTF-8 at \"v\""
    );
    assert!(t
        .fails("string", atom("hello"))
        .starts_with("expected a string (a UTF-8 binary)"));
}

#[test]
fn lists_and_tuples() {
    let mut t = Types::new();
    t.same("list", term::list(vec![int(1), int(2), int(300)]));
    t.same("list", term::list(vec![]));
    assert_eq!(t.fails("list", int(1)), "expected a list, got: 1 at \"v\"");
    // Erlang sends a list of small integers as a byte string.
    let bytes = Term::ByteList(eetf::ByteList::from(vec![1u8, 2]));
    assert_eq!(t.echo("list", bytes), Ok(term::list(vec![int(1), int(2)])));
    assert_eq!(
        t.fails("list", term::list(vec![int(1), int(-2)])),
        "-2 is out of range for u32 (0 to 4294967295) at \"v[1]\""
    );
    let tuple = term::tuple(vec![int(1), string("two"), atom("true")]);
    t.same("tuple", tuple);
    assert!(t
        .fails("tuple", term::tuple(vec![int(1), string("two")]))
        .starts_with("expected a tuple of 3 elements"));
    assert_eq!(
        t.fails("tuple", term::tuple(vec![int(1), int(2), atom("true")])),
        "expected a string (a UTF-8 binary), got: 2 at \"v[1]\""
    );
}

fn ada() -> Term {
    record(&[
        ("full-name", string("Ada")),
        ("age", int(36)),
        ("tags", term::list(vec![string("math")])),
        (
            "home",
            tagged("some", record(&[("x", int(1)), ("y", int(-2))])),
        ),
    ])
}

#[test]
fn records_are_maps_with_the_wit_names_as_atom_keys() {
    let mut t = Types::new();
    t.same("point", record(&[("x", int(3)), ("y", int(-4))]));
    t.same("person", ada());
    let binary_keys = term::map(vec![(string("x"), int(1)), (string("y"), int(2))]);
    assert_eq!(
        t.echo("point", binary_keys),
        Ok(record(&[("x", int(1)), ("y", int(2))]))
    );
}

#[test]
fn a_wrong_record_names_the_field_and_its_path() {
    let mut t = Types::new();
    assert_eq!(
        t.fails("point", record(&[("x", int(3))])),
        "expected 2 fields, got 1: missing y at \"v\""
    );
    assert_eq!(
        t.fails(
            "point",
            record(&[("x", int(3)), ("y", int(4)), ("z", int(5))])
        ),
        "unknown field z (expected x, y) at \"v\""
    );
    let twice = term::map(vec![
        (atom("x"), int(1)),
        (string("x"), int(2)),
        (atom("y"), int(3)),
    ]);
    assert_eq!(
        t.fails("point", twice),
        "field x is given twice (as an atom and as a string) at \"v\""
    );
    let bad_home = record(&[
        ("full-name", string("Bob")),
        ("age", int(1)),
        ("tags", term::list(vec![])),
        (
            "home",
            tagged("some", record(&[("x", string("1")), ("y", int(2))])),
        ),
    ]);
    assert_eq!(
        t.fails("people", term::list(vec![ada(), bad_home])),
        "expected a s32 (an integer), got: \"1\" at \"v[1].home.some.x\""
    );
    assert!(t
        .fails("point", term::list(vec![]))
        .starts_with("expected a record (a map with the fields x, y)"));
}

#[test]
fn variants_are_atoms_or_tagged_tuples() {
    let mut t = Types::new();
    t.same("shape", tagged("circle", term::float(2.5)));
    t.same(
        "shape",
        tagged("rect", record(&[("x", int(1)), ("y", int(2))])),
    );
    t.same("shape", atom("empty"));
    assert_eq!(
        t.fails("shape", atom("square")),
        "unknown case square (expected one of circle, rect, empty) at \"v\""
    );
    assert_eq!(
        t.fails("shape", atom("circle")),
        "circle takes a value: pass {circle, Value} at \"v\""
    );
    assert_eq!(
        t.fails("shape", tagged("empty", int(1))),
        "empty takes no value: pass the atom empty at \"v\""
    );
    assert!(t
        .fails("shape", string("empty"))
        .starts_with("expected a variant"));
    assert_eq!(
        t.fails("shape", tagged("rect", record(&[("x", int(1))]))),
        "expected 2 fields, got 1: missing y at \"v.rect\""
    );
}

#[test]
fn enums_are_atoms() {
    let mut t = Types::new();
    t.same("size", atom("medium"));
    assert_eq!(
        t.fails("size", atom("huge")),
        "unknown case huge (expected one of small, medium, large) at \"v\""
    );
    assert!(t
        .fails("size", string("small"))
        .starts_with("expected an enum (an atom"));
}

#[test]
fn flags_are_maps_of_booleans_and_come_back_with_the_set_ones() {
    let mut t = Types::new();
    let given = record(&[
        ("read", atom("true")),
        ("write", atom("false")),
        ("exec", atom("true")),
    ]);
    assert_eq!(
        t.echo("perms", given),
        Ok(record(&[("read", atom("true")), ("exec", atom("true"))]))
    );
    t.same("perms", record(&[]));
    assert!(t
        .fails("perms", term::list(vec![atom("read")]))
        .starts_with("expected flags (a map of read, write, exec to booleans), got: "));
    assert_eq!(
        t.fails("perms", record(&[("delete", atom("true"))])),
        "unknown flag delete (expected read, write, exec) at \"v\""
    );
    assert_eq!(
        t.fails("perms", record(&[("read", int(1))])),
        "expected a boolean, got: 1 at \"v.read\""
    );
}

#[test]
fn options_are_none_or_some() {
    let mut t = Types::new();
    t.same("option", atom("none"));
    t.same("option", tagged("some", string("x")));
    assert!(t
        .fails("option", atom("nil"))
        .starts_with("expected an option (none or {some, Value})"));
    assert!(t
        .fails("option", tagged("some", int(1)))
        .ends_with("at \"v.some\""));
}

#[test]
fn results_are_tagged_or_bare_where_a_side_has_no_type() {
    let mut t = Types::new();
    t.same("result", tagged("ok", int(7)));
    t.same("result", tagged("error", string("bad")));
    t.same("result-ok-only", tagged("ok", string("fine")));
    t.same("result-ok-only", atom("error"));
    t.same("result-err-only", atom("ok"));
    t.same("result-err-only", tagged("error", int(3)));
    t.same("result-empty", atom("ok"));
    t.same("result-empty", atom("error"));
    assert_eq!(
        t.fails("result-empty", tagged("ok", int(1))),
        "ok takes no value: pass the atom ok at \"v\""
    );
    assert_eq!(
        t.fails("result", atom("ok")),
        "ok takes a value: pass {ok, Value} at \"v\""
    );
    assert_eq!(
        t.fails("result", tagged("error", int(1))),
        "expected a string (a UTF-8 binary), got: 1 at \"v.error\""
    );
    assert!(t
        .fails("result", tagged("fine", int(1)))
        .starts_with("expected a result"));
}

#[test]
fn params_are_matched_in_order_and_counted() {
    let (mut store, instance) = instance("types.wasm");
    let distance = func(&mut store, &instance, &[ROUNDTRIP, "distance"]);
    let a = record(&[("x", int(1)), ("y", int(1))]);
    let b = record(&[("x", int(4)), ("y", int(5))]);
    assert_eq!(
        call1(&mut store, distance, &[a.clone(), b.clone()]),
        Ok(int(25))
    );
    assert_eq!(
        call(&mut store, distance, std::slice::from_ref(&a)),
        Err("expected 2 params, got 1".to_string())
    );
    assert_eq!(
        call(&mut store, distance, &[a, int(1)]),
        Err("expected a record (a map with the fields x, y), got: 1 at \"b\"".to_string())
    );
}

#[test]
fn world_level_exports_are_called_by_name() {
    let (mut store, instance) = instance("types.wasm");
    let add = func(&mut store, &instance, &["add"]);
    assert_eq!(call1(&mut store, add, &[int(2), int(40)]), Ok(int(42)));
    let greet = func(&mut store, &instance, &["greet"]);
    assert_eq!(
        call1(&mut store, greet, &[string("Ada")]),
        Ok(string("Hello, Ada!"))
    );
    let nothing = func(&mut store, &instance, &["nothing"]);
    assert_eq!(call(&mut store, nothing, &[]), Ok(vec![]));
}
