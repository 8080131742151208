//! Checks an External Term Format payload before `eetf` 0.10 decodes it. That decoder
//! trusts what a frame announces, so a few hostile bytes could crash or bloat the port
//! (found by the fuzz targets in `fuzz/`, see docs/fuzzing.md):
//!
//! * tags it answers with `unimplemented!()`: a distribution header (68) as the outer
//!   tag, an atom cache reference (82) anywhere;
//! * counts it allocates for before reading the elements (`Vec::with_capacity` for lists,
//!   tuples and fun environments, `vec![0; n]` for binaries and bit binaries, `resize` for
//!   big integers) larger than the bytes left, which could not be honest;
//! * bit binaries whose tail bit count is not 1..=8 (an overflowing shift);
//! * nesting deeper than [`MAX_DEPTH`] (it recurses once per level);
//! * compressed terms (80), whose inside this walk cannot see (the BEAM side never
//!   compresses).
//!
//! The walk allocates nothing. A walk that meets the end of the payload or an unknown tag
//! stops without a hazard: the decoder returns an error there.

use std::fmt;

/// Deeper terms are refused. Requests of the wire are at most about 6 levels deep.
pub const MAX_DEPTH: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hazard {
    /// A tag `eetf` answers with `unimplemented!()`.
    Unimplemented(u8),
    /// A length field the decoder allocates for before reading (tag, announced count).
    Count(u8, u64),
    /// A bit binary whose tail bit count is outside 1..=8.
    TailBits(u8),
    TooDeep,
    Compressed,
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hazard::Unimplemented(t) => write!(f, "tag {t} is unimplemented!() in eetf"),
            Hazard::Count(t, n) => write!(f, "tag {t} announces {n} elements/bytes"),
            Hazard::TailBits(b) => write!(f, "bit binary with {b} tail bits"),
            Hazard::TooDeep => write!(f, "nested deeper than {MAX_DEPTH}"),
            Hazard::Compressed => write!(f, "compressed term"),
        }
    }
}

/// The first hazard in one payload (a version byte and a term).
pub fn payload_hazard(payload: &[u8]) -> Option<Hazard> {
    inspect(payload).err()
}

/// Checks a payload like [`payload_hazard`]. When it has no hazard, also tells where the
/// bytes of its tail binary start: a binary that is an element of an element of the outer
/// tuple and ends the payload, as in a request `{Id, Op, {..., Binary}}`.
pub fn inspect(payload: &[u8]) -> Result<Option<usize>, Hazard> {
    let mut w = Walk {
        b: payload,
        pos: 0,
        binary: None,
    };
    if w.u8() != Some(131) {
        return Ok(None);
    }
    match w.b.get(w.pos) {
        None => Ok(None),
        Some(68) => Err(Hazard::Unimplemented(68)),
        Some(80) => Err(Hazard::Compressed),
        Some(_) => match w.term(0) {
            Err(Some(hazard)) => Err(hazard),
            Err(None) => Ok(None),
            Ok(()) => Ok(w
                .binary
                .filter(|r| w.pos == payload.len() && r.end == payload.len())
                .map(|r| r.start)),
        },
    }
}

struct Walk<'a> {
    b: &'a [u8],
    pos: usize,
    /// The bytes of the last binary met at depth 2.
    binary: Option<std::ops::Range<usize>>,
}

/// `Err(Some(h))`: a hazard; `Err(None)`: the decoder would fail here (end, bad tag).
type Step = Result<(), Option<Hazard>>;

impl Walk<'_> {
    fn left(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }
    fn take(&mut self, n: u64) -> Result<&[u8], Option<Hazard>> {
        if n > self.left() {
            return Err(None);
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn num(&mut self, bytes: u64) -> Result<u64, Option<Hazard>> {
        Ok(self
            .take(bytes)?
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }
    /// A count of things each at least `min` bytes long, checked against what is left.
    fn count(&mut self, tag: u8, bytes: u64, min: u64) -> Result<u64, Option<Hazard>> {
        let n = self.num(bytes)?;
        if n.saturating_mul(min) > self.left() {
            return Err(Some(Hazard::Count(tag, n)));
        }
        Ok(n)
    }
    fn terms(&mut self, n: u64, depth: usize) -> Step {
        for _ in 0..n {
            self.term(depth)?;
        }
        Ok(())
    }
    fn term(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(Some(Hazard::TooDeep));
        }
        let d = depth + 1;
        let tag = self.u8().ok_or(None)?;
        match tag {
            70 => self.take(8).map(drop),  // NEW_FLOAT
            97 => self.take(1).map(drop),  // SMALL_INTEGER
            98 => self.take(4).map(drop),  // INTEGER
            99 => self.take(31).map(drop), // FLOAT
            106 => Ok(()),                 // NIL
            82 => Err(Some(Hazard::Unimplemented(82))),
            77 => {
                // BIT_BINARY: vec![0; size] before reading, then a shift by 8 - bits.
                let n = self.count(tag, 4, 1)?;
                let bits = self.num(1)? as u8;
                if n > 0 && !(1..=8).contains(&bits) {
                    return Err(Some(Hazard::TailBits(bits)));
                }
                self.take(n).map(drop)
            }
            109 => {
                let n = self.count(tag, 4, 1)?;
                let start = self.pos;
                self.take(n)?;
                if depth == 2 {
                    self.binary = Some(start..self.pos);
                }
                Ok(())
            }
            107 => {
                let n = self.num(2)?;
                self.take(n).map(drop)
            }
            100 | 118 => {
                let n = self.num(2)?;
                self.take(n).map(drop)
            }
            115 | 119 => {
                let n = self.num(1)?;
                self.take(n).map(drop)
            }
            110 => {
                let n = self.num(1)?;
                self.take(1 + n).map(drop)
            }
            111 => {
                let n = self.count(tag, 4, 1)?;
                self.take(1 + n).map(drop)
            }
            104 => {
                let n = self.num(1)?;
                self.terms(n, d)
            }
            105 => {
                let n = self.count(tag, 4, 1)?;
                self.terms(n, d)
            }
            108 => {
                let n = self.count(tag, 4, 1)?;
                self.terms(n + 1, d)
            }
            116 => {
                let n = self.num(4)?; // a HashMap grown as it goes: no allocation up front
                self.terms(n.saturating_mul(2), d)
            }
            103 => {
                self.term(d)?;
                self.take(9).map(drop)
            }
            88 => {
                self.term(d)?;
                self.take(12).map(drop)
            }
            102 => {
                self.term(d)?;
                self.take(5).map(drop)
            }
            89 => {
                self.term(d)?;
                self.take(8).map(drop)
            }
            120 => {
                self.term(d)?;
                self.take(12).map(drop)
            }
            101 => {
                self.term(d)?;
                self.take(5).map(drop)
            }
            114 | 90 => {
                let n = self.num(2)?;
                self.term(d)?;
                self.take(if tag == 114 { 1 } else { 4 })?;
                self.take(4 * n).map(drop)
            }
            113 => self.terms(3, d),
            117 => {
                let n = self.count(tag, 4, 1)?;
                self.terms(4 + n, d)
            }
            112 => {
                self.take(4 + 1 + 16 + 4)?;
                let n = self.count(tag, 4, 1)?;
                self.terms(4 + n, d)
            }
            // The decoder rejects any other tag, compressed terms included (80 is only
            // read at the top).
            _ => Err(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_what_it_should() {
        assert_eq!(payload_hazard(&[131, 68]), Some(Hazard::Unimplemented(68)));
        assert_eq!(
            payload_hazard(&[131, 104, 1, 82, 0]),
            Some(Hazard::Unimplemented(82))
        );
        assert_eq!(
            payload_hazard(&[131, 108, 255, 255, 255, 255, 106]),
            Some(Hazard::Count(108, u32::MAX as u64))
        );
        let mut deep = vec![131];
        deep.extend(std::iter::repeat_n([104u8, 1], MAX_DEPTH + 2).flatten());
        deep.push(106);
        assert_eq!(payload_hazard(&deep), Some(Hazard::TooDeep));
        // {1, init, {#{}}}
        let ok = [
            131, 104, 3, 97, 1, 119, 4, b'i', b'n', b'i', b't', 104, 1, 116, 0, 0, 0, 0,
        ];
        assert_eq!(payload_hazard(&ok), None);
    }

    #[test]
    fn finds_the_binary_that_ends_a_request() {
        // {1, w, {7, <<"abc">>}}
        let tail = [
            131, 104, 3, 97, 1, 119, 1, b'w', 104, 2, 97, 7, 109, 0, 0, 0, 3, b'a', b'b', b'c',
        ];
        assert_eq!(inspect(&tail), Ok(Some(17)));
    }

    #[test]
    fn a_binary_followed_by_more_terms_is_no_tail() {
        // {1, w, {<<"abc">>, 7}}
        let inner = [
            131, 104, 3, 97, 1, 119, 1, b'w', 104, 2, 109, 0, 0, 0, 3, b'a', b'b', b'c', 97, 7,
        ];
        assert_eq!(inspect(&inner), Ok(None));
    }

    #[test]
    fn a_binary_deeper_than_the_arguments_is_no_tail() {
        // {1, w, {{<<"abc">>}}}
        let deep = [
            131, 104, 3, 97, 1, 119, 1, b'w', 104, 1, 104, 1, 109, 0, 0, 0, 3, b'a', b'b', b'c',
        ];
        assert_eq!(inspect(&deep), Ok(None));
    }
}
