//! Large memory writes, staged in parts and applied in one step. A write of more than
//! 4 MiB comes as `memory_stage` (or `memory_stage_bulk`) requests of a part each, then
//! `memory_write_staged`, which copies the whole write into linear memory at once: the
//! parts are separate requests, so the host's other requests go between them, where one
//! frame of the whole write held them all up; and the write stays one step for the
//! store's other callers, as in Wasmex.
//!
//! Each write is named by an id the BEAM chose. A store keeps at most [`CAP`] bytes
//! staged: a write whose writer died before its last step is dropped, oldest first, to
//! make room for new ones, and its last step, should it come after all, is refused.

use crate::term::Fallible;
use std::collections::VecDeque;

/// The most a store keeps staged, all writes together.
pub const CAP: usize = 512 << 20;

/// The staged writes of one store, oldest first.
#[derive(Debug, Default)]
pub struct Staging {
    writes: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
}

impl Staging {
    /// Appends `part` to write `id`, dropping the oldest other writes while the store
    /// would keep more than `cap` bytes; refused when write `id` alone would pass `cap`
    /// (the write is then dropped).
    pub fn add(&mut self, id: u64, part: &[u8], cap: usize) -> Fallible<()> {
        let index = match self.writes.iter().position(|(w, _)| *w == id) {
            Some(index) => index,
            None => {
                self.writes.push_back((id, Vec::new()));
                self.writes.len() - 1
            }
        };
        if self.writes[index].1.len() + part.len() > cap {
            self.take(id);
            return Err(format!(
                "a staged memory write over {cap} bytes (write {id}) was refused"
            ));
        }
        self.writes[index].1.extend_from_slice(part);
        self.bytes += part.len();
        while self.bytes > cap {
            let (_, dropped) = self
                .writes
                .iter()
                .position(|(w, _)| *w != id)
                .and_then(|oldest| self.writes.remove(oldest))
                .expect("another write holds the bytes over the cap");
            self.bytes -= dropped.len();
        }
        Ok(())
    }

    /// Takes the bytes staged for write `id` out.
    pub fn take(&mut self, id: u64) -> Option<Vec<u8>> {
        let index = self.writes.iter().position(|(w, _)| *w == id)?;
        let (_, bytes) = self.writes.remove(index)?;
        self.bytes -= bytes.len();
        Some(bytes)
    }

    /// Bytes staged, all writes together.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Why a write has nothing staged when its last step comes.
pub fn unknown(id: u64) -> String {
    format!(
        "nothing staged for memory write {id}: it was dropped for newer large writes of the \
         store, or never staged"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_write_come_out_in_order_and_once() {
        let mut s = Staging::default();
        s.add(1, b"ab", CAP).unwrap();
        s.add(2, b"x", CAP).unwrap();
        s.add(1, b"cd", CAP).unwrap();
        assert_eq!(
            (s.take(1), s.take(1), s.bytes()),
            (Some(b"abcd".to_vec()), None, 1)
        );
    }

    #[test]
    fn the_oldest_other_writes_are_dropped_to_stay_within_the_cap() {
        let mut s = Staging::default();
        s.add(1, b"aaaa", 10).unwrap();
        s.add(2, b"bbbb", 10).unwrap();
        s.add(3, b"cccc", 10).unwrap();
        assert_eq!(
            (s.take(1), s.take(2), s.take(3), s.bytes()),
            (None, Some(b"bbbb".to_vec()), Some(b"cccc".to_vec()), 0)
        );
    }

    #[test]
    fn a_write_over_the_cap_alone_is_refused_and_dropped() {
        let mut s = Staging::default();
        s.add(1, b"aaaa", 6).unwrap();
        assert_eq!(
            s.add(1, b"bbb", 6),
            Err("a staged memory write over 6 bytes (write 1) was refused".into())
        );
        assert_eq!((s.take(1), s.bytes()), (None, 0));
    }
}
