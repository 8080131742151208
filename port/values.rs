//! Converting between Erlang terms and Wasm values, checked against the Wasm types.

use crate::term::{self, Fallible};
use eetf::Term;
use wasmtime::{Val, ValType, V128};

/// The name a value type has in the Elixir API (`:i32`, `:v128`, ...).
pub fn type_name(ty: &ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        // Like Wasmex, any reference type of a value reads as :extern_ref.
        ValType::Ref(_) => "extern_ref",
    }
}

/// How a value type reads in a module's description (`Wasmex.Module.exports/1`), as in
/// Wasmex: an atom for numbers and vectors, `{reference, "(ref null func)"}` for a
/// reference type, with wasmtime's text for the reference type.
pub fn type_term(ty: &ValType) -> Term {
    match ty {
        ValType::Ref(r) => ref_type_term(r),
        other => term::atom(type_name(other)),
    }
}

/// `{reference, Text}` for a reference type, e.g. `{reference, "(ref null extern)"}`.
pub fn ref_type_term(r: &wasmtime::RefType) -> Term {
    term::tuple(vec![term::atom("reference"), term::string(&r.to_string())])
}

/// Parses `:i32`-style atoms (as sent by the BEAM for import signatures).
pub fn parse_type(t: &Term) -> Fallible<ValType> {
    match term::as_atom(t) {
        Some("i32") => Ok(ValType::I32),
        Some("i64") => Ok(ValType::I64),
        Some("f32") => Ok(ValType::F32),
        Some("f64") => Ok(ValType::F64),
        Some("v128") => Ok(ValType::V128),
        _ => Err(format!(
            "invalid value type {}: expected :i32, :i64, :f32, :f64 or :v128",
            term::show(t)
        )),
    }
}

/// Converts call params to Wasm values of the given types.
pub fn to_vals(params: &[Term], types: &[ValType]) -> Fallible<Vec<Val>> {
    if params.len() != types.len() {
        return Err(format!(
            "number of params does not match. expected {}, got {}",
            types.len(),
            params.len()
        ));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (p, ty))| {
            to_val(p, ty).ok_or_else(|| {
                format!(
                    "Cannot convert argument #{} to a WebAssembly {} value.{}",
                    i + 1,
                    type_name(ty),
                    given(p)
                )
            })
        })
        .collect()
}

/// What Wasmex adds to a conversion error for a param that is not a number (the kind of
/// term it got); numbers that do not fit get nothing.
fn given(t: &Term) -> &'static str {
    match t {
        Term::Binary(_) | Term::BitBinary(_) => " Given `Binary`.",
        Term::Atom(_) => " Given `Atom`.",
        Term::Map(_) => " Given `Map`.",
        Term::List(_) | Term::ImproperList(_) | Term::ByteList(_) => " Given `List`.",
        Term::Tuple(_) => " Given `Tuple`.",
        Term::Pid(_) => " Given `Pid`.",
        Term::Port(_) => " Given `Port`.",
        Term::Reference(_) => " Given `Ref`.",
        Term::ExternalFun(_) | Term::InternalFun(_) => " Given `Fun`.",
        _ => "",
    }
}

/// One value; `None` when the term is not a number that fits the type.
pub fn to_val(t: &Term, ty: &ValType) -> Option<Val> {
    match ty {
        ValType::I32 => term::as_i64(t)
            .and_then(|i| i32::try_from(i).ok())
            .map(Val::I32),
        ValType::I64 => term::as_i64(t).map(Val::I64),
        ValType::F32 => term::as_f64(t)
            .and_then(f64_to_f32)
            .map(|f| Val::F32(f.to_bits())),
        ValType::F64 => term::as_f64(t).map(|f| Val::F64(f.to_bits())),
        ValType::V128 => term::as_integer(t)
            .and_then(|b| u128::try_from(&b).ok())
            .map(|u| Val::V128(V128::from(u))),
        ValType::Ref(_) => None,
    }
}

/// Narrows to f32, refusing finite values that overflow it.
fn f64_to_f32(f: f64) -> Option<f32> {
    let narrow = f as f32;
    if f.is_finite() && narrow.is_infinite() {
        None
    } else {
        Some(narrow)
    }
}

pub fn from_val(v: &Val) -> Fallible<Term> {
    Ok(match v {
        Val::I32(i) => term::int(i64::from(*i)),
        Val::I64(i) => term::int(*i),
        Val::F32(bits) => term::float(f64::from(f32::from_bits(*bits))),
        Val::F64(bits) => term::float(f64::from_bits(*bits)),
        Val::V128(v) => term::u128_term(v.as_u128()),
        _ => return Err("reference values cannot be passed to the BEAM".to_string()),
    })
}

pub fn from_vals(vals: &[Val]) -> Fallible<Term> {
    Ok(term::list(
        vals.iter().map(from_val).collect::<Fallible<_>>()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_must_fit_their_type() {
        assert!(to_val(&term::int(i64::from(i32::MAX)), &ValType::I32).is_some());
        assert!(to_val(&term::int(i64::from(i32::MAX) + 1), &ValType::I32).is_none());
        assert!(to_val(&term::int(-1), &ValType::V128).is_none());
        assert_eq!(
            to_val(&term::u128_term(u128::MAX), &ValType::V128)
                .unwrap()
                .unwrap_v128()
                .as_u128(),
            u128::MAX
        );
    }

    #[test]
    fn floats_accept_integers_and_reject_overflow() {
        assert_eq!(
            to_val(&term::int(3), &ValType::F32).unwrap().unwrap_f32(),
            3.0
        );
        assert!(to_val(&term::float(1e300), &ValType::F32).is_none());
        assert!(to_val(&term::atom("x"), &ValType::F64).is_none());
    }

    #[test]
    fn arity_and_type_errors_read_like_wasmex() {
        let types = [ValType::I32, ValType::I32];
        assert_eq!(
            to_vals(&[term::int(1)], &types).unwrap_err(),
            "number of params does not match. expected 2, got 1"
        );
        let err = to_vals(&[term::int(1), term::string("x")], &types).unwrap_err();
        assert_eq!(
            err,
            "Cannot convert argument #2 to a WebAssembly i32 value. Given `Binary`."
        );
        let refused = |t: Term| to_vals(&[t], &[ValType::I32]).unwrap_err();
        let prefix = "Cannot convert argument #1 to a WebAssembly i32 value.";
        assert_eq!(refused(term::nil()), format!("{prefix} Given `Atom`."));
        assert_eq!(refused(term::map(vec![])), format!("{prefix} Given `Map`."));
        assert_eq!(
            refused(term::list(vec![])),
            format!("{prefix} Given `List`.")
        );
        assert_eq!(refused(term::float(1.5)), prefix);
        assert_eq!(refused(term::int(1 << 40)), prefix);
    }

    #[test]
    fn results_round_trip() {
        let vals = [
            Val::I32(-4),
            Val::I64(i64::MIN),
            Val::F32(1.5f32.to_bits()),
            Val::F64(2.25f64.to_bits()),
        ];
        let t = from_vals(&vals).unwrap();
        let back: Vec<Term> = term::as_list(&t, "results").unwrap().into_owned();
        assert_eq!(back[0], term::int(-4));
        assert_eq!(term::as_f64(&back[2]), Some(1.5));
    }

    #[test]
    fn parses_type_atoms() {
        assert!(matches!(
            parse_type(&term::atom("v128")).unwrap(),
            ValType::V128
        ));
        assert!(parse_type(&term::atom("i16")).is_err());
    }
}
