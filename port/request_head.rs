//! Reads the head of a request frame that could not be decoded (nested too deep, say):
//! its id, its op, and the first two integers of its arguments, straight from the bytes.
//! With them, a request that cannot be served still gets its one reply under its own id,
//! and a `callback_return` that cannot be read still fails the callback it answers,
//! instead of leaving their waiters to their deadlines.

/// What the first bytes of `{Id, Op, {A, B, ...}}` say, as far as they can be read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub id: u64,
    pub op: Option<String>,
    /// The first two elements of the arguments tuple, when both are integers.
    pub first_two: Option<(u64, u64)>,
}

/// Reads what it can of a request's head; 0 for an id it cannot read.
pub fn read(payload: &[u8]) -> Head {
    let mut r = Reader { b: payload, pos: 0 };
    let mut head = Head::default();
    if r.u8() != Some(131) || !r.tuple_of(3) {
        return head;
    }
    let Some(id) = r.uint() else {
        return head;
    };
    head.id = id;
    head.op = r.atom();
    if head.op.is_some() && r.tuple_of_at_least(2) {
        head.first_two = r.uint().zip(r.uint());
    }
    head
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let bytes = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | b as u64),
        )
    }

    fn arity(&mut self) -> Option<u64> {
        match self.u8()? {
            104 => self.be(1),
            105 => self.be(4),
            _ => None,
        }
    }

    fn tuple_of(&mut self, n: u64) -> bool {
        self.arity() == Some(n)
    }

    fn tuple_of_at_least(&mut self, n: u64) -> bool {
        self.arity().is_some_and(|a| a >= n)
    }

    /// A non-negative integer: small integer, integer or small big (up to 8 bytes).
    fn uint(&mut self) -> Option<u64> {
        match self.u8()? {
            97 => self.be(1),
            98 => u64::try_from(self.be(4)? as u32 as i32).ok(),
            110 => {
                let n = self.u8()? as usize;
                let sign = self.u8()?;
                let digits = self.take(n)?;
                if sign != 0 || n > 8 {
                    return None;
                }
                Some(
                    digits
                        .iter()
                        .rev()
                        .fold(0u64, |acc, &b| (acc << 8) | b as u64),
                )
            }
            _ => None,
        }
    }

    fn atom(&mut self) -> Option<String> {
        let len = match self.u8()? {
            100 | 118 => self.be(2)?,
            115 | 119 => self.be(1)?,
            _ => return None,
        };
        let name = self.take(len as usize)?;
        String::from_utf8(name.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;
    use eetf::Term;

    fn encode(t: &Term) -> Vec<u8> {
        let mut out = Vec::new();
        t.encode(&mut out).unwrap();
        out
    }

    fn request(id: u64, op: &str, args: Vec<Term>) -> Vec<u8> {
        encode(&term::tuple(vec![
            term::uint(id),
            term::atom(op),
            term::tuple(args),
        ]))
    }

    #[test]
    fn reads_the_id_op_and_first_two_arguments() {
        for id in [0, 7, 300, 1 << 40] {
            let payload = request(
                id,
                "callback_return",
                vec![term::int(3), term::uint(id + 1)],
            );
            assert_eq!(
                read(&payload),
                Head {
                    id,
                    op: Some("callback_return".into()),
                    first_two: Some((3, id + 1)),
                }
            );
        }
    }

    #[test]
    fn reads_the_head_of_a_request_whose_arguments_are_too_deep_to_decode() {
        let mut payload = request(42, "call", vec![term::int(1), term::int(2)]);
        // Append a deeply nested argument by hand: the head stays readable.
        let arity = payload.len() - 5;
        payload[arity] = 3; // the args tuple now has 3 elements
        payload.extend([108, 0, 0, 0, 1].repeat(10_000));
        assert_eq!(read(&payload).id, 42);
        assert_eq!(read(&payload).op.as_deref(), Some("call"));
    }

    #[test]
    fn what_it_cannot_read_is_0_or_none() {
        assert_eq!(read(b""), Head::default());
        assert_eq!(read(&[131, 104, 3, 100]), Head::default());
        let negative = encode(&term::tuple(vec![
            term::int(-1),
            term::atom("call"),
            term::tuple(vec![]),
        ]));
        assert_eq!(read(&negative).id, 0);
        let no_ints = request(5, "call", vec![term::atom("a"), term::int(1)]);
        assert_eq!(read(&no_ints).first_two, None);
        assert_eq!(read(&no_ints).id, 5);
    }
}
