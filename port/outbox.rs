//! Where this program's frames go. In production every frame is written straight to stdout
//! by the thread that produced it, under one lock, so frames are never interleaved and a
//! reply costs no hand-over to another thread (no extra wake-up on the call path). Tests
//! and fuzz targets use a channel instead.

use crate::frame::encode_frame;
use eetf::Term;
use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Outbox(Sink);

#[derive(Clone)]
enum Sink {
    Stream(Arc<Mutex<Box<dyn Write + Send>>>),
    Channel(Sender<Vec<u8>>),
}

impl Outbox {
    /// An outbox whose frames land in the returned receiver.
    pub fn channel() -> (Outbox, Receiver<Vec<u8>>) {
        let (tx, rx) = channel();
        (Outbox(Sink::Channel(tx)), rx)
    }

    /// An outbox writing to `out` (unbuffered: one write per frame). When writing fails
    /// (the BEAM closed the pipe) the process exits: nobody is left to talk to.
    pub fn to_stream(out: impl Write + Send + 'static) -> Outbox {
        Outbox(Sink::Stream(Arc::new(Mutex::new(Box::new(out)))))
    }

    pub fn send(&self, term: &Term) {
        self.send_frame(encode_frame(term));
    }

    /// Sends the reply to request `id`; an answer longer than the BEAM takes in one
    /// message becomes an error saying so.
    pub fn reply(&self, id: u64, result: Result<Term, Term>) {
        let frame = encode_frame(&crate::protocol::reply_term(id, result));
        match crate::frame::over_beam_limit("the answer", frame.len() - 4) {
            None => self.send_frame(frame),
            Some(reason) => self.send(&crate::protocol::reply(id, Err(reason))),
        }
    }

    /// Sends an already encoded frame (length prefix included). A frame longer than the
    /// BEAM takes, which would make it stop the host, is replaced by a `log` saying so.
    pub fn send_frame(&self, frame: Vec<u8>) {
        let frame = match crate::frame::over_beam_limit("a frame", frame.len() - 4) {
            None => frame,
            Some(reason) => encode_frame(&crate::term::tuple(vec![
                crate::term::atom("log"),
                crate::term::string(&format!("not sent: {reason}")),
            ])),
        };
        match &self.0 {
            Sink::Stream(out) => {
                let written = match out.lock() {
                    Ok(mut out) => out.write_all(&frame).and_then(|()| out.flush()).is_ok(),
                    Err(_) => false,
                };
                if !written {
                    std::process::exit(0);
                }
            }
            // A closed channel means the receiving side is gone; nothing to do.
            Sink::Channel(tx) => {
                let _ = tx.send(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_from_many_threads_never_interleave() {
        let out = Shared::default();
        let outbox = Outbox::to_stream(out.clone());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let outbox = outbox.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        outbox.send(&crate::term::binary(vec![t as u8; 100 + i]));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let bytes = out.0.lock().unwrap().clone();
        let mut reader = &bytes[..];
        let mut frames = 0;
        while let Some(crate::frame::Frame::Data(payload)) =
            crate::frame::read_frame(&mut reader).unwrap()
        {
            let t = Term::decode(&payload[..]).unwrap();
            let data = crate::term::as_bytes(&t, "frame").unwrap();
            assert!(
                data.iter().all(|&b| b == data[0]),
                "a frame mixes two writers"
            );
            frames += 1;
        }
        assert_eq!(frames, 8 * 200);
    }

    /// The term of the next frame `rx` got.
    fn next(rx: &Receiver<Vec<u8>>) -> Term {
        Term::decode(&rx.try_recv().expect("a frame")[4..]).unwrap()
    }

    #[test]
    fn an_answer_over_what_the_beam_takes_becomes_an_error_saying_so() {
        let (outbox, rx) = Outbox::channel();
        let big = crate::term::binary(vec![0; crate::frame::MAX_TO_BEAM]);
        outbox.reply(7, Ok(big));
        let t = next(&rx);
        let reply = crate::term::as_tuple(&t, 3, "reply").unwrap();
        let result = crate::term::as_tuple(&reply[2], 2, "result").unwrap();
        let reason = crate::term::as_str(&result[1], "reason").unwrap();
        let limit = format!(
            "bytes encoded, over the limit of {} bytes the BEAM takes in one message",
            crate::frame::MAX_TO_BEAM
        );
        assert_eq!(
            (
                crate::term::as_atom(&result[0]),
                reason.starts_with("the answer is "),
                reason.ends_with(&limit)
            ),
            (Some("error"), true, true)
        );
    }

    #[test]
    fn an_answer_within_what_the_beam_takes_goes_as_it_is() {
        let (outbox, rx) = Outbox::channel();
        outbox.reply(7, Ok(crate::term::atom("ok")));
        assert_eq!(
            next(&rx),
            crate::protocol::reply(7, Ok(crate::term::atom("ok")))
        );
    }

    #[test]
    fn a_frame_over_what_the_beam_takes_is_replaced_by_a_log() {
        let (outbox, rx) = Outbox::channel();
        outbox.send_frame(vec![0; crate::frame::MAX_TO_BEAM + 5]);
        let t = next(&rx);
        let fields = crate::term::as_tuple(&t, 2, "log").unwrap();
        assert_eq!(
            (
                crate::term::as_atom(&fields[0]),
                crate::term::as_str(&fields[1], "m").unwrap()
            ),
            (
                Some("log"),
                format!(
                    "not sent: a frame is {} bytes encoded, over the limit of {} bytes the BEAM takes in one message",
                    crate::frame::MAX_TO_BEAM + 1,
                    crate::frame::MAX_TO_BEAM
                )
                .as_str()
            )
        );
    }
}
