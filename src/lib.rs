//! mhrouter: a userspace IPv4 router for a small multihomed site.

pub mod clock;
pub mod prefix;

/// Index of an uplink in the configuration's uplink list (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UplinkId(pub u8);
