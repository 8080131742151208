//! `wasmex_port`: runs WebAssembly for the BEAM, speaking framed Erlang terms over
//! stdin/stdout. See `protocol.rs` for the wire and `docs/protocol.md` for the whole story.

use std::fs::File;
use std::os::fd::FromRawFd;
use wasmex_port::{host, input, outbox, protocol};

fn main() {
    exit_with_parent();
    // A compile child (see compiler.rs): compile what stdin holds, then exit.
    if std::env::args_os().nth(1).is_some_and(|a| a == "--compile") {
        std::process::exit(wasmex_port::compiler::child_main());
    }
    // A pre-initialization child (see preinit.rs): snapshot what stdin holds, then exit.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "--preinitialize")
    {
        std::process::exit(wasmex_port::preinit::child_main());
    }
    enlarge_pipes();
    keep_freed_memory();
    // SAFETY: fd 1 is this process's stdout, owned from here on by the outbox (stdin is
    // the input's, see input.rs).
    let stdout = unsafe { File::from_raw_fd(1) };
    let outbox = outbox::Outbox::to_stream(stdout);
    outbox.send(&protocol::hello());
    let host = host::Host::new(outbox);
    input::serve(host)
}

/// Ask the kernel to send SIGTERM when the parent (erl_child_setup) dies, so a port
/// busy in Wasm does not outlive a killed BEAM. Exit at once if the parent already died.
fn exit_with_parent() {
    // SAFETY: plain libc calls without pointers.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent || parent == 1 {
            std::process::exit(0);
        }
    }
}

/// 1 MiB pipes in both directions triple the bandwidth of bulk transfers. Best effort:
/// when stdio is not a pipe, or the limit is lower, the default stays.
fn enlarge_pipes() {
    for fd in [0, 1] {
        // SAFETY: fcntl on our own stdio fds.
        unsafe {
            libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
}

/// Frames of a megabyte come and go with every memory transfer. By default glibc maps
/// and unmaps each (the kernel zeroes every page again on first touch, which halved the
/// bandwidth); with these thresholds it reuses freed memory, keeping at most 64 MiB of it.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
