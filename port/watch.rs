//! A store about to wait for an answer from the BEAM (a callback's) kicks the stdin reader
//! (`input.rs`): the reader, on the light worker, watches stdin there for up to the spin
//! time (`executor::spin`) and reads the answer itself, so the store it wakes runs at
//! once. Left to itself, the worker would park on the runtime's I/O driver and be woken
//! for the answer: one more thread wake-up per callback.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};
use tokio::io::unix::AsyncFd;

/// Why the reader woke.
pub enum Woke<'a> {
    Ready(tokio::io::unix::AsyncFdReadyGuard<'a, File>),
    Kicked,
    Failed,
}

static KICKED: AtomicBool = AtomicBool::new(false);
static READER: Mutex<Option<Waker>> = Mutex::new(None);

/// Stdin is readable, or a store kicked the reader (see [`expect_input`]).
pub async fn next_input(stdin: &AsyncFd<File>) -> Woke<'_> {
    std::future::poll_fn(|cx| {
        if KICKED.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Woke::Kicked);
        }
        match stdin.poll_read_ready(cx) {
            Poll::Ready(Ok(ready)) => Poll::Ready(Woke::Ready(ready)),
            Poll::Ready(Err(_)) => Poll::Ready(Woke::Failed),
            Poll::Pending => {
                if let Ok(mut reader) = READER.lock() {
                    *reader = Some(cx.waker().clone());
                }
                // A kick between the check above and storing the waker is not lost.
                if KICKED.swap(false, Ordering::AcqRel) {
                    return Poll::Ready(Woke::Kicked);
                }
                Poll::Pending
            }
        }
    })
    .await
}

/// Tells the reader that this store waits for an answer from the BEAM (a callback's),
/// which comes soon: the reader, woken on this thread (the light worker, where the task
/// that calls this runs), watches stdin for a bounded time instead of leaving the
/// wake-up to the runtime's I/O driver.
pub fn expect_input() {
    // Not from the heavy runtime: the reader runs on the light one.
    if !crate::executor::spin::enabled() || !crate::executor::on_light_runtime() {
        return;
    }
    kick();
}

/// Wakes the reader to watch stdin (see [`next_input`]), wherever it waits.
fn kick() {
    KICKED.store(true, Ordering::Release);
    let waker = READER.lock().ok().and_then(|mut reader| reader.take());
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::FromRawFd;

    /// A pipe: its read end registered with the runtime, its write end.
    fn pipe() -> (AsyncFd<File>, File) {
        let mut fds = [0; 2];
        // SAFETY: a pipe of two fds this test owns, the read end made non-blocking.
        let (read, write) = unsafe {
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK), 0);
            (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))
        };
        // SAFETY: the `File` owns its fd, open as long as it lives.
        let read = unsafe { AsyncFd::register_with_interest(read, tokio::io::Interest::READABLE) };
        (read.unwrap(), write)
    }

    /// `next_input` on `read`, or `None` after 5 s (a hang would be a failure, not a stall).
    async fn woke(read: &AsyncFd<File>) -> Option<&'static str> {
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), next_input(read));
        match woke.await.ok()? {
            Woke::Ready(_) => Some("ready"),
            Woke::Kicked => Some("kicked"),
            Woke::Failed => Some("failed"),
        }
    }

    // One test: the kick is one flag for the process, so two tests at once would take each
    // other's kicks.
    #[test]
    fn a_kick_wakes_the_reader_with_nothing_to_read_and_input_makes_it_ready() {
        crate::executor::block_on(async {
            let (read, mut write) = pipe();
            let read = std::sync::Arc::new(read);
            let waiting = {
                let read = read.clone();
                crate::executor::light_runtime().spawn(async move { woke(&read).await })
            };
            kick();
            assert_eq!(waiting.await.unwrap(), Some("kicked"));
            write.write_all(b"x").unwrap();
            assert_eq!(woke(&read).await, Some("ready"));
        });
    }
}
