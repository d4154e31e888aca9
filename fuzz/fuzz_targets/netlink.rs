//! rtnetlink link notifications from arbitrary bytes: never panics, and each event needs at
//! least one whole message header plus ifinfomsg (32 bytes), so garbage cannot multiply events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::fuzz::netlink_link_events;

fuzz_target!(|datagram: &[u8]| {
    let events = netlink_link_events(datagram);
    assert!(events.len() * 32 <= datagram.len());
});
