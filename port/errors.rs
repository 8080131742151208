//! The messages of failed calls, worded as Wasmex 0.9.1 words them, and bounded in size.
//!
//! A failure while Wasm ran (a trap, fuel running out, an import callback that failed)
//! reads ``Error during function excecution: `<backtrace>`.`` (Wasmex's text, typo
//! included), then one space and what wasmtime says caused it (`wasm trap: integer divide
//! by zero`, the callback's error). The backtrace is laid out as Wasmex 0.9.1 laid it out.
//!
//! A guest controls the names in its backtrace (a module can name a function with megabytes)
//! and the depth of its stack, so names, frames and the whole message are capped.

use crate::term;
use eetf::Term;
use std::fmt::{self, Write};
use wasmtime::{FrameInfo, WasmBacktrace};

/// The most frames a backtrace shows; a line after them says how many were left out.
pub const MAX_FRAMES: usize = 32;
/// The longest module or function name a frame shows, in bytes.
pub const MAX_NAME: usize = 256;
/// The longest error message the port sends, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// What follows a message cut at [`MAX_MESSAGE`] or a name cut at [`MAX_NAME`].
const CUT: &str = "...";

/// What kind of failure a call or an instantiation had, which its error reason carries as
/// a value (the BEAM counts traps and timeouts by it, and passes the message on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// While Wasm ran: a trap, fuel running out, a failing import callback.
    Trap,
    /// Stopped at its deadline.
    Timeout,
    /// Anything else: cancelled, bad params, linking.
    Other,
}

/// `message` as the error reason of a failure of `kind`.
pub fn failure_term(message: String, kind: Failure) -> Term {
    match kind {
        Failure::Trap => term::tuple(vec![term::atom("trap"), term::string(&message)]),
        Failure::Timeout => term::tuple(vec![term::atom("timeout"), term::string(&message)]),
        Failure::Other => term::string(&message),
    }
}

/// Wasmex's message for a failure while Wasm ran, with `cause` after it.
pub fn call_failure(backtrace: &WasmBacktrace, cause: &str) -> String {
    cap(format!(
        "Error during function excecution: `{}`. {cause}",
        layout(backtrace.frames())
    ))
}

/// `message`, cut to at most [`MAX_MESSAGE`] bytes (at character boundaries) by leaving
/// out its middle: the start says what failed, the end what caused it (the innermost
/// error of nested callbacks comes last).
pub fn cap(message: String) -> String {
    if message.len() <= MAX_MESSAGE {
        return message;
    }
    let half = (MAX_MESSAGE - CUT.len()) / 2;
    let mut head = half;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - half;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}{CUT}{}", &message[..head], &message[tail..])
}

/// The backtrace as Wasmex 0.9.1 printed it: the frame's index right-aligned in 5
/// columns, `: `, its offset in the module as `0x..` right-aligned in 6, ` - `, then
/// `module!function` (`<unknown>` for an unnamed module, `<wasm function N>` for an
/// unnamed function), or the function's debug symbols when the engine reads them.
pub fn layout(frames: &[FrameInfo]) -> String {
    let mut out = String::from("error while executing at wasm backtrace:");
    for (i, frame) in frames.iter().take(MAX_FRAMES).enumerate() {
        // Writing to a String cannot fail.
        let _ = write_frame(&mut out, i, frame);
    }
    if frames.len() > MAX_FRAMES {
        let _ = write!(out, "\n      ... {} more frames", frames.len() - MAX_FRAMES);
    }
    out
}

fn write_frame(out: &mut String, i: usize, frame: &FrameInfo) -> fmt::Result {
    write!(out, "\n{i:>5}: ")?;
    if let Some(offset) = frame.module_offset() {
        write!(out, "{offset:#6x} - ")?;
    }
    let function = || capped(|w| function_name(w, frame.func_name(), frame.func_index()));
    if frame.symbols().is_empty() {
        let module = frame.module().name().unwrap_or("<unknown>");
        return write!(out, "{}!{}", capped(|w| w.write_str(module)), function());
    }
    for (n, symbol) in frame.symbols().iter().enumerate() {
        if n > 0 {
            out.push_str("\n                - ");
        }
        match symbol.name() {
            Some(name) => out.push_str(&capped(|w| function_name(w, Some(name), 0))),
            None if n == 0 => out.push_str(&function()),
            None => out.push_str("<inlined function>"),
        }
        if let Some(file) = symbol.file() {
            write!(
                out,
                "\n                    at {}",
                capped(|w| w.write_str(file))
            )?;
            if let Some(line) = symbol.line() {
                write!(out, ":{line}")?;
                if let Some(column) = symbol.column() {
                    write!(out, ":{column}")?;
                }
            }
        }
    }
    Ok(())
}

fn function_name(w: &mut Capped, name: Option<&str>, index: u32) -> fmt::Result {
    wasmtime_environ::demangle_function_name_or_index(w, name, index as usize)
}

/// What `write` writes, cut at [`MAX_NAME`] bytes.
fn capped(write: impl FnOnce(&mut Capped) -> fmt::Result) -> String {
    let mut w = Capped {
        text: String::new(),
        cut: false,
    };
    // A write refused at the cap ends the name early; what was kept is the name.
    let _ = write(&mut w);
    if w.cut {
        w.text.push_str(CUT);
    }
    w.text
}

/// A writer that keeps the first [`MAX_NAME`] bytes and refuses the rest.
struct Capped {
    text: String,
    cut: bool,
}

impl Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_NAME - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        self.cut = true;
        Err(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    /// The error of calling export `f` of `wat`.
    fn trap(wat: &str) -> wasmtime::Error {
        let engine = Engine::default();
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, ());
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance.get_typed_func::<(), ()>(&mut store, "f").unwrap();
        f.call(&mut store, ()).unwrap_err()
    }

    fn message(e: &wasmtime::Error) -> String {
        let bt = e.downcast_ref::<WasmBacktrace>().expect("a backtrace");
        call_failure(bt, &e.root_cause().to_string())
    }

    #[test]
    fn lays_out_frames_as_wasmex_did() {
        let e = trap(
            r#"(module (func $boom unreachable)
                 (func $nested call $boom) (func (export "f") call $nested))"#,
        );
        let m = message(&e);
        let expected = "Error during function excecution: `error while executing at wasm \
                        backtrace:\n    0:   0x";
        assert!(m.starts_with(expected), "{m}");
        assert!(m.contains(" - <unknown>!boom\n    1:   0x"), "{m}");
        assert!(m.contains(" - <unknown>!nested\n    2:   0x"), "{m}");
        assert!(
            m.ends_with("!<wasm function 2>`. wasm trap: wasm `unreachable` instruction executed"),
            "{m}"
        );
    }

    #[test]
    fn names_the_module_when_it_has_a_name() {
        let m = message(&trap(r#"(module $mod (func (export "f") unreachable))"#));
        assert!(m.contains(" - mod!<wasm function 0>`."), "{m}");
    }

    #[test]
    fn cuts_long_names_and_deep_stacks() {
        // A function with a 100 kB name that recurses 500 deep, then traps.
        let long = "n".repeat(100_000);
        let wat = format!(
            r#"(module (func ${long} (param i32) local.get 0 i32.eqz if unreachable end
                 local.get 0 i32.const 1 i32.sub call ${long})
               (func (export "f") i32.const 500 call ${long}))"#
        );
        let m = message(&trap(&wat));
        assert!(m.len() <= MAX_MESSAGE, "{} bytes", m.len());
        assert!(m.contains(&format!("<unknown>!{}...", "n".repeat(MAX_NAME))));
        assert!(!m.contains(&"n".repeat(MAX_NAME + 1)));
        // wasmtime itself keeps 20 frames of a backtrace; this module keeps at most 32.
        let frames = m.matches(" - <unknown>!").count();
        assert!((1..=MAX_FRAMES).contains(&frames), "{frames} frames");
    }

    #[test]
    fn caps_a_message_by_leaving_out_its_middle_at_character_boundaries() {
        let long = format!("start{}end", "é".repeat(MAX_MESSAGE));
        let m = cap(long);
        assert!(m.len() <= MAX_MESSAGE, "{}", m.len());
        assert!(m.starts_with("startéé") && m.ends_with("ééend"));
        assert!(m.contains("é...é"), "the cut is marked");
        assert_eq!(cap("short".into()), "short");
    }
}
