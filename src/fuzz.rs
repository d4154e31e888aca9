//! Entry points for the coverage-guided fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing` (cargo-fuzz sets it): thin wrappers over parsers that stay private to their
//! modules in a normal build.

use crate::io::link::{LinkEvent, parse_link_events};
use crate::metrics::http::{head_end, parse_head};

/// The link events that one rtnetlink datagram yields.
pub fn netlink_link_events(datagram: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    parse_link_events(datagram, &mut events);
    events
}

/// Frames a metrics request head the way the listener does and checks its request line;
/// `Some(true)` for a scrape, `Some(false)` for a refusal, `None` while the head is incomplete.
pub fn metrics_request(bytes: &[u8]) -> Option<bool> {
    let end = head_end(bytes)?;
    Some(parse_head(&bytes[..end]).is_ok())
}
