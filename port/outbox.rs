//! The single writer of stdout: every frame goes through one channel and one thread,
//! so frames are never interleaved. Frames queued together are written with one flush.

use crate::frame::encode_frame;
use eetf::Term;
use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

#[derive(Clone)]
pub struct Outbox(Sender<Vec<u8>>);

impl Outbox {
    /// An outbox whose frames land in the returned receiver (for tests and the writer).
    pub fn channel() -> (Outbox, Receiver<Vec<u8>>) {
        let (tx, rx) = channel();
        (Outbox(tx), rx)
    }

    pub fn send(&self, term: &Term) {
        // A closed channel means the writer is gone because the BEAM is; the process is
        // exiting anyway.
        let _ = self.0.send(encode_frame(term));
    }

    /// Starts the writer thread over `out`. When writing fails (the BEAM closed the pipe)
    /// the process exits: nobody is left to talk to.
    pub fn start_writer(out: impl Write + Send + 'static) -> Outbox {
        let (outbox, rx) = Outbox::channel();
        thread::Builder::new()
            .name("writer".into())
            .spawn(move || write_loop(rx, out))
            .expect("spawn the writer thread");
        outbox
    }
}

fn write_loop(rx: Receiver<Vec<u8>>, mut out: impl Write) {
    while let Ok(frame) = rx.recv() {
        let mut ok = out.write_all(&frame).is_ok();
        while ok {
            match rx.try_recv() {
                Ok(more) => ok = out.write_all(&more).is_ok(),
                Err(_) => break,
            }
        }
        if !ok || out.flush().is_err() {
            std::process::exit(0);
        }
    }
}
