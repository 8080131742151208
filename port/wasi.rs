//! Building the WASI preview 1 context of a store from the options the BEAM sends:
//!
//! `#{args => [Binary], env => #{Binary => Binary},
//!    preopen => [{HostPath, GuestPath, ReadOnly}],
//!    stdin => nil | push | {pull, Handler},
//!    stdout => Output, stderr => Output}`
//!
//! where `Output` is `nil`, `{messages, Handler, Window}` (a process receives the output
//! and acknowledges it), `{pipe, Handler, Window, Room}` (a `Wasmex.Pipe` with `Room`
//! bytes left), or `{events, Handler}` (messages with the default window). See
//! `output.rs`. Without options, or with a stream set to `nil`, stdin is empty and
//! output is discarded: never the port's own stdio, which is the wire.

use crate::call_state::CallState;
use crate::outbox::Outbox;
use crate::output::{Outputs, SinkSpec, DEFAULT_WINDOW};
use crate::output_stream::EventOutput;
use crate::stdio::{EventInput, StdinReceiver};
use crate::term::{self, Fallible};
use crate::wasi_fds::{FdBudget, STDIO};
use eetf::Term;
use std::sync::Arc;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Where a store's stdio goes, and the channel its stdin reads from.
pub struct Stdio {
    pub outbox: Outbox,
    pub store_id: u64,
    pub stdin: StdinReceiver,
    pub call: Arc<CallState>,
}

pub fn build(options: Option<&Term>, stdio: Stdio) -> Fallible<(WasiP1Ctx, FdBudget)> {
    let mut builder = WasiCtxBuilder::new();
    // Not `allow_blocking_current_thread`: with it, a lone clock subscription in
    // `poll_oneoff` sleeps the thread, and no deadline could stop that sleep.
    let Some(options) = options else {
        return Ok((builder.build_p1(), FdBudget::default()));
    };
    let m = term::as_map(options, "wasi options")?;
    let max_open_files = match term::map_u64(m, "max_open_files")? {
        Some(n) if n > 0 => n,
        None => DEFAULT_MAX_OPEN_FILES,
        Some(n) => return Err(format!("max_open_files must be at least 1, got: {n}")),
    };
    let preopens = match term::map_get(m, "preopen") {
        Some(list) => term::as_list(list, "preopen")?.len(),
        None => 0,
    };
    let mut ctx = fill(builder, m, stdio)?;
    let budget = limit_open_files(&mut ctx, preopens, max_open_files);
    Ok((ctx, budget))
}

/// At most this many open files and directories per store, unless the options say otherwise.
pub const DEFAULT_MAX_OPEN_FILES: u64 = 256;

/// Bounds what the program may hold open at once (`wasi_fds.rs`): what the context holds,
/// its three standard streams and its preopens (the streams and preopens enter the store's
/// resource table when the program first uses WASI), plus `max_open_files`. `path_open`
/// answers `EMFILE` beyond that; the table itself refuses entries a little further on (a
/// trap), which bounds anything else that fills it, such as the short-lived entries of a
/// `poll_oneoff`.
fn limit_open_files(ctx: &mut WasiP1Ctx, preopens: usize, max_open_files: u64) -> FdBudget {
    use wasmtime_wasi::WasiView;
    /// Room for entries that live during one WASI call (subscriptions, directory streams).
    const TRANSIENT: usize = 64;
    let table = ctx.ctx().table;
    let held = table.iter_mut().count() + STDIO + preopens;
    let max_entries = held.saturating_add(usize::try_from(max_open_files).unwrap_or(usize::MAX));
    table.set_max_capacity(max_entries.saturating_add(TRANSIENT));
    FdBudget { max_entries }
}

/// Gives `builder` the arguments, environment and preopened directories of the options
/// (what preview 1 and preview 2, `component/wasi.rs`, share): how many directories.
pub fn args_env_preopens(
    builder: &mut WasiCtxBuilder,
    m: &std::collections::HashMap<Term, Term>,
) -> Fallible<usize> {
    if let Some(args) = term::map_get(m, "args") {
        for a in term::as_list(args, "wasi args")?.iter() {
            builder.arg(term::as_str(a, "wasi arg")?);
        }
    }
    if let Some(env) = term::map_get(m, "env") {
        for (k, v) in term::as_map(env, "wasi env")? {
            builder.env(
                term::as_str(k, "wasi env name")?,
                term::as_str(v, "wasi env value")?,
            );
        }
    }
    let Some(preopens) = term::map_get(m, "preopen") else {
        return Ok(0);
    };
    let preopens = term::as_list(preopens, "preopen")?;
    for p in preopens.iter() {
        let p = term::as_tuple(p, 3, "preopen")?;
        let host = term::as_str(&p[0], "preopen path")?;
        let guest = term::as_str(&p[1], "preopen alias")?;
        let perms = if term::as_bool(&p[2], "preopen read_only")? {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(host, guest, perms)
            .map_err(|e| format!("cannot preopen directory {host}: {e}"))?;
    }
    Ok(preopens.len())
}

fn fill(
    mut builder: WasiCtxBuilder,
    m: &std::collections::HashMap<Term, Term>,
    stdio: Stdio,
) -> Fallible<WasiP1Ctx> {
    args_env_preopens(&mut builder, m)?;
    streams(&mut builder, m, stdio)?;
    Ok(builder.build_p1())
}

/// Gives `builder` the standard streams of the options (what preview 1 and preview 2,
/// `component/wasi.rs`, share): whether stdout and stderr were given one each.
pub fn streams(
    builder: &mut WasiCtxBuilder,
    m: &std::collections::HashMap<Term, Term>,
    stdio: Stdio,
) -> Fallible<(bool, bool)> {
    let Stdio {
        outbox,
        store_id,
        stdin,
        call,
    } = stdio;
    let stdout = output_spec(term::map_get(m, "stdout"), "stdout")?;
    let stderr = output_spec(term::map_get(m, "stderr"), "stderr")?;
    let given = (stdout.is_some(), stderr.is_some());
    let output =
        (stdout.is_some() || stderr.is_some()).then(|| Outputs::new(outbox.clone(), store_id));
    if let Some(t) = term::map_get(m, "stdin").filter(|t| !term::is_nil(t)) {
        // `push`: the BEAM sends input unasked; `{pull, Handler}`: it is asked for it.
        let handler = match term::as_atom(t) {
            Some("push") => None,
            _ => Some(tagged(t, "pull", "stdin")?),
        };
        builder.stdin(EventInput::new(
            stdin,
            outbox,
            store_id,
            handler,
            call,
            output.clone(),
        ));
    }
    if let (Some(output), Some(spec)) = (&output, stdout) {
        builder.stdout(EventOutput::new(output, spec));
    }
    if let (Some(output), Some(spec)) = (&output, stderr) {
        builder.stderr(EventOutput::new(output, spec));
    }
    Ok(given)
}

/// An output stream's options: `nil` (discarded), `{events, Handler}`,
/// `{messages, Handler, Window}` or `{pipe, Handler, Window, Room}`.
pub fn output_spec(t: Option<&Term>, what: &str) -> Fallible<Option<SinkSpec>> {
    let Some(t) = t.filter(|t| !term::is_nil(t)) else {
        return Ok(None);
    };
    let spec = |handler: &Term, window: Option<&Term>, room: Option<&Term>| {
        let window = match window {
            Some(w) => term::as_u64(w, &format!("{what} window"))?,
            None => DEFAULT_WINDOW,
        };
        if window == 0 {
            return Err(format!("{what} window must be at least 1 byte"));
        }
        let room = room
            .map(|r| term::as_u64(r, &format!("{what} pipe room")))
            .transpose()?;
        Ok(Some(SinkSpec {
            handler: term::as_bytes(handler, what)?.to_vec(),
            window,
            room,
        }))
    };
    let bad = || {
        format!(
            "{what} must be nil, {{events, Handler}}, {{messages, Handler, Window}} or \
             {{pipe, Handler, Window, Room}}, got: {}",
            term::show(t)
        )
    };
    let Some((tag, rest)) = (match t {
        Term::Tuple(tuple) => tuple.elements.split_first(),
        _ => None,
    }) else {
        return Err(bad());
    };
    match (term::as_atom(tag), rest) {
        (Some("events"), [h]) => spec(h, None, None),
        (Some("messages"), [h, w]) => spec(h, Some(w), None),
        (Some("pipe"), [h, w, r]) => spec(h, Some(w), Some(r)),
        _ => Err(bad()),
    }
}

/// `{Tag, Handler}` -> Handler.
fn tagged(t: &Term, tag: &str, what: &str) -> Fallible<Vec<u8>> {
    let p = term::as_tuple(t, 2, what)?;
    if term::as_atom(&p[0]) != Some(tag) {
        return Err(format!(
            "{what} must be nil or {{{tag}, Handler}}, got: {}",
            term::show(t)
        ));
    }
    Ok(term::as_bytes(&p[1], what)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: Term) -> Fallible<Option<SinkSpec>> {
        output_spec(Some(&t), "stdout")
    }

    #[test]
    fn output_options_name_a_sink() {
        let h = || term::binary(b"h".to_vec());
        assert_eq!(output_spec(None, "stdout"), Ok(None));
        assert_eq!(parse(term::nil()), Ok(None));
        let events = parse(term::tuple(vec![term::atom("events"), h()])).unwrap();
        assert_eq!(events.map(|s| s.window), Some(DEFAULT_WINDOW));
        let pipe = parse(term::tuple(vec![
            term::atom("pipe"),
            h(),
            term::uint(64),
            term::uint(9),
        ]));
        assert_eq!(
            pipe,
            Ok(Some(SinkSpec {
                handler: b"h".to_vec(),
                window: 64,
                room: Some(9)
            }))
        );
    }

    #[test]
    fn bad_output_options_are_refused() {
        let h = || term::binary(b"h".to_vec());
        let zero = parse(term::tuple(vec![
            term::atom("messages"),
            h(),
            term::uint(0),
        ]));
        assert_eq!(zero, Err("stdout window must be at least 1 byte".into()));
        for bad in [
            term::tuple(vec![]),
            term::tuple(vec![term::atom("pipe"), h()]),
            term::atom("events"),
        ] {
            assert!(parse(bad).unwrap_err().starts_with("stdout must be nil"));
        }
    }
}
