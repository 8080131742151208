//! Where in a value a conversion failed, for error messages: the root (a parameter's WIT
//! name, or `result`), then `.field` for a record field, variant case, option or result
//! side, and `[i]` for a list or tuple element: `"people[1].home.some.x"`.

use eetf::Term;
use std::fmt;

/// One step into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// The position of the value being converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    root: String,
    segments: Vec<Segment>,
}

impl Path {
    pub fn new(root: &str) -> Self {
        Path {
            root: root.to_string(),
            segments: Vec::new(),
        }
    }

    pub fn field(name: &str) -> Segment {
        Segment::Field(name.to_string())
    }

    pub fn index(i: usize) -> Segment {
        Segment::Index(i)
    }

    /// Runs `f` with `segment` added to the path, and removes it afterwards.
    pub fn within<T>(&mut self, segment: Segment, f: impl FnOnce(&mut Path) -> T) -> T {
        self.segments.push(segment);
        let result = f(self);
        self.segments.pop();
        result
    }

    /// A failure here, with its reason.
    pub fn fail(&self, reason: impl Into<String>) -> ValueError {
        ValueError {
            path: self.to_string(),
            reason: reason.into(),
        }
    }

    /// A failure here: `got` is not `what` was expected.
    pub fn expected(&self, what: &str, got: &Term) -> ValueError {
        self.fail(format!("expected {what}, got: {}", show(got)))
    }
}

pub use crate::term::show;

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.root)?;
        for segment in &self.segments {
            match segment {
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A value that does not fit its WIT type, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// Empty when the failure is about the whole call (the number of params).
    pub path: String,
    pub reason: String,
}

impl ValueError {
    /// A failure that concerns no single value.
    pub fn at_root(reason: impl Into<String>) -> Self {
        ValueError {
            path: String::new(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{} at \"{}\"", self.reason, self.path)
        }
    }
}

impl std::error::Error for ValueError {}

impl From<ValueError> for String {
    fn from(e: ValueError) -> String {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    #[test]
    fn renders_fields_and_indices_after_the_root() {
        let mut path = Path::new("people");
        let rendered = path.within(Path::index(1), |p| {
            p.within(Path::field("home"), |p| {
                p.within(Path::field("some"), |p| p.to_string())
            })
        });
        assert_eq!(rendered, "people[1].home.some");
        assert_eq!(
            path.to_string(),
            "people",
            "segments are removed afterwards"
        );
    }

    #[test]
    fn errors_name_their_path_unless_they_concern_the_whole_call() {
        let e = Path::new("v").expected("a bool", &term::int(3));
        assert_eq!(e.to_string(), "expected a bool, got: 3 at \"v\"");
        let e = Path::new("v").expected("a bool", &term::string("yes"));
        assert_eq!(e.to_string(), "expected a bool, got: \"yes\" at \"v\"");
        assert_eq!(
            ValueError::at_root("expected 2 params, got 1").to_string(),
            "expected 2 params, got 1"
        );
    }
}
