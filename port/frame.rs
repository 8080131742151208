//! Length-prefixed framing: every message is a 4-byte big-endian length followed by
//! that many bytes of Erlang External Term Format.

use byteorder::{BigEndian, ByteOrder, ReadBytesExt};
use std::io::{self, Read};

/// Frames longer than this are refused (their bytes are skipped, the stream stays in sync).
pub const MAX_FRAME: usize = 1 << 30;

/// The longest frame the BEAM takes from this program (`Wasmex.Wire.max_incoming_frame/0`):
/// a longer one makes it stop the host, with every store in it. What this program sends the
/// BEAM stays within it (see `outbox.rs`).
pub const MAX_TO_BEAM: usize = (256 << 20) + (1 << 20);

/// Why a frame of `len` bytes (length prefix excluded) is not sent to the BEAM, if it is
/// over [`MAX_TO_BEAM`].
pub fn over_beam_limit(what: &str, len: usize) -> Option<String> {
    (len > MAX_TO_BEAM).then(|| {
        format!("{what} is {len} bytes encoded, over the limit of {MAX_TO_BEAM} bytes the BEAM takes in one message")
    })
}

/// What one read from the stream produced.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A complete frame's payload.
    Data(Vec<u8>),
    /// A frame whose announced length exceeds [`MAX_FRAME`]; its payload was discarded.
    TooLarge(usize),
}

/// Reads the next frame. `Ok(None)` means the stream ended, cleanly or inside a frame
/// (a peer that went away mid-frame has nothing more to say).
pub fn read_frame<R: Read>(reader: &mut R) -> io::Result<Option<Frame>> {
    read_frame_with(reader, |reader, len, payload| {
        reader.take(len as u64).read_to_end(payload).map(drop)
    })
}

/// Reads a frame's length, then its payload with `read_payload` (which appends up to
/// `len` bytes to the vector it is given).
fn read_frame_with<R: Read>(
    reader: &mut R,
    read_payload: impl FnOnce(&mut R, usize, &mut Vec<u8>) -> io::Result<()>,
) -> io::Result<Option<Frame>> {
    let len = match reader.read_u32::<BigEndian>() {
        Ok(len) => len as usize,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > MAX_FRAME {
        let skipped = io::copy(&mut reader.take(len as u64), &mut io::sink())?;
        if (skipped as usize) < len {
            return Ok(None);
        }
        return Ok(Some(Frame::TooLarge(len)));
    }
    // Read into uninitialised capacity: zeroing a megabyte first costs as much as reading it.
    let mut payload = Vec::with_capacity(len);
    read_payload(reader, len, &mut payload)?;
    if payload.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame::Data(payload)))
}

/// The first byte of a batch: a frame that carries several requests, each as a frame of
/// its own (length prefix included), sent in one write by a busy BEAM. A request's own
/// payload starts with the External Term Format's version byte (131) instead.
pub const BATCH: u8 = 0;

/// The payloads of the frames in a batch (its bytes after the [`BATCH`] marker), in
/// order; an error, and none of them, when the batch does not split into whole frames.
pub fn batch_parts(batch: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut parts = Vec::new();
    let mut rest = batch;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(format!(
                "malformed batch: {} bytes left where a frame's length belongs",
                rest.len()
            ));
        }
        let len = BigEndian::read_u32(&rest[..4]) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(format!(
                "malformed batch: a frame of {len} bytes with {} left in the batch",
                rest.len()
            ));
        }
        let (part, after) = rest.split_at(len);
        parts.push(part);
        rest = after;
    }
    Ok(parts)
}

/// Encodes a term into a complete frame (length prefix included).
pub fn encode_frame(term: &eetf::Term) -> Vec<u8> {
    let mut buf = vec![0u8; 4];
    // Encoding into a Vec cannot fail for I/O reasons; non-finite floats are never built
    // by this program (see `term::float`). Nor does it build terms over the frame limit
    // (memory reads, the only large ones, are bounded: see `binary_reply_frame`), whose
    // length prefix could wrap and put the stream out of step.
    if term.encode(&mut buf).is_err() || buf.len() - 4 > MAX_FRAME {
        buf.truncate(4);
        let fallback = crate::term::tuple(vec![
            crate::term::atom("log"),
            crate::term::binary(b"failed to encode an outgoing term".to_vec()),
        ]);
        let _ = fallback.encode(&mut buf);
    }
    let len = (buf.len() - 4) as u32;
    BigEndian::write_u32(&mut buf[..4], len);
    buf
}

/// The frame of `{reply, Id, {ok, Bytes}}`, with `bytes` copied once, straight into it
/// (for memory reads, which can be megabytes); refused over what the BEAM takes (see
/// [`check_read`]).
pub fn binary_reply_frame(id: u64, bytes: &[u8]) -> crate::term::Fallible<Vec<u8>> {
    use crate::term;
    let ok = |empty| term::tuple(vec![term::atom("ok"), empty]);
    binary_frame(bytes, |empty| {
        term::tuple(vec![term::atom("reply"), term::uint(id), ok(empty)])
    })
}

/// The frame of `{reply_part, Id, Bytes}`: one part of a memory read's answer, which
/// comes in parts (see `memory::read_reply`) ahead of its `reply`.
pub fn binary_part_frame(id: u64, bytes: &[u8]) -> crate::term::Fallible<Vec<u8>> {
    use crate::term;
    binary_frame(bytes, |empty| {
        term::tuple(vec![term::atom("reply_part"), term::uint(id), empty])
    })
}

/// Refuses a read of `len` bytes over what the BEAM takes in one answer ([`MAX_TO_BEAM`]),
/// parts included (it reads larger memory in parts of its own), before anything is sent.
pub fn check_read(len: usize) -> crate::term::Fallible<()> {
    if len > MAX_TO_BEAM {
        return Err(format!(
            "a read of {len} bytes is over the limit of {MAX_TO_BEAM} bytes the BEAM takes in one answer"
        ));
    }
    Ok(())
}

/// The frame of the term `around` makes of an empty binary, with `bytes` in its place:
/// the binary must be the last thing the term encodes.
fn binary_frame(
    bytes: &[u8],
    around: impl FnOnce(eetf::Term) -> eetf::Term,
) -> crate::term::Fallible<Vec<u8>> {
    check_read(bytes.len())?;
    let mut frame = encode_frame(&around(crate::term::binary(Vec::new())));
    // The encoding ends with the empty binary's 4-byte length: put the real one there.
    frame.truncate(frame.len() - 4);
    frame.reserve(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(bytes);
    let len = (frame.len() - 4) as u32;
    BigEndian::write_u32(&mut frame[..4], len);
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_batch_splits_into_its_frames_in_order() {
        let mut batch = framed(b"abc");
        batch.extend(framed(b""));
        batch.extend(framed(b"de"));
        let parts = batch_parts(&batch).unwrap();
        assert_eq!(parts, vec![&b"abc"[..], &b""[..], &b"de"[..]]);
    }

    #[test]
    fn a_batch_cut_inside_a_length_is_refused() {
        let mut batch = framed(b"abc");
        batch.extend_from_slice(&[0, 0]);
        let error = batch_parts(&batch).unwrap_err();
        assert!(
            error.contains("2 bytes left where a frame's length belongs"),
            "{error}"
        );
    }

    #[test]
    fn a_batch_whose_frame_runs_past_its_end_is_refused() {
        let mut batch = framed(b"abc");
        batch.extend(&framed(b"defg")[..6]);
        let error = batch_parts(&batch).unwrap_err();
        assert!(error.contains("a frame of 4 bytes with 2 left"), "{error}");
    }

    #[test]
    fn reads_consecutive_frames() {
        let mut bytes = framed(b"abc");
        bytes.extend(framed(b""));
        let mut r = &bytes[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(Frame::Data(b"abc".to_vec()))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame::Data(vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_payload_is_end_of_stream() {
        let bytes = framed(b"abcdef");
        let mut r = &bytes[..7];
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn truncated_length_prefix_is_end_of_stream() {
        let mut r: &[u8] = &[0, 0];
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn oversized_frame_is_skipped_and_stream_stays_in_sync() {
        let len = MAX_FRAME + 1;
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, len));
        bytes.extend(framed(b"next"));
        let mut r = &bytes[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame::TooLarge(len)));
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(Frame::Data(b"next".to_vec()))
        );
    }

    #[test]
    fn a_binary_reply_frame_is_the_frame_of_the_reply_term() {
        let bytes: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let term = crate::protocol::reply(12, Ok(term::binary(bytes.clone())));
        assert_eq!(binary_reply_frame(12, &bytes), Ok(encode_frame(&term)));
    }

    #[test]
    fn a_binary_part_frame_is_the_frame_of_the_reply_part_term() {
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
        let term = term::tuple(vec![
            term::atom("reply_part"),
            term::uint(9),
            term::binary(bytes.clone()),
        ]);
        assert_eq!(binary_part_frame(9, &bytes), Ok(encode_frame(&term)));
    }

    #[test]
    fn a_binary_reply_over_what_the_beam_takes_is_refused() {
        // Zeroed by the allocator, never touched: the check comes before any copy.
        let bytes = vec![0u8; MAX_TO_BEAM + 1];
        assert_eq!(
            binary_reply_frame(3, &bytes),
            Err(format!(
                "a read of {} bytes is over the limit of {MAX_TO_BEAM} bytes the BEAM takes in one answer",
                MAX_TO_BEAM + 1
            ))
        );
    }

    #[test]
    fn a_term_over_the_frame_limit_is_sent_as_a_log_instead() {
        let frame = encode_frame(&term::binary(vec![0u8; MAX_FRAME]));
        let log = term::tuple(vec![
            term::atom("log"),
            term::binary(b"failed to encode an outgoing term".to_vec()),
        ]);
        // Not assert_eq: a failure would print a GiB.
        assert!(
            frame == encode_frame(&log),
            "a frame of {} bytes",
            frame.len()
        );
    }

    #[test]
    fn encode_frame_round_trips_through_read_frame() {
        let t = term::tuple(vec![term::atom("hello"), term::int(-5)]);
        let bytes = encode_frame(&t);
        let mut r = &bytes[..];
        let Some(Frame::Data(payload)) = read_frame(&mut r).unwrap() else {
            panic!("expected a frame")
        };
        assert_eq!(eetf::Term::decode(&payload[..]).unwrap(), t);
    }
}
