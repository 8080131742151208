//! Building and taking apart Erlang terms (`eetf::Term`), with errors as readable messages.

use eetf::{Atom, BigInteger, Binary, FixInteger, Float, List, Map, Term, Tuple};
use num_bigint::BigInt;
use std::borrow::Cow;
use std::collections::HashMap;

/// A failure described for the user: it travels back to the BEAM as a binary.
pub type Fallible<T> = Result<T, String>;

pub fn atom(name: &str) -> Term {
    Term::Atom(Atom::from(name))
}

pub fn nil() -> Term {
    atom("nil")
}

pub fn boolean(b: bool) -> Term {
    atom(if b { "true" } else { "false" })
}

pub fn tuple(elements: Vec<Term>) -> Term {
    Term::Tuple(Tuple::from(elements))
}

pub fn list(elements: Vec<Term>) -> Term {
    Term::List(List::from(elements))
}

pub fn binary(bytes: Vec<u8>) -> Term {
    Term::Binary(Binary::from(bytes))
}

pub fn string(s: &str) -> Term {
    binary(s.as_bytes().to_vec())
}

/// An integer. Negative values are encoded as big integers (which the BEAM reads back
/// as ordinary integers) because eetf 0.10 writes a list of small integers below 256 as
/// a byte string, turning -5 into 251.
pub fn int(i: i64) -> Term {
    match i32::try_from(i) {
        Ok(small) if small >= 0 => Term::FixInteger(FixInteger::from(small)),
        _ => Term::BigInteger(BigInteger::from(i)),
    }
}

pub fn uint(u: u64) -> Term {
    u128_term(u.into())
}

pub fn u128_term(u: u128) -> Term {
    match i32::try_from(u) {
        Ok(small) => Term::FixInteger(FixInteger::from(small)),
        Err(_) => Term::BigInteger(BigInteger {
            value: BigInt::from(u),
        }),
    }
}

/// Floats: ETF has no NaN or infinities, so those travel as the atoms `nan`,
/// `infinity` and `neg_infinity`.
pub fn float(f: f64) -> Term {
    if f.is_nan() {
        atom("nan")
    } else if f == f64::INFINITY {
        atom("infinity")
    } else if f == f64::NEG_INFINITY {
        atom("neg_infinity")
    } else {
        Term::Float(Float { value: f })
    }
}

pub fn map(pairs: Vec<(Term, Term)>) -> Term {
    Term::Map(Map::from(pairs.into_iter().collect::<HashMap<_, _>>()))
}

pub fn ok(value: Term) -> Term {
    tuple(vec![atom("ok"), value])
}

/// A short, bounded rendering of a term for error messages, as Elixir writes it (see
/// `shown.rs`).
pub use crate::shown::show;

pub fn as_atom(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(a.name.as_str()),
        _ => None,
    }
}

pub fn is_nil(t: &Term) -> bool {
    as_atom(t) == Some("nil")
}

pub fn as_bool(t: &Term, what: &str) -> Fallible<bool> {
    match as_atom(t) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(format!("{what} must be a boolean, got: {}", show(t))),
    }
}

/// Any integer term as a big integer.
pub fn as_integer(t: &Term) -> Option<BigInt> {
    match t {
        Term::FixInteger(i) => Some(BigInt::from(i.value)),
        Term::BigInteger(b) => Some(b.value.clone()),
        _ => None,
    }
}

pub fn as_i64(t: &Term) -> Option<i64> {
    match t {
        Term::FixInteger(i) => Some(i64::from(i.value)),
        Term::BigInteger(b) => i64::try_from(&b.value).ok(),
        _ => None,
    }
}

pub fn as_u64(t: &Term, what: &str) -> Fallible<u64> {
    match t {
        Term::FixInteger(i) if i.value >= 0 => Ok(i.value as u64),
        Term::BigInteger(b) => {
            u64::try_from(&b.value).map_err(|_| not_a(what, "non-negative integer", t))
        }
        _ => Err(not_a(what, "non-negative integer", t)),
    }
}

pub fn as_f64(t: &Term) -> Option<f64> {
    match t {
        Term::Float(f) => Some(f.value),
        Term::FixInteger(i) => Some(f64::from(i.value)),
        // Beyond i64 but within f64's range (about 2^1024); past it, not a float.
        Term::BigInteger(b) if b.value.bits() <= 1024 => b
            .value
            .to_string()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite()),
        Term::BigInteger(_) => None,
        Term::Atom(a) => match a.name.as_str() {
            "nan" => Some(f64::NAN),
            "infinity" => Some(f64::INFINITY),
            "neg_infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

pub fn as_bytes<'a>(t: &'a Term, what: &str) -> Fallible<&'a [u8]> {
    match t {
        Term::Binary(b) => Ok(&b.bytes),
        _ => Err(not_a(what, "binary", t)),
    }
}

/// The bytes of a binary, moved out of it.
pub fn into_bytes(t: Term, what: &str) -> Fallible<Vec<u8>> {
    match t {
        Term::Binary(b) => Ok(b.bytes),
        other => Err(not_a(what, "binary", &other)),
    }
}

pub fn as_str<'a>(t: &'a Term, what: &str) -> Fallible<&'a str> {
    match t {
        Term::Binary(b) => {
            std::str::from_utf8(&b.bytes).map_err(|_| format!("{what} must be valid UTF-8"))
        }
        Term::Atom(a) => Ok(a.name.as_str()),
        _ => Err(not_a(what, "string", t)),
    }
}

/// A proper list. Erlang sends lists of small integers as byte strings; those are
/// expanded into integer terms.
/// The elements of a list, borrowed (a list of small integers arrives as a byte list and
/// is expanded).
pub fn as_list<'a>(t: &'a Term, what: &str) -> Fallible<Cow<'a, [Term]>> {
    match t {
        Term::List(l) => Ok(Cow::Borrowed(&l.elements)),
        Term::ByteList(b) => Ok(Cow::Owned(
            b.bytes.iter().map(|&x| int(i64::from(x))).collect(),
        )),
        _ => Err(not_a(what, "list", t)),
    }
}

pub fn as_tuple<'a>(t: &'a Term, arity: usize, what: &str) -> Fallible<&'a [Term]> {
    match t {
        Term::Tuple(tp) if tp.elements.len() == arity => Ok(&tp.elements),
        _ => Err(not_a(what, &format!("tuple of {arity} elements"), t)),
    }
}

pub fn as_map<'a>(t: &'a Term, what: &str) -> Fallible<&'a HashMap<Term, Term>> {
    match t {
        Term::Map(m) => Ok(&m.map),
        _ => Err(not_a(what, "map", t)),
    }
}

/// Looks up an atom key in a map; a missing key reads as `nil`.
pub fn map_get<'a>(m: &'a HashMap<Term, Term>, key: &str) -> Option<&'a Term> {
    m.get(&atom(key)).filter(|v| !is_nil(v))
}

/// The boolean at `key` (`false` when missing or nil).
pub fn map_bool(m: &HashMap<Term, Term>, key: &str) -> Fallible<bool> {
    map_get(m, key).map_or(Ok(false), |v| as_bool(v, key))
}

/// The boolean at `key` (`false` when missing); anything else, nil included, is refused:
/// a setting given as nil is a mistake, not a choice of the default.
pub fn map_flag(m: &HashMap<Term, Term>, key: &str) -> Fallible<bool> {
    m.get(&atom(key)).map_or(Ok(false), |v| as_bool(v, key))
}

/// The non-negative integer at `key`, if there is one.
pub fn map_u64(m: &HashMap<Term, Term>, key: &str) -> Fallible<Option<u64>> {
    map_get(m, key).map(|v| as_u64(v, key)).transpose()
}

fn not_a(what: &str, kind: &str, t: &Term) -> String {
    format!("{what} must be a {kind}, got: {}", show(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_pick_the_smallest_encoding() {
        assert!(matches!(int(5), Term::FixInteger(_)));
        assert_eq!(as_i64(&int(-5)), Some(-5));
        assert!(matches!(int(i64::MAX), Term::BigInteger(_)));
        assert_eq!(as_i64(&int(i64::MIN)), Some(i64::MIN));
        assert_eq!(
            as_integer(&u128_term(u128::MAX)),
            Some(BigInt::from(u128::MAX))
        );
    }

    #[test]
    fn byte_lists_read_as_integer_lists() {
        let t = Term::ByteList(eetf::ByteList::from(vec![50u8, 8]));
        assert_eq!(as_list(&t, "params").unwrap(), vec![int(50), int(8)]);
    }

    #[test]
    fn wrong_shapes_name_what_was_expected() {
        let err = as_tuple(&int(1), 2, "args").unwrap_err();
        assert_eq!(err, "args must be a tuple of 2 elements, got: 1");
        assert_eq!(
            as_u64(&int(-1), "id").unwrap_err(),
            "id must be a non-negative integer, got: -1"
        );
        assert!(as_bytes(&atom("x"), "bytes")
            .unwrap_err()
            .contains("binary"));
    }

    #[test]
    fn non_finite_floats_become_atoms_and_back() {
        assert_eq!(float(f64::INFINITY), atom("infinity"));
        assert!(as_f64(&float(f64::NAN)).unwrap().is_nan());
        assert_eq!(as_f64(&float(1.5)), Some(1.5));
        let two_to_70 = Term::from(eetf::BigInteger {
            value: BigInt::from(1) << 70,
        });
        assert_eq!(as_f64(&two_to_70), Some(2f64.powi(70)));
        let two_to_2000 = Term::from(eetf::BigInteger {
            value: BigInt::from(1) << 2000,
        });
        assert_eq!(as_f64(&two_to_2000), None);
    }

    #[test]
    fn show_is_bounded() {
        let long = string(&"x".repeat(500));
        assert!(show(&long).len() <= 80);
    }
}

#[cfg(test)]
mod boundary_tests {
    use super::*;

    #[test]
    fn i32_min_survives_decode_and_encode() {
        // As :erlang.term_to_binary(-2147483648) produces it.
        let decoded = Term::decode(&[131u8, 98, 128, 0, 0, 0][..]).unwrap();
        assert_eq!(as_i64(&decoded), Some(i64::from(i32::MIN)));
        let round_trip = |t: Term| {
            let mut buf = Vec::new();
            t.encode(&mut buf).unwrap();
            Term::decode(&buf[..]).unwrap()
        };
        assert_eq!(
            as_i64(&round_trip(int(i64::from(i32::MIN)))),
            Some(i64::from(i32::MIN))
        );
    }

    #[test]
    fn lists_of_negative_integers_stay_negative() {
        let mut buf = Vec::new();
        list(vec![int(-5), int(7)]).encode(&mut buf).unwrap();
        let decoded = Term::decode(&buf[..]).unwrap();
        let back = as_list(&decoded, "list").unwrap();
        assert_eq!(
            back.iter().map(as_i64).collect::<Vec<_>>(),
            vec![Some(-5), Some(7)]
        );
    }
}
