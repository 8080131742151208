//! Terms to component values (`Val`), guided by the WIT type: the direction of a call's
//! params and of what a host import returns. The mapping is in `values`' doc.
//!
//! The recursion follows the WIT type, which is finite, so a deeply nested term cannot
//! make it deeper than the type is.

use super::path::{show, Path, ValueError};
use super::resources::Handles;
use crate::term;
use eetf::Term;
use std::collections::HashMap;
use wasmtime::component::types::{self as wit, Type};
use wasmtime::component::Val;

/// For WIT's `map` and fixed-length lists, which wasmtime 48 gates behind features that are
/// off by default.
pub(super) const UNSTABLE: &str = "WIT maps and fixed-length lists are not supported";

/// `int_in` for each integer type: the range is the type's own.
macro_rules! int {
    ($t:ty, $term:expr, $name:expr, $path:expr) => {
        int_in($term, $name, <$t>::MIN.into(), <$t>::MAX.into(), $path).map(|v| v as $t)
    };
}

/// Converts `t` to a value of type `ty`; `path` says where `t` is (for errors).
/// Resource handles (`own<T>`, `borrow<T>`) are `h`'s to convert.
pub fn to_val(
    t: &Term,
    ty: &Type,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Val, ValueError> {
    match ty {
        Type::Bool => match term::as_atom(t) {
            Some("true") => Ok(Val::Bool(true)),
            Some("false") => Ok(Val::Bool(false)),
            _ => Err(path.expected("a bool (true or false)", t)),
        },
        Type::S8 => int!(i8, t, "s8", path).map(Val::S8),
        Type::U8 => int!(u8, t, "u8", path).map(Val::U8),
        Type::S16 => int!(i16, t, "s16", path).map(Val::S16),
        Type::U16 => int!(u16, t, "u16", path).map(Val::U16),
        Type::S32 => int!(i32, t, "s32", path).map(Val::S32),
        Type::U32 => int!(u32, t, "u32", path).map(Val::U32),
        Type::S64 => int!(i64, t, "s64", path).map(Val::S64),
        Type::U64 => int!(u64, t, "u64", path).map(Val::U64),
        Type::Float32 => float32(t, path).map(Val::Float32),
        Type::Float64 => term::as_f64(t)
            .map(Val::Float64)
            .ok_or_else(|| path.expected("an f64 (a float)", t)),
        Type::Char => char_val(t, path).map(Val::Char),
        Type::String => string_val(t, path).map(Val::String),
        Type::List(list) => list_val(t, &list.ty(), path, h).map(Val::List),
        Type::Tuple(tuple) => tuple_val(t, tuple, path, h),
        Type::Record(record) => record_val(t, record, path, h),
        Type::Variant(variant) => variant_val(t, variant, path, h),
        Type::Enum(e) => enum_val(t, e, path),
        Type::Flags(flags) => flags_val(t, flags, path),
        Type::Option(option) => option_val(t, option, path, h),
        Type::Result(result) => result_val(t, result, path, h),
        Type::Own(_) | Type::Borrow(_) => h.lower(t, ty, path),
        Type::Map(_) | Type::FixedLengthList(_) => Err(path.fail(UNSTABLE)),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Err(path.fail("futures, streams and error contexts are not supported"))
        }
    }
}

/// An integer of the WIT type `name`, which must be in `min..=max` (the target type's range,
/// so the caller's `as` cast cannot wrap).
fn int_in(t: &Term, name: &str, min: i128, max: i128, path: &Path) -> Result<i128, ValueError> {
    let Some(value) = term::as_integer(t) else {
        return Err(path.expected(&format!("a {name} (an integer)"), t));
    };
    i128::try_from(&value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            path.fail(format!(
                "{value} is out of range for {name} ({min} to {max})"
            ))
        })
}

/// An f32: a finite value beyond f32's range is an error rather than an infinity.
fn float32(t: &Term, path: &Path) -> Result<f32, ValueError> {
    let f = term::as_f64(t).ok_or_else(|| path.expected("an f32 (a float)", t))?;
    let narrowed = f as f32;
    if f.is_finite() && narrowed.is_infinite() {
        return Err(path.fail(format!("{f:e} is out of range for f32")));
    }
    Ok(narrowed)
}

fn char_val(t: &Term, path: &Path) -> Result<char, ValueError> {
    const WHAT: &str = "a char (a string of one character, or a code point)";
    match t {
        Term::Binary(b) => {
            let s = std::str::from_utf8(&b.bytes).map_err(|_| path.expected(WHAT, t))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(path.expected(WHAT, t)),
            }
        }
        _ => {
            let code = term::as_integer(t).ok_or_else(|| path.expected(WHAT, t))?;
            u32::try_from(&code)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| path.fail(format!("{} is not a Unicode scalar value", show(t))))
        }
    }
}

fn string_val(t: &Term, path: &Path) -> Result<String, ValueError> {
    match t {
        Term::Binary(b) => String::from_utf8(b.bytes.clone())
            .map_err(|_| path.fail("the string is not valid UTF-8")),
        _ => Err(path.expected("a string (a UTF-8 binary)", t)),
    }
}

fn list_val(
    t: &Term,
    item: &Type,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Vec<Val>, ValueError> {
    let items = term::as_list(t, "list").map_err(|_| path.expected("a list", t))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| path.within(Path::index(i), |p| to_val(x, item, p, h)))
        .collect()
}

fn tuple_val(
    t: &Term,
    tuple: &wit::Tuple,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Val, ValueError> {
    let types: Vec<Type> = tuple.types().collect();
    let items = match t {
        Term::Tuple(tp) if tp.elements.len() == types.len() => &tp.elements,
        _ => {
            return Err(path.expected(&format!("a tuple of {} elements", types.len()), t));
        }
    };
    let vals = items
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (x, ty))| path.within(Path::index(i), |p| to_val(x, ty, p, h)))
        .collect::<Result<_, _>>()?;
    Ok(Val::Tuple(vals))
}

/// A name from the BEAM, cut for an error message.
fn cut(name: &str) -> String {
    const MAX: usize = 60;
    if name.chars().count() <= MAX {
        name.to_string()
    } else {
        format!("{}...", name.chars().take(MAX).collect::<String>())
    }
}

/// The name of a map key that names a field, case or flag: an atom or a binary.
fn key_name(k: &Term) -> Option<&str> {
    match k {
        Term::Atom(a) => Some(&a.name),
        Term::Binary(b) => std::str::from_utf8(&b.bytes).ok(),
        _ => None,
    }
}

/// The value of each named key of a map; an error for a key that is not one of `names`,
/// or a name given both as an atom and as a binary.
fn named_entries<'a>(
    m: &'a HashMap<Term, Term>,
    names: &[&str],
    kind: &str,
    path: &Path,
) -> Result<HashMap<&'a str, &'a Term>, ValueError> {
    let mut by_name = HashMap::with_capacity(m.len());
    for (k, v) in m {
        match key_name(k).filter(|n| names.contains(n)) {
            Some(name) => {
                if by_name.insert(name, v).is_some() {
                    return Err(path.fail(format!(
                        "{kind} {name} is given twice (as an atom and as a string)"
                    )));
                }
            }
            None => {
                let shown = key_name(k).map_or_else(|| show(k), str::to_string);
                return Err(path.fail(format!(
                    "unknown {kind} {} (expected {})",
                    cut(&shown),
                    names.join(", ")
                )));
            }
        }
    }
    Ok(by_name)
}

fn record_val(
    t: &Term,
    record: &wit::Record,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Val, ValueError> {
    let fields: Vec<wit::Field> = record.fields().collect();
    let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
    let Term::Map(m) = t else {
        return Err(path.expected(
            &format!("a record (a map with the fields {})", names.join(", ")),
            t,
        ));
    };
    let given = named_entries(&m.map, &names, "field", path)?;
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !given.contains_key(n))
        .collect();
    if !missing.is_empty() {
        return Err(path.fail(format!(
            "expected {} fields, got {}: missing {}",
            names.len(),
            given.len(),
            missing.join(", ")
        )));
    }
    let vals = fields
        .iter()
        .map(|f| {
            let v = path.within(Path::field(f.name), |p| to_val(given[f.name], &f.ty, p, h))?;
            Ok((f.name.to_string(), v))
        })
        .collect::<Result<_, ValueError>>()?;
    Ok(Val::Record(vals))
}

fn variant_val(
    t: &Term,
    variant: &wit::Variant,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Val, ValueError> {
    let cases: Vec<wit::Case> = variant.cases().collect();
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    let Some((tag, payload)) = tag_and_payload(t) else {
        return Err(path.expected(&variant_shape(&names), t));
    };
    let Some(case) = cases.iter().find(|c| c.name == tag) else {
        return Err(path.fail(format!(
            "unknown case {} (expected one of {})",
            cut(tag),
            names.join(", ")
        )));
    };
    let inner = payload_val(tag, case.ty.as_ref(), payload, path, h)?;
    Ok(Val::Variant(tag.to_string(), inner))
}

fn variant_shape(names: &[&str]) -> String {
    format!(
        "a variant (an atom or {{case, Value}} for one of {})",
        names.join(", ")
    )
}

fn enum_val(t: &Term, e: &wit::Enum, path: &Path) -> Result<Val, ValueError> {
    let names: Vec<&str> = e.names().collect();
    match term::as_atom(t) {
        Some(name) if names.contains(&name) => Ok(Val::Enum(name.to_string())),
        Some(name) => Err(path.fail(format!(
            "unknown case {} (expected one of {})",
            cut(name),
            names.join(", ")
        ))),
        None => Err(path.expected(
            &format!("an enum (an atom, one of {})", names.join(", ")),
            t,
        )),
    }
}

fn flags_val(t: &Term, flags: &wit::Flags, path: &mut Path) -> Result<Val, ValueError> {
    let names: Vec<&str> = flags.names().collect();
    let Term::Map(m) = t else {
        return Err(path.expected(
            &format!("flags (a map of {} to booleans)", names.join(", ")),
            t,
        ));
    };
    let given = named_entries(&m.map, &names, "flag", path)?;
    let mut set = Vec::new();
    // In declaration order, as the component model lists them.
    for name in names {
        let Some(v) = given.get(name) else { continue };
        match term::as_atom(v) {
            Some("true") => set.push(name.to_string()),
            Some("false") => {}
            _ => {
                return Err(path.within(Path::field(name), |p| p.expected("a boolean", v)));
            }
        }
    }
    Ok(Val::Flags(set))
}

fn option_val(
    t: &Term,
    option: &wit::OptionType,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Val, ValueError> {
    match t {
        Term::Atom(a) if a.name == "none" => Ok(Val::Option(None)),
        Term::Tuple(tp)
            if tp.elements.len() == 2 && term::as_atom(&tp.elements[0]) == Some("some") =>
        {
            let v = path.within(Path::field("some"), |p| {
                to_val(&tp.elements[1], &option.ty(), p, h)
            })?;
            Ok(Val::Option(Some(Box::new(v))))
        }
        _ => Err(path.expected("an option (none or {some, Value})", t)),
    }
}

fn result_val(
    t: &Term,
    result: &wit::ResultType,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Val, ValueError> {
    const WHAT: &str =
        "a result ({ok, Value} or {error, Value}; ok or error for a side without a type)";
    let (tag, payload) = match tag_and_payload(t) {
        Some((tag @ ("ok" | "error"), payload)) => (tag, payload),
        _ => return Err(path.expected(WHAT, t)),
    };
    let ty = if tag == "ok" {
        result.ok()
    } else {
        result.err()
    };
    let inner = payload_val(tag, ty.as_ref(), payload, path, h)?;
    Ok(Val::Result(if tag == "ok" {
        Ok(inner)
    } else {
        Err(inner)
    }))
}

/// `Tag` as `(Tag, None)`, `{Tag, Payload}` as `(Tag, Some(Payload))`.
fn tag_and_payload(t: &Term) -> Option<(&str, Option<&Term>)> {
    match t {
        Term::Atom(a) => Some((&a.name, None)),
        Term::Tuple(tp) if tp.elements.len() == 2 => {
            term::as_atom(&tp.elements[0]).map(|tag| (tag, Some(&tp.elements[1])))
        }
        _ => None,
    }
}

/// The payload of a variant case or result side: present exactly when the case has a type.
fn payload_val(
    tag: &str,
    ty: Option<&Type>,
    payload: Option<&Term>,
    path: &mut Path,
    h: &mut dyn Handles,
) -> Result<Option<Box<Val>>, ValueError> {
    match (ty, payload) {
        (None, None) => Ok(None),
        (Some(ty), Some(p)) => {
            let v = path.within(Path::field(tag), |path| to_val(p, ty, path, h))?;
            Ok(Some(Box::new(v)))
        }
        (Some(_), None) => Err(path.fail(format!("{tag} takes a value: pass {{{tag}, Value}}"))),
        (None, Some(_)) => Err(path.fail(format!("{tag} takes no value: pass the atom {tag}"))),
    }
}
