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

    /// Sends an already encoded frame (length prefix included).
    pub fn send_frame(&self, frame: Vec<u8>) {
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
}
