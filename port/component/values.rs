//! Converting between Erlang terms and component-model values (`wasmtime::component::Val`),
//! guided by the WIT type, as Wasmex 0.15.1 maps them:
//!
//! | WIT | term (to the guest) | term (from the guest) |
//! | --- | --- | --- |
//! | `s8`..`u64` | an integer in the type's range | an integer |
//! | `f32`, `f64` | a float or an integer; `nan`, `infinity`, `neg_infinity` | a float or one of those atoms |
//! | `bool` | `true` / `false` | the same |
//! | `char` | a one-character string or a code point | a one-character string |
//! | `string` | a UTF-8 binary | a binary |
//! | `list<T>`, `tuple<..>` | a list, a tuple | the same |
//! | `record` | a map with the WIT field names as atom (or binary) keys | a map with atom keys |
//! | `variant` | `case` or `{case, Value}` | the same |
//! | `enum` | an atom | an atom |
//! | `flags` | a map of flag atoms to booleans (a missing flag is false) | a map of the set flags to `true` |
//! | `option<T>` | `none` / `{some, Value}` | the same |
//! | `result<T, E>` | `{ok, V}` / `{error, E}`; bare `ok` / `error` where the side has no type | the same |
//!
//! Unlike Wasmex 0.15.1, an integer out of its type's range is an error, not wrapped.
//! A value that does not fit its type gets an error that names where it is, as Wasmex
//! 0.12+ does: `256 is out of range for u8 (0 to 255) at "v.age"`.
//!
//! Terms become values in `from_term`; values become terms here. Both recursions follow
//! the WIT type, which is finite.

pub use super::from_term::to_val;
use super::path::{Path, ValueError};
use super::resources::{Handles, NoHandles};
use crate::term;
use eetf::Term;
use wasmtime::component::types::{ComponentFunc, Type};
use wasmtime::component::Val;

/// The longest name an atom can have (in characters), in Erlang.
const MAX_ATOM_CHARS: usize = 255;

/// Converts a call's params to the function's parameter types; each param's path starts
/// with its WIT name. Resource handles are refused.
pub fn params_to_vals(func: &ComponentFunc, params: &[Term]) -> Result<Vec<Val>, ValueError> {
    params_to_vals_with(func, params, &mut NoHandles)
}

/// `params_to_vals`, with resource handles converted by `h`.
pub fn params_to_vals_with(
    func: &ComponentFunc,
    params: &[Term],
    h: &mut dyn Handles,
) -> Result<Vec<Val>, ValueError> {
    let types: Vec<(&str, Type)> = func.params().collect();
    if types.len() != params.len() {
        return Err(ValueError::at_root(format!(
            "expected {} params, got {}",
            types.len(),
            params.len()
        )));
    }
    types
        .iter()
        .zip(params)
        .map(|((name, ty), param)| to_val(param, ty, &mut Path::new(name), h))
        .collect()
}

/// Converts what a host function (an import) returned to the function's result types:
/// nothing for a function without results, else the one result (the path's root is
/// `result`). Resource handles are converted by `h`.
pub fn result_to_vals(
    func: &ComponentFunc,
    returned: &Term,
    h: &mut dyn Handles,
) -> Result<Vec<Val>, ValueError> {
    func.results()
        .map(|ty| to_val(returned, &ty, &mut Path::new("result"), h))
        .collect()
}

/// Converts values that came from the guest (an export's results, an import's params);
/// resource handles are refused.
pub fn vals_to_terms(vals: &[Val]) -> Result<Vec<Term>, ValueError> {
    vals_to_terms_with(vals, &mut NoHandles)
}

/// `vals_to_terms`, with resource handles converted by `h`.
pub fn vals_to_terms_with(vals: &[Val], h: &mut dyn Handles) -> Result<Vec<Term>, ValueError> {
    vals.iter()
        .enumerate()
        .map(|(i, v)| to_term(v, &mut Path::new(&format!("value[{i}]")), h))
        .collect()
}

/// Converts a value that came from the guest to a term; `h` converts resource handles.
pub fn to_term(v: &Val, path: &mut Path, h: &mut dyn Handles) -> Result<Term, ValueError> {
    Ok(match v {
        Val::Bool(b) => term::boolean(*b),
        Val::S8(i) => term::int((*i).into()),
        Val::U8(i) => term::uint((*i).into()),
        Val::S16(i) => term::int((*i).into()),
        Val::U16(i) => term::uint((*i).into()),
        Val::S32(i) => term::int((*i).into()),
        Val::U32(i) => term::uint((*i).into()),
        Val::S64(i) => term::int(*i),
        Val::U64(i) => term::uint(*i),
        Val::Float32(f) => term::float((*f).into()),
        Val::Float64(f) => term::float(*f),
        Val::Char(c) => term::string(c.encode_utf8(&mut [0; 4])),
        Val::String(s) => term::string(s),
        Val::List(items) => term::list(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| path.within(Path::index(i), |p| to_term(item, p, h)))
                .collect::<Result<_, _>>()?,
        ),
        Val::Tuple(items) => term::tuple(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| path.within(Path::index(i), |p| to_term(item, p, h)))
                .collect::<Result<_, _>>()?,
        ),
        Val::Record(fields) => term::map(
            fields
                .iter()
                .map(|(name, value)| {
                    let key = atom(name, path)?;
                    let value = path.within(Path::field(name), |p| to_term(value, p, h))?;
                    Ok((key, value))
                })
                .collect::<Result<_, _>>()?,
        ),
        Val::Variant(case, None) | Val::Enum(case) => atom(case, path)?,
        Val::Variant(case, Some(payload)) => term::tuple(vec![
            atom(case, path)?,
            path.within(Path::field(case), |p| to_term(payload, p, h))?,
        ]),
        Val::Option(None) => term::atom("none"),
        Val::Option(Some(v)) => tagged("some", v, path, h)?,
        Val::Result(Ok(None)) => term::atom("ok"),
        Val::Result(Ok(Some(v))) => tagged("ok", v, path, h)?,
        Val::Result(Err(None)) => term::atom("error"),
        Val::Result(Err(Some(v))) => tagged("error", v, path, h)?,
        Val::Flags(set) => term::map(
            set.iter()
                .map(|name| Ok((atom(name, path)?, term::boolean(true))))
                .collect::<Result<_, ValueError>>()?,
        ),
        Val::Map(_) | Val::FixedLengthList(_) => return Err(path.fail(super::from_term::UNSTABLE)),
        Val::Resource(r) => h.lift(*r, path)?,
        Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            return Err(path.fail("futures, streams and error contexts are not supported"))
        }
    })
}

/// `{Tag, V}` with `V` converted under `.Tag` in the path.
fn tagged(tag: &str, v: &Val, path: &mut Path, h: &mut dyn Handles) -> Result<Term, ValueError> {
    let inner = path.within(Path::field(tag), |p| to_term(v, p, h))?;
    Ok(term::tuple(vec![term::atom(tag), inner]))
}

/// A WIT name as an atom; the guest's component type chooses the names, and the BEAM
/// refuses atoms longer than 255 characters.
fn atom(name: &str, path: &Path) -> Result<Term, ValueError> {
    if name.chars().count() > MAX_ATOM_CHARS {
        return Err(path.fail(format!(
            "the name {}... is longer than {MAX_ATOM_CHARS} characters, too long for an atom",
            name.chars().take(32).collect::<String>()
        )));
    }
    Ok(term::atom(name))
}
