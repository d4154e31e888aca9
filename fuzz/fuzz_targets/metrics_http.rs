//! The metrics listener's request framing and request-line check on arbitrary bytes: never
//! panics; a head is found only where a blank line ends it, and only `GET|HEAD /metrics` scrapes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::fuzz::metrics_request;

fuzz_target!(|bytes: &[u8]| {
    match metrics_request(bytes) {
        None => assert!(!bytes.windows(2).any(|w| w == b"\n\n")),
        Some(true) => assert!(bytes.starts_with(b"GET /metrics") || bytes.starts_with(b"HEAD /metrics")),
        Some(false) => {}
    }
});
