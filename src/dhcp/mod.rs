//! DHCPv4, and DHCPv6 prefix delegation, as I/O-free engines over the `dhcproto` wire format:
//! - `server`: the LAN's DHCP server (SPEC 27): pools, static leases, conflict check by ARP
//!   probe, bounded per source MAC and in total, every dropped request counted;
//! - `leases`: the server's lease file, kept across restarts and written atomically;
//! - `client`: the DHCP client of an uplink (SPEC 28), RFC 2131 states and timers;
//! - `pd`: the DHCPv6 prefix delegation client of an uplink (SPEC 32), RFC 8415 IA_PD.
//!
//! The engines speak DHCP payloads (the UDP payload) and addresses; the control thread builds
//! and parses the UDP/IP/Ethernet around them and owns the clock and the files.

pub mod client;
pub mod leases;
pub mod pd;
pub mod server;

use std::net::Ipv4Addr;

use dhcproto::v4::{Decodable, Message, Opcode};

use crate::wire::ethernet::MacAddr;

/// UDP port of DHCP servers.
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;

/// Fixed BOOTP header before the options: op .. file (236 bytes) and the magic cookie.
const HEADER_LEN: usize = 240;
/// Larger payloads are not DHCP from a well-behaved client (the Ethernet MTU bounds them).
const MAX_PAYLOAD: usize = 1500;
/// More distinct options than any real client sends; a longer list is an attack on parsing.
const MAX_OPTIONS: usize = 64;
/// The DHCP magic cookie after the BOOTP header (RFC 2131 3).
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// Why a received payload is not a usable DHCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header, or the options do not decode.
    Malformed,
    /// Longer than an Ethernet frame can carry.
    Oversize,
    /// More options than `MAX_OPTIONS`.
    TooManyOptions,
    /// Not an Ethernet hardware address (htype 1, hlen 6).
    BadHardware,
    /// No DHCP magic cookie.
    NotDhcp,
    /// No message type option (53).
    NoMessageType,
    /// A reply where a request was expected, or the other way round.
    WrongDirection,
    /// An option runs past the end of the payload, or a fixed-size option has another size.
    BadLength,
}

/// Decodes and sanity-checks a DHCP payload whose BOOTP op must be `op`; returns the message
/// and its client hardware address.
fn decode(payload: &[u8], op: Opcode) -> Result<(Message, MacAddr), WireError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(WireError::Oversize);
    }
    if payload.len() < HEADER_LEN {
        return Err(WireError::Malformed);
    }
    if payload[236..240] != MAGIC {
        return Err(WireError::NotDhcp);
    }
    // htype 1 and hlen 6 before decoding: `Message::chaddr` slices by hlen.
    if payload[1] != 1 || payload[2] != 6 {
        return Err(WireError::BadHardware);
    }
    check_options(&payload[HEADER_LEN..])?;
    let msg = Message::from_bytes(payload).map_err(|_| WireError::Malformed)?;
    if msg.opcode() != op {
        return Err(WireError::WrongDirection);
    }
    if msg.opts().msg_type().is_none() {
        return Err(WireError::NoMessageType);
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(msg.chaddr());
    Ok((msg, MacAddr(mac)))
}

/// Walks the option list once before `dhcproto` decodes it: counts the options and checks
/// their lengths. The crate stops at the first option it cannot read (so a bad length would go
/// unnoticed) and debug-asserts the length of a few options, which must not be reachable from
/// the wire.
fn check_options(mut opts: &[u8]) -> Result<(), WireError> {
    let mut count = 0;
    while let [code, rest @ ..] = opts {
        match code {
            0 => {
                opts = rest;
                continue;
            }
            255 => return Ok(()),
            _ => {}
        }
        let [len, rest @ ..] = rest else {
            return Err(WireError::BadLength);
        };
        let len = usize::from(*len);
        if len > rest.len() || !fixed_length_ok(*code, len) {
            return Err(WireError::BadLength);
        }
        count += 1;
        if count > MAX_OPTIONS {
            return Err(WireError::TooManyOptions);
        }
        opts = &rest[len..];
    }
    Ok(())
}

/// Options whose value has one size (RFC 2132, and those `dhcproto` asserts on).
fn fixed_length_ok(code: u8, len: usize) -> bool {
    match code {
        // Subnet mask, requested address, lease time, server id, T1, T2.
        1 | 50 | 51 | 54 | 58 | 59 => len == 4,
        // Interface MTU, maximum message size.
        26 | 57 => len == 2,
        // Message type.
        53 => len == 1,
        // Rapid commit.
        80 => len == 0,
        // Client FQDN.
        81 => len >= 3,
        // Client network interface.
        94 => len == 3,
        // Bulk lease query status code and times.
        151 => len >= 1,
        152..=155 => len == 4,
        _ => true,
    }
}

/// The netmask of a prefix length (option 1).
pub fn netmask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) })
}

/// The prefix length of a contiguous netmask; None for a mask with holes.
fn mask_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip() {
        for len in 0..=32 {
            assert_eq!(mask_len(netmask(len)), Some(len));
        }
        assert_eq!(mask_len(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
