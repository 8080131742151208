//! A fuzz input is what the port reads on stdin after `init`: 4-byte big-endian length
//! prefixes and payloads. Each frame goes to `Host::handle_payload` as `main.rs` sends it;
//! every outgoing frame must be well formed and every request must get exactly one reply
//! (src/driver.rs explains the one host shared by all inputs, the relative store ids and
//! the capped timeouts and limits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;
use wasmex_port_fuzz::driver::Driver;

/// Longer inputs are skipped: compiling big modules says little about the dispatcher.
const MAX_INPUT: usize = 64 << 10;

static DRIVER: Mutex<Option<Driver>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut driver = DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    driver.get_or_insert_with(Driver::new).run(data);
});
