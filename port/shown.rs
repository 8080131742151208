//! A term as Elixir writes it, short: for error messages about what a caller sent
//! (`expected a u32 (an integer), got: 1.0`). Bounded in length, depth and work,
//! whatever the term; the rest is left out as `...`.

use eetf::Term;
use std::fmt::Write;

/// Characters written before the rest is left out.
const MAX: usize = 80;
/// Levels of nesting written before deeper ones are left out.
const MAX_DEPTH: usize = 6;

/// `t` as Elixir writes it, at most [`MAX`] characters.
pub fn show(t: &Term) -> String {
    let mut out = String::new();
    write_term(&mut out, t, 0);
    if out.chars().count() > MAX {
        let mut cut: String = out.chars().take(MAX - 3).collect();
        cut.push_str("...");
        return cut;
    }
    out
}

fn full(out: &str) -> bool {
    out.len() > MAX
}

fn write_term(out: &mut String, t: &Term, depth: usize) {
    if full(out) {
        return;
    }
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match t {
        Term::Atom(a) => write_atom(out, &a.name),
        Term::FixInteger(i) => {
            let _ = write!(out, "{}", i.value);
        }
        Term::BigInteger(i) => {
            let _ = write!(out, "{}", i.value);
        }
        Term::Float(f) => write_float(out, f.value),
        Term::Binary(b) => write_binary(out, &b.bytes),
        Term::BitBinary(b) => {
            let _ = write!(out, "<<...{} bits>>", b.bytes.len() * 8);
        }
        Term::ByteList(l) => {
            let elements: Vec<Term> = l
                .bytes
                .iter()
                .map(|&b| Term::from(eetf::FixInteger::from(i32::from(b))))
                .collect();
            write_seq(out, "[", &elements, "]", depth);
        }
        Term::List(l) => write_seq(out, "[", &l.elements, "]", depth),
        Term::ImproperList(l) => {
            out.push('[');
            write_elements(out, &l.elements, depth);
            out.push_str(" | ");
            write_term(out, &l.last, depth + 1);
            out.push(']');
        }
        Term::Tuple(t) => write_seq(out, "{", &t.elements, "}", depth),
        Term::Map(m) => {
            // In a stable order (the decoded map has none): by kind as the BEAM orders
            // terms, then as written. Keyword style only when every key is an atom.
            let keyword = m.map.keys().all(|k| matches!(k, Term::Atom(_)));
            let mut pairs: Vec<((u8, String), &Term)> = m
                .map
                .iter()
                .map(|(k, v)| ((rank(k), key(k, keyword)), v))
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            let pairs = pairs.into_iter().map(|((_, k), v)| (k, v));
            out.push_str("%{");
            for (i, (k, v)) in pairs.enumerate() {
                if full(out) {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&k);
                write_term(out, v, depth + 1);
            }
            out.push('}');
        }
        Term::Pid(_) => out.push_str("#PID<...>"),
        Term::Port(_) => out.push_str("#Port<...>"),
        Term::Reference(_) => out.push_str("#Reference<...>"),
        Term::ExternalFun(_) | Term::InternalFun(_) => out.push_str("#Function<...>"),
    }
}

/// A map key as Elixir writes it before its value: `name: ` (`keyword`) or `key => `.
fn key(k: &Term, keyword: bool) -> String {
    match k {
        Term::Atom(a) if keyword && plain_atom(&a.name) => format!("{}: ", a.name),
        Term::Atom(a) if keyword => format!("{:?}: ", a.name),
        other => {
            let mut s = String::new();
            write_term(&mut s, other, MAX_DEPTH);
            s.push_str(" => ");
            s
        }
    }
}

/// Where the BEAM's term order puts a term's kind.
fn rank(t: &Term) -> u8 {
    match t {
        Term::FixInteger(_) | Term::BigInteger(_) | Term::Float(_) => 0,
        Term::Atom(_) => 1,
        Term::Reference(_) => 2,
        Term::ExternalFun(_) | Term::InternalFun(_) => 3,
        Term::Port(_) => 4,
        Term::Pid(_) => 5,
        Term::Tuple(_) => 6,
        Term::Map(_) => 7,
        Term::List(_) | Term::ByteList(_) | Term::ImproperList(_) => 8,
        Term::Binary(_) | Term::BitBinary(_) => 9,
    }
}

fn write_seq(out: &mut String, open: &str, elements: &[Term], close: &str, depth: usize) {
    out.push_str(open);
    write_elements(out, elements, depth);
    out.push_str(close);
}

fn write_elements(out: &mut String, elements: &[Term], depth: usize) {
    for (i, e) in elements.iter().enumerate() {
        if full(out) {
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        write_term(out, e, depth + 1);
    }
}

/// Whether Elixir writes the atom without quotes.
fn plain_atom(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let body = name.trim_end_matches(['?', '!']);
    first_ok
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
}

fn write_atom(out: &mut String, name: &str) {
    match name {
        "nil" | "true" | "false" => out.push_str(name),
        _ if plain_atom(name) => {
            out.push(':');
            out.push_str(name);
        }
        _ if name.starts_with("Elixir.") => out.push_str(&name["Elixir.".len()..]),
        _ => {
            let _ = write!(out, ":{name:?}");
        }
    }
}

fn write_float(out: &mut String, v: f64) {
    // Rust writes 1.0 and 1e300; Elixir 1.0 and 1.0e300.
    let s = format!("{v:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) if !mantissa.contains('.') => {
            let _ = write!(out, "{mantissa}.0e{exp}");
        }
        _ => out.push_str(&s),
    }
}

fn write_binary(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            let shown: String = text.chars().take(MAX).collect();
            let _ = write!(out, "{shown:?}");
        }
        Err(_) => {
            out.push_str("<<");
            for (i, b) in bytes.iter().take(MAX / 4).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{b}");
            }
            if bytes.len() > MAX / 4 {
                out.push_str(", ...");
            }
            out.push_str(">>");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    #[test]
    fn floats_keep_their_point() {
        assert_eq!(show(&term::float(1.0)), "1.0");
        assert_eq!(show(&term::float(1e300)), "1.0e300");
        assert_eq!(show(&term::float(-2.5)), "-2.5");
    }

    #[test]
    fn atoms_tuples_lists_and_maps_as_elixir_writes_them() {
        let circle = term::tuple(vec![term::atom("circle"), term::int(1), term::int(2)]);
        assert_eq!(show(&circle), "{:circle, 1, 2}");
        assert_eq!(show(&term::atom("full-name")), ":\"full-name\"");
        assert_eq!(show(&term::atom("nil")), "nil");
        assert_eq!(show(&term::list(vec![term::atom("read")])), "[:read]");
        let map = term::map(vec![
            (term::atom("b"), term::int(2)),
            (term::atom("a"), term::string("x")),
        ]);
        assert_eq!(show(&map), "%{a: \"x\", b: 2}");
        let mixed = term::map(vec![
            (term::string("b"), term::int(2)),
            (term::atom("a"), term::int(1)),
        ]);
        assert_eq!(show(&mixed), "%{:a => 1, \"b\" => 2}");
    }

    #[test]
    fn what_cannot_be_written_back_is_named() {
        assert_eq!(show(&term::binary(vec![0xff, 1])), "<<255, 1>>");
    }

    #[test]
    fn long_and_deep_terms_are_cut() {
        let long = term::list((0..1000).map(term::int).collect());
        assert!(show(&long).chars().count() <= MAX);
        let mut deep = term::int(0);
        for _ in 0..1000 {
            deep = term::list(vec![deep]);
        }
        assert!(show(&deep).contains("..."));
    }
}
