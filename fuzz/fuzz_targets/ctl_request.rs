//! The control socket's request parser (`show …`, `explain …`, `reload`, `clear …`) on any
//! line: never panics, and parsing is a function of the line (the same line, the same answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::control::socket::Request;

fuzz_target!(|line: &str| {
    let first = Request::parse(line);
    let again = Request::parse(line);
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    if first.is_ok() {
        assert!(!line.trim().is_empty(), "an empty line parsed as a request");
    }
});
