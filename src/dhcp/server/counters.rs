//! Why the server drops a request, and what it did: one counter per reason, for `show` and
//! metrics.

use super::WireError;

/// Why a request was dropped (or refused with a NAK); one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Malformed,
    Oversize,
    TooManyOptions,
    BadHardware,
    NotDhcp,
    NoMessageType,
    BadLength,
    /// A BOOTREPLY on the server port.
    NotRequest,
    /// Relayed (giaddr set): the server serves its own LAN only.
    Relayed,
    /// A message type a server does not take (OFFER, ACK, ...).
    UnexpectedType,
    /// REQUEST for an address leased to another client (answered with a NAK).
    AddressTaken,
    /// REQUEST for an address this server cannot give (answered with a NAK).
    WrongAddress,
    /// REQUEST naming another server, or one the server has no record of (RFC 2131 4.3.2).
    NotForUs,
    /// No free address in the pools.
    PoolExhausted,
    /// The source MAC already holds `max_per_mac` offers and leases.
    PerMacLimit,
    /// `max_leases` offers, probes and leases exist.
    TotalLimit,
    /// DECLINE or RELEASE of an address the client does not hold.
    NotHeld,
}

impl Drop {
    pub const ALL: [Drop; 17] = [
        Drop::Malformed,
        Drop::Oversize,
        Drop::TooManyOptions,
        Drop::BadHardware,
        Drop::NotDhcp,
        Drop::NoMessageType,
        Drop::BadLength,
        Drop::NotRequest,
        Drop::Relayed,
        Drop::UnexpectedType,
        Drop::AddressTaken,
        Drop::WrongAddress,
        Drop::NotForUs,
        Drop::PoolExhausted,
        Drop::PerMacLimit,
        Drop::TotalLimit,
        Drop::NotHeld,
    ];

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::Oversize => "oversize",
            Drop::TooManyOptions => "too_many_options",
            Drop::BadHardware => "bad_hardware",
            Drop::NotDhcp => "not_dhcp",
            Drop::NoMessageType => "no_message_type",
            Drop::BadLength => "bad_length",
            Drop::NotRequest => "not_request",
            Drop::Relayed => "relayed",
            Drop::UnexpectedType => "unexpected_type",
            Drop::AddressTaken => "address_taken",
            Drop::WrongAddress => "wrong_address",
            Drop::NotForUs => "not_for_us",
            Drop::PoolExhausted => "pool_exhausted",
            Drop::PerMacLimit => "per_mac_limit",
            Drop::TotalLimit => "total_limit",
            Drop::NotHeld => "not_held",
        }
    }
}

impl From<WireError> for Drop {
    fn from(e: WireError) -> Drop {
        match e {
            WireError::Malformed => Drop::Malformed,
            WireError::Oversize => Drop::Oversize,
            WireError::TooManyOptions => Drop::TooManyOptions,
            WireError::BadHardware => Drop::BadHardware,
            WireError::NotDhcp => Drop::NotDhcp,
            WireError::NoMessageType => Drop::NoMessageType,
            WireError::WrongDirection => Drop::NotRequest,
            WireError::BadLength => Drop::BadLength,
        }
    }
}

/// What the server did, for `show` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerCounters {
    pub received: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub informs: u64,
    pub declines: u64,
    pub releases: u64,
    pub probes: u64,
    /// Candidate addresses found in use by the ARP probe.
    pub conflicts: u64,
    pub expired: u64,
    /// Indexed like `Drop::ALL`.
    pub dropped: [u64; Drop::ALL.len()],
}

impl ServerCounters {
    pub fn dropped(&self, reason: Drop) -> u64 {
        self.dropped[reason as usize]
    }
}
