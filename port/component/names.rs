//! The WIT names of a component's types: record fields, variant and enum cases, flags.
//!
//! Values from the guest carry these names as atoms (`%{"full-name": "Ada"}`), and the
//! BEAM reads the port's frames without creating atoms (`binary_to_term/2` with `:safe`).
//! So when a component is compiled the BEAM is told every name its types use, once, and
//! makes those atoms; a result or an import's params then always decode. The walk is
//! bounded: a component whose types take more steps, or hold more names, than any real one
//! is refused with an error rather than fill the BEAM's atom table.

use std::collections::BTreeSet;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::Component;
use wasmtime::Engine;

/// How many type nodes the walk visits at most (types may share subtypes, so a small
/// component could describe a huge tree).
const MAX_STEPS: usize = 1_000_000;
/// How many distinct names a component may use.
pub const MAX_NAMES: usize = 10_000;
/// The longest name that can be an atom, in characters.
const MAX_ATOM_CHARS: usize = 255;

/// The names `component`'s imports and exports use, sorted, with `some` and `none`.
pub fn of(component: &Component, engine: &Engine) -> Result<Vec<String>, String> {
    let mut walk = Walk {
        names: BTreeSet::from(["none".to_string(), "some".to_string()]),
        steps: 0,
    };
    let ty = component.component_type();
    for (_, item) in ty.imports(engine).chain(ty.exports(engine)) {
        walk.item(&item.ty, engine)?;
    }
    Ok(walk.names.into_iter().collect())
}

struct Walk {
    names: BTreeSet<String>,
    steps: usize,
}

impl Walk {
    fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(format!(
                "the component's types are too large to describe (over {MAX_STEPS} type nodes)"
            ));
        }
        Ok(())
    }

    fn name(&mut self, name: &str) -> Result<(), String> {
        // Longer names cannot be atoms: a value carrying one is refused where it is
        // converted (`values::to_term`), with its place.
        if name.chars().count() <= MAX_ATOM_CHARS && !self.names.contains(name) {
            if self.names.len() >= MAX_NAMES {
                return Err(format!(
                    "the component's types use more than {MAX_NAMES} distinct names"
                ));
            }
            self.names.insert(name.to_string());
        }
        Ok(())
    }

    fn item(&mut self, item: &ComponentItem, engine: &Engine) -> Result<(), String> {
        self.step()?;
        match item {
            ComponentItem::ComponentFunc(f) => self.func(f),
            ComponentItem::ComponentInstance(i) => i
                .exports(engine)
                .try_for_each(|(_, item)| self.item(&item.ty, engine)),
            ComponentItem::Component(c) => c
                .imports(engine)
                .chain(c.exports(engine))
                .try_for_each(|(_, item)| self.item(&item.ty, engine)),
            ComponentItem::Type(t) => self.ty(t),
            ComponentItem::CoreFunc(_) | ComponentItem::Module(_) | ComponentItem::Resource(_) => {
                Ok(())
            }
        }
    }

    fn func(&mut self, f: &ComponentFunc) -> Result<(), String> {
        for (_, ty) in f.params() {
            self.ty(&ty)?;
        }
        f.results().try_for_each(|ty| self.ty(&ty))
    }

    fn ty(&mut self, ty: &Type) -> Result<(), String> {
        self.step()?;
        match ty {
            Type::Record(r) => r.fields().try_for_each(|f| {
                self.name(f.name)?;
                self.ty(&f.ty)
            }),
            Type::Variant(v) => v.cases().try_for_each(|c| {
                self.name(c.name)?;
                c.ty.as_ref().map_or(Ok(()), |t| self.ty(t))
            }),
            Type::Enum(e) => e.names().try_for_each(|n| self.name(n)),
            Type::Flags(f) => f.names().try_for_each(|n| self.name(n)),
            Type::List(l) => self.ty(&l.ty()),
            Type::Option(o) => self.ty(&o.ty()),
            Type::Result(r) => {
                r.ok().map_or(Ok(()), |t| self.ty(&t))?;
                r.err().map_or(Ok(()), |t| self.ty(&t))
            }
            Type::Tuple(t) => t.types().try_for_each(|t| self.ty(&t)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{engine, fixture};
    use super::*;

    #[test]
    fn the_types_fixture_names_its_fields_cases_and_flags() {
        let engine = engine();
        let names = of(&fixture(&engine, "types.wasm"), &engine).unwrap();
        for name in [
            "full-name",
            "age",
            "home",
            "x",
            "circle",
            "empty",
            "small",
            "exec",
            "some",
            "none",
        ] {
            assert!(names.contains(&name.to_string()), "{name} in {names:?}");
        }
        assert!(!names.contains(&"echo-bool".to_string()), "{names:?}");
    }

    #[test]
    fn a_component_without_named_types_names_only_option_tags() {
        let engine = engine();
        let names = of(&fixture(&engine, "spin.wasm"), &engine).unwrap();
        assert_eq!(names, vec!["none".to_string(), "some".to_string()]);
    }

    #[test]
    fn too_many_names_are_refused() {
        let mut walk = Walk {
            names: BTreeSet::new(),
            steps: 0,
        };
        for i in 0..MAX_NAMES {
            walk.name(&format!("n{i}")).unwrap();
        }
        walk.name("n0").unwrap();
        assert!(walk.name("one-more").unwrap_err().contains("more than"));
        // A name too long for an atom is left out, not counted.
        walk.name(&"a".repeat(300)).unwrap();
    }
}
