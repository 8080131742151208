//! The `wasmex_port` program as a library: everything but `main`, so that tests and the
//! fuzz targets in `fuzz/` can drive the decoder and the dispatcher directly.

pub mod artifact;
pub mod bulk;
pub mod call_state;
pub mod callback;
pub mod code;
pub mod compiler;
pub mod component;
pub mod drops;
pub mod engine;
pub mod errors;
pub mod etf_guard;
pub mod executor;
pub mod frame;
pub mod global;
pub mod host;
pub mod input;
pub mod instance;
pub mod memory;
pub mod module;
pub mod module_key;
pub mod os_limits;
pub mod outbox;
pub mod protocol;
pub mod request;
pub mod request_head;
pub mod shared;
pub mod stdio;
pub mod store;
pub mod term;
pub mod tuning;
pub mod values;
pub mod wasi;
pub mod wasi_fds;
