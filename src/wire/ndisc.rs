//! Neighbour discovery messages (RFC 4861): router solicitation and advertisement, neighbour
//! solicitation and advertisement, with the options the router reads and sends: link-layer
//! addresses, prefix information, MTU, route information (RFC 4191) and recursive DNS servers
//! (RFC 8106). Also the multicast addresses and MACs neighbour discovery sends to.
//!
//! [`NdPacket::parse`] applies RFC 4861's validity checks (hop limit 255, checksum, code 0,
//! lengths) and checks every option once, so iterating [`NdPacket::options`] afterwards cannot
//! fail. Building takes an [`NdRepr`] and writes the whole IPv6 packet.

use std::net::Ipv6Addr;

use super::ethernet::MacAddr;
use super::field::{
    bytes_at, set_bytes, set_u8, set_u16, set_u32, slice_mut, u8_at, u16_at, u32_at,
};
use super::icmpv6::{Icmpv6Packet, types};
use super::ipv6::{self, Ipv6Packet, OwnHeader, next_header};
use super::{Result, WireError};

/// Every neighbour discovery packet is sent with hop limit 255, and one received with any
/// other was forwarded by a router and is discarded (RFC 4861 §6.1, §7.1).
pub const HOP_LIMIT: u8 = 255;

/// ff02::1, all nodes on the link: the destination of unsolicited RAs.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, all routers on the link: the destination of RSs.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1): where an NS for it goes.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet destination of an IPv6 multicast address (RFC 2464 §7): 33:33 and its last
/// four bytes.
pub fn multicast_mac(addr: Ipv6Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The link-local address with the modified EUI-64 interface identifier of `mac`
/// (RFC 4291 §2.5.1, RFC 2464 §4): the router's own address on each link.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// `addr` with the bits after `len` cleared: RFC 4861 §4.6.2 and RFC 4191 §2.3 say they are
/// ignored by the receiver, so a parsed prefix carries none and builds back the same.
fn masked(addr: Ipv6Addr, len: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    Ipv6Addr::from_bits(addr.to_bits() & mask)
}

/// Option types.
pub mod option_type {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const MTU: u8 = 5;
    pub const ROUTE_INFO: u8 = 24;
    pub const RDNSS: u8 = 25;
}

/// The fixed fields of a Router Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterAdvert {
    /// Hop limit hosts should use; 0 leaves it unspecified.
    pub cur_hop_limit: u8,
    /// M: addresses are available by DHCPv6.
    pub managed: bool,
    /// O: other configuration is available by DHCPv6.
    pub other: bool,
    /// Seconds this router may be a default router; 0: not a default router (RFC 8475 uses
    /// this when no uplink is up).
    pub router_lifetime: u16,
    /// Milliseconds; 0 unspecified.
    pub reachable_time: u32,
    /// Milliseconds; 0 unspecified.
    pub retrans_timer: u32,
}

/// The flags of a Neighbor Advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NaFlags {
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

/// A neighbour discovery message: its type and fixed fields (the options follow them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    RouterSolicit,
    RouterAdvert(RouterAdvert),
    NeighborSolicit { target: Ipv6Addr },
    NeighborAdvert { flags: NaFlags, target: Ipv6Addr },
}

impl Message {
    fn msg_type(&self) -> u8 {
        match self {
            Message::RouterSolicit => types::ROUTER_SOLICIT,
            Message::RouterAdvert(_) => types::ROUTER_ADVERT,
            Message::NeighborSolicit { .. } => types::NEIGHBOR_SOLICIT,
            Message::NeighborAdvert { .. } => types::NEIGHBOR_ADVERT,
        }
    }

    /// Length of the ICMPv6 header plus the fixed fields: where the options start.
    fn options_at(msg_type: u8) -> Option<usize> {
        match msg_type {
            types::ROUTER_SOLICIT => Some(8),
            types::ROUTER_ADVERT => Some(16),
            types::NEIGHBOR_SOLICIT | types::NEIGHBOR_ADVERT => Some(24),
            _ => None,
        }
    }

    /// Reads the fixed fields of `msg`, an ICMPv6 message at least `options_at` long.
    fn read(msg: &[u8]) -> Option<Message> {
        let target = || Ipv6Addr::from(bytes_at::<16>(msg, 8));
        Some(match u8_at(msg, 0) {
            types::ROUTER_SOLICIT => Message::RouterSolicit,
            types::ROUTER_ADVERT => {
                let flags = u8_at(msg, 5);
                Message::RouterAdvert(RouterAdvert {
                    cur_hop_limit: u8_at(msg, 4),
                    managed: flags & 0x80 != 0,
                    other: flags & 0x40 != 0,
                    router_lifetime: u16_at(msg, 6),
                    reachable_time: u32_at(msg, 8),
                    retrans_timer: u32_at(msg, 12),
                })
            }
            types::NEIGHBOR_SOLICIT => Message::NeighborSolicit { target: target() },
            types::NEIGHBOR_ADVERT => {
                let flags = u8_at(msg, 4);
                Message::NeighborAdvert {
                    flags: NaFlags {
                        router: flags & 0x80 != 0,
                        solicited: flags & 0x40 != 0,
                        override_: flags & 0x20 != 0,
                    },
                    target: target(),
                }
            }
            _ => return None,
        })
    }

    /// Writes the type and fixed fields into `msg` (zeroed, `options_at` long at least).
    fn write(&self, msg: &mut [u8]) {
        set_u8(msg, 0, self.msg_type());
        match *self {
            Message::RouterSolicit => {}
            Message::RouterAdvert(ra) => {
                set_u8(msg, 4, ra.cur_hop_limit);
                set_u8(msg, 5, u8::from(ra.managed) << 7 | u8::from(ra.other) << 6);
                set_u16(msg, 6, ra.router_lifetime);
                set_u32(msg, 8, ra.reachable_time);
                set_u32(msg, 12, ra.retrans_timer);
            }
            Message::NeighborSolicit { target } => {
                set_bytes(msg, 8, target.octets());
            }
            Message::NeighborAdvert { flags, target } => {
                let bits = u8::from(flags.router) << 7
                    | u8::from(flags.solicited) << 6
                    | u8::from(flags.override_) << 5;
                set_u8(msg, 4, bits);
                set_bytes(msg, 8, target.octets());
            }
        }
    }
}

/// A Prefix Information option (RFC 4861 §4.6.2), what SLAAC hosts configure from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// L: the prefix is on this link.
    pub on_link: bool,
    /// A: hosts may form addresses in it (SLAAC).
    pub autonomous: bool,
    /// Seconds; 0xffffffff is infinity.
    pub valid_lifetime: u32,
    /// Seconds; 0 deprecates the addresses formed from the prefix (SPEC 33).
    pub preferred_lifetime: u32,
}

/// Route preference of a Route Information option (RFC 4191 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    Low,
    Medium,
    High,
}

impl Preference {
    /// From the two-bit field; None for the reserved value 10.
    fn from_bits(bits: u8) -> Option<Preference> {
        match bits & 0b11 {
            0b00 => Some(Preference::Medium),
            0b01 => Some(Preference::High),
            0b11 => Some(Preference::Low),
            _ => None,
        }
    }

    fn bits(self) -> u8 {
        match self {
            Preference::Medium => 0b00,
            Preference::High => 0b01,
            Preference::Low => 0b11,
        }
    }
}

/// A Route Information option (RFC 4191 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub preference: Preference,
    /// Seconds; 0xffffffff is infinity.
    pub lifetime: u32,
}

/// A Recursive DNS Server option (RFC 8106 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rdnss<'a> {
    /// Seconds the servers may be used; 0: no longer.
    pub lifetime: u32,
    /// The servers' addresses, 16 bytes each.
    pub servers: &'a [u8],
}

impl Rdnss<'_> {
    pub fn servers(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.servers
            .chunks_exact(16)
            .map(|c| Ipv6Addr::from(<[u8; 16]>::try_from(c).unwrap_or([0; 16])))
    }
}

/// One option of a neighbour discovery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdOption<'a> {
    SourceLinkAddr(MacAddr),
    TargetLinkAddr(MacAddr),
    PrefixInfo(PrefixInfo),
    Mtu(u32),
    RouteInfo(RouteInfo),
    Rdnss(Rdnss<'a>),
    /// A type this router does not read (RFC 4861 §4.6: ignored); `data` follows the type and
    /// length bytes.
    Unknown {
        option_type: u8,
        data: &'a [u8],
    },
}

impl<'a> NdOption<'a> {
    /// Reads one option from the start of `buf`; returns it and its length. Err(Malformed) for
    /// a zero length (RFC 4861 §4.6: the packet is discarded), a known option whose length is
    /// not the one its format has, or an invalid prefix length; Err(Truncated) when the length
    /// runs past `buf`.
    fn read(buf: &'a [u8]) -> Result<(NdOption<'a>, usize)> {
        let (&option_type, &units) = match buf {
            [t, l, ..] => (t, l),
            _ => return Err(WireError::Truncated),
        };
        if units == 0 {
            return Err(WireError::Malformed);
        }
        let len = usize::from(units) * 8;
        let opt = buf.get(..len).ok_or(WireError::Truncated)?;
        let addr_at = |at: usize| Ipv6Addr::from(bytes_at::<16>(opt, at));
        let mac = || MacAddr(bytes_at::<6>(opt, 2));
        let option = match (option_type, units) {
            (option_type::SOURCE_LLADDR, 1) => NdOption::SourceLinkAddr(mac()),
            (option_type::TARGET_LLADDR, 1) => NdOption::TargetLinkAddr(mac()),
            (option_type::PREFIX_INFO, 4) => {
                let prefix_len = opt[2];
                if prefix_len > 128 {
                    return Err(WireError::Malformed);
                }
                NdOption::PrefixInfo(PrefixInfo {
                    prefix: masked(addr_at(16), prefix_len),
                    prefix_len,
                    on_link: opt[3] & 0x80 != 0,
                    autonomous: opt[3] & 0x40 != 0,
                    valid_lifetime: u32_at(opt, 4),
                    preferred_lifetime: u32_at(opt, 8),
                })
            }
            (option_type::MTU, 1) => NdOption::Mtu(u32_at(opt, 4)),
            (option_type::ROUTE_INFO, 1..=3) => {
                let prefix_len = opt[2];
                // RFC 4191 §2.3: the length must cover the prefix length.
                let needed = match prefix_len {
                    0 => 1,
                    1..=64 => 2,
                    65..=128 => 3,
                    _ => return Err(WireError::Malformed),
                };
                if units < needed {
                    return Err(WireError::Malformed);
                }
                // RFC 4191 §2.3: an option with the reserved preference is ignored.
                let Some(preference) = Preference::from_bits(opt[3] >> 3) else {
                    return Ok((
                        NdOption::Unknown {
                            option_type,
                            data: &opt[2..],
                        },
                        len,
                    ));
                };
                let mut prefix = [0u8; 16];
                prefix[..len - 8].copy_from_slice(&opt[8..]);
                NdOption::RouteInfo(RouteInfo {
                    prefix: masked(Ipv6Addr::from(prefix), prefix_len),
                    prefix_len,
                    preference,
                    lifetime: u32_at(opt, 4),
                })
            }
            (option_type::RDNSS, 3..) if units % 2 == 1 => NdOption::Rdnss(Rdnss {
                lifetime: u32_at(opt, 4),
                servers: &opt[8..],
            }),
            (
                option_type::SOURCE_LLADDR
                | option_type::TARGET_LLADDR
                | option_type::PREFIX_INFO
                | option_type::MTU
                | option_type::ROUTE_INFO
                | option_type::RDNSS,
                _,
            ) => return Err(WireError::Malformed),
            _ => NdOption::Unknown {
                option_type,
                data: &opt[2..],
            },
        };
        Ok((option, len))
    }

    /// Length of the option when written; Err(Malformed) for one that has no encoding (RDNSS
    /// servers not a whole number of addresses or none at all, an unknown option whose data
    /// does not end on an 8-byte boundary or is too long, prefix lengths over 128).
    fn len(&self) -> Result<usize> {
        let len = match self {
            NdOption::SourceLinkAddr(_) | NdOption::TargetLinkAddr(_) | NdOption::Mtu(_) => 8,
            NdOption::PrefixInfo(p) if p.prefix_len <= 128 => 32,
            NdOption::RouteInfo(r) if r.prefix_len <= 128 => {
                8 + usize::from(r.prefix_len).div_ceil(64) * 8
            }
            NdOption::Rdnss(r) if !r.servers.is_empty() && r.servers.len() % 16 == 0 => {
                8 + r.servers.len()
            }
            NdOption::Unknown { data, .. } if (2 + data.len()) % 8 == 0 => 2 + data.len(),
            _ => return Err(WireError::Malformed),
        };
        if len > usize::from(u8::MAX) * 8 {
            return Err(WireError::Malformed);
        }
        Ok(len)
    }

    /// Writes the option into `out`, which is exactly [`len`](Self::len) bytes and zeroed.
    fn write(&self, out: &mut [u8]) {
        let option_type = match self {
            NdOption::SourceLinkAddr(_) => option_type::SOURCE_LLADDR,
            NdOption::TargetLinkAddr(_) => option_type::TARGET_LLADDR,
            NdOption::PrefixInfo(_) => option_type::PREFIX_INFO,
            NdOption::Mtu(_) => option_type::MTU,
            NdOption::RouteInfo(_) => option_type::ROUTE_INFO,
            NdOption::Rdnss(_) => option_type::RDNSS,
            NdOption::Unknown { option_type, .. } => *option_type,
        };
        set_u8(out, 0, option_type);
        set_u8(out, 1, (out.len() / 8) as u8);
        match self {
            NdOption::SourceLinkAddr(mac) | NdOption::TargetLinkAddr(mac) => {
                set_bytes(out, 2, mac.0);
            }
            NdOption::PrefixInfo(p) => {
                set_u8(out, 2, p.prefix_len);
                set_u8(
                    out,
                    3,
                    u8::from(p.on_link) << 7 | u8::from(p.autonomous) << 6,
                );
                set_u32(out, 4, p.valid_lifetime);
                set_u32(out, 8, p.preferred_lifetime);
                set_bytes(out, 16, p.prefix.octets());
            }
            NdOption::Mtu(mtu) => set_u32(out, 4, *mtu),
            NdOption::RouteInfo(r) => {
                set_u8(out, 2, r.prefix_len);
                set_u8(out, 3, r.preference.bits() << 3);
                set_u32(out, 4, r.lifetime);
                let n = out.len() - 8;
                slice_mut(out, 8..8 + n).copy_from_slice(&r.prefix.octets()[..n]);
            }
            NdOption::Rdnss(r) => {
                set_u32(out, 4, r.lifetime);
                slice_mut(out, 8..8 + r.servers.len()).copy_from_slice(r.servers);
            }
            NdOption::Unknown { data, .. } => {
                slice_mut(out, 2..2 + data.len()).copy_from_slice(data);
            }
        }
    }
}

/// The options of a message that [`NdPacket::parse`] has checked.
#[derive(Debug, Clone)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = NdOption<'a>;

    fn next(&mut self) -> Option<NdOption<'a>> {
        // Every option is at least 8 bytes, so this ends after len / 8 steps; a parse error
        // (impossible after `NdPacket::parse`) ends it too.
        let (option, len) = NdOption::read(self.rest).ok()?;
        self.rest = self.rest.get(len..).unwrap_or(&[]);
        Some(option)
    }
}

/// Walks `options` once: Ok when every option reads.
fn check_options(mut options: &[u8]) -> Result<()> {
    while !options.is_empty() {
        let (_, len) = NdOption::read(options)?;
        options = &options[len..];
    }
    Ok(())
}

/// A received neighbour discovery message whose fields and options have been checked.
#[derive(Debug, Clone)]
pub struct NdPacket<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub message: Message,
    options: &'a [u8],
}

impl<'a> NdPacket<'a> {
    /// Parses the neighbour discovery message carried by `ip` (RFC 4861 §6.1.1, §6.1.2,
    /// §7.1.1, §7.1.2): hop limit 255, ICMPv6 directly after the fixed header, a valid
    /// checksum, code 0, the message long enough for its fixed fields, a target that is not
    /// multicast, and every option well formed (zero length → Err(Malformed)). The checks
    /// that need the whole message (a solicited NA to a multicast address, an unspecified
    /// source with a link-layer option) are the engines'.
    pub fn parse(ip: &'a Ipv6Packet<&'a [u8]>) -> Result<NdPacket<'a>> {
        if ip.hop_limit() != HOP_LIMIT || ip.next_header() != next_header::ICMPV6 {
            return Err(WireError::Malformed);
        }
        let msg: &'a [u8] = ip.payload();
        let icmp = Icmpv6Packet::new_checked(msg)?;
        let options_at = Message::options_at(icmp.msg_type()).ok_or(WireError::Unsupported)?;
        if msg.len() < options_at {
            return Err(WireError::Truncated);
        }
        if icmp.code() != 0 {
            return Err(WireError::Malformed);
        }
        if !icmp.verify_checksum(ip.src(), ip.dst()) {
            return Err(WireError::BadChecksum);
        }
        let message = Message::read(msg).ok_or(WireError::Unsupported)?;
        if let Message::NeighborSolicit { target } | Message::NeighborAdvert { target, .. } =
            message
            && target.is_multicast()
        {
            return Err(WireError::Malformed);
        }
        let options = &msg[options_at..];
        check_options(options)?;
        Ok(NdPacket {
            src: ip.src(),
            dst: ip.dst(),
            message,
            options,
        })
    }

    pub fn options(&self) -> NdOptions<'a> {
        NdOptions { rest: self.options }
    }

    /// The source (RS, RA, NS) or target (NA) link-layer address option, if present.
    pub fn link_addr(&self) -> Option<MacAddr> {
        self.options().find_map(|o| match o {
            NdOption::SourceLinkAddr(mac) | NdOption::TargetLinkAddr(mac) => Some(mac),
            _ => None,
        })
    }
}

/// A neighbour discovery packet to build: addresses, message and options.
#[derive(Debug, Clone, Copy)]
pub struct NdRepr<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub message: Message,
    pub options: &'a [NdOption<'a>],
}

/// Builds the IPv6 packet (hop limit 255) carrying `repr`, checksum filled. Returns its length;
/// Err(Truncated) if `out` is too small, Err(Malformed) for an option with no encoding.
pub fn build(out: &mut [u8], repr: &NdRepr) -> Result<usize> {
    let options_at = Message::options_at(repr.message.msg_type()).unwrap_or(24);
    let mut msg_len = options_at;
    for option in repr.options {
        msg_len += option.len()?;
    }
    let len = ipv6::HEADER_LEN + msg_len;
    let packet = out.get_mut(..len).ok_or(WireError::Truncated)?;
    packet.fill(0);
    let ip = OwnHeader {
        src: repr.src,
        dst: repr.dst,
        hop_limit: HOP_LIMIT,
    };
    ipv6::write_header(packet, &ip.repr(next_header::ICMPV6, msg_len))?;
    let msg = slice_mut(packet, ipv6::HEADER_LEN..len);
    repr.message.write(msg);
    let mut at = options_at;
    for option in repr.options {
        let n = option.len()?;
        option.write(slice_mut(msg, at..at + n));
        at += n;
    }
    Icmpv6Packet::new_unchecked(msg).fill_checksum(repr.src, repr.dst);
    Ok(len)
}

/// The ICMPv6 type of a neighbour discovery message, for callers that dispatch on it before
/// parsing.
pub fn is_ndisc(msg_type: u8) -> bool {
    Message::options_at(msg_type).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROUTER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
    const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0x5054, 0xff, 0xfe12, 0x3456);

    fn lan_prefix(site: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, site, 0, 0, 0, 0, 0)
    }

    fn built(repr: &NdRepr) -> Vec<u8> {
        let mut out = vec![0u8; 600];
        let len = build(&mut out, repr).unwrap();
        out.truncate(len);
        out
    }

    fn reparsed(bytes: &[u8]) -> Result<(Message, Vec<String>)> {
        let ip = Ipv6Packet::new_checked(bytes)?;
        let nd = NdPacket::parse(&ip)?;
        Ok((nd.message, nd.options().map(|o| format!("{o:?}")).collect()))
    }

    #[test]
    fn multicast_and_link_local_addresses() {
        assert_eq!(
            solicited_node("2001:db8:a::12:3456".parse().unwrap()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac("ff02::1:ff12:3456".parse().unwrap()),
            MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
        assert_eq!(
            link_local(HOST_MAC),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert!(is_ndisc(135) && !is_ndisc(137) && !is_ndisc(128));
    }

    #[test]
    fn router_advert_round_trips_through_etherparse() {
        let router = link_local(ROUTER_MAC);
        let dns = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1).octets();
        let options = [
            NdOption::SourceLinkAddr(ROUTER_MAC),
            NdOption::Mtu(1500),
            NdOption::PrefixInfo(PrefixInfo {
                prefix: lan_prefix(0xa),
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 0,
            }),
            NdOption::RouteInfo(RouteInfo {
                prefix: lan_prefix(0x18),
                prefix_len: 48,
                preference: Preference::High,
                lifetime: 1800,
            }),
            NdOption::Rdnss(Rdnss {
                lifetime: 600,
                servers: &dns,
            }),
        ];
        let ra = RouterAdvert {
            cur_hop_limit: 64,
            managed: false,
            other: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
        };
        let bytes = built(&NdRepr {
            src: router,
            dst: ALL_NODES,
            message: Message::RouterAdvert(ra),
            options: &options,
        });
        assert_eq!(bytes.len(), 40 + 16 + 8 + 8 + 32 + 16 + 24);
        // etherparse does not know neighbour discovery beyond the ICMPv6 header: check the
        // header and checksum there, the options against our own parser and the RFC byte layout.
        let (ip, rest) = etherparse::Ipv6Header::from_slice(&bytes).unwrap();
        assert_eq!(ip.hop_limit, 255);
        let icmp = etherparse::Icmpv6Slice::from_slice(rest).unwrap();
        let mut header = icmp.header();
        header
            .update_checksum(ip.source, ip.destination, icmp.payload())
            .unwrap();
        assert_eq!(header.checksum, icmp.checksum());
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::Unknown {
                type_u8: 134,
                code_u8: 0,
                bytes5to8: [64, 0x40, 0x07, 0x08],
            }
        );
        let prefix_opt = &bytes[40 + 16 + 16..40 + 16 + 48];
        assert_eq!(&prefix_opt[..4], &[3, 4, 64, 0xc0]);
        assert_eq!(&prefix_opt[4..12], &[0, 1, 0x51, 0x80, 0, 0, 0, 0]);
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let nd = NdPacket::parse(&ip).unwrap();
        assert_eq!(nd.message, Message::RouterAdvert(ra));
        assert_eq!(nd.options().collect::<Vec<_>>(), options);
        assert_eq!(nd.link_addr(), Some(ROUTER_MAC));
        let NdOption::Rdnss(r) = nd.options().last().unwrap() else {
            panic!()
        };
        assert_eq!(r.servers().collect::<Vec<_>>(), [Ipv6Addr::from(dns)]);
    }

    #[test]
    fn neighbor_solicit_and_advert_match_etherparse() {
        let target = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
        let bytes = built(&NdRepr {
            src: HOST,
            dst: solicited_node(target),
            message: Message::NeighborSolicit { target },
            options: &[NdOption::SourceLinkAddr(HOST_MAC)],
        });
        let (_, rest) = etherparse::Ipv6Header::from_slice(&bytes).unwrap();
        let icmp = etherparse::Icmpv6Slice::from_slice(rest).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::Unknown {
                type_u8: 135,
                code_u8: 0,
                bytes5to8: [0; 4]
            }
        );
        assert_eq!(&icmp.payload()[..16], &target.octets());
        assert_eq!(
            &icmp.payload()[16..],
            &[1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );

        let flags = NaFlags {
            router: true,
            solicited: true,
            override_: true,
        };
        let bytes = built(&NdRepr {
            src: target,
            dst: HOST,
            message: Message::NeighborAdvert { flags, target },
            options: &[NdOption::TargetLinkAddr(ROUTER_MAC)],
        });
        let (_, rest) = etherparse::Ipv6Header::from_slice(&bytes).unwrap();
        let icmp = etherparse::Icmpv6Slice::from_slice(rest).unwrap();
        assert_eq!(
            icmp.icmp_type(),
            etherparse::Icmpv6Type::Unknown {
                type_u8: 136,
                code_u8: 0,
                bytes5to8: [0xe0, 0, 0, 0],
            }
        );
        let (message, options) = reparsed(&bytes).unwrap();
        assert_eq!(message, Message::NeighborAdvert { flags, target });
        assert_eq!(
            options,
            [format!("{:?}", NdOption::TargetLinkAddr(ROUTER_MAC))]
        );
    }

    /// A router solicitation as Linux sends it (captured on a veth: `rdisc6`-style RS from
    /// fe80::5054:ff:fe12:3456 with its source link-layer address).
    #[test]
    fn captured_router_solicit() {
        let mut bytes = vec![
            0x60, 0, 0, 0, 0, 16, 58, 255, //
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56, //
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
            133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56,
        ];
        let c = crate::wire::checksum::l4_checksum_v6(
            link_local(HOST_MAC),
            ALL_ROUTERS,
            58,
            &bytes[40..],
        )
        .unwrap();
        bytes[42..44].copy_from_slice(&c.to_be_bytes());
        let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let nd = NdPacket::parse(&ip).unwrap();
        assert_eq!(nd.message, Message::RouterSolicit);
        assert_eq!((nd.src, nd.dst), (link_local(HOST_MAC), ALL_ROUTERS));
        assert_eq!(nd.link_addr(), Some(HOST_MAC));
    }

    #[test]
    fn validity_checks() {
        let target = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
        let ns = |options: &[NdOption]| {
            built(&NdRepr {
                src: HOST,
                dst: solicited_node(target),
                message: Message::NeighborSolicit { target },
                options,
            })
        };
        let good = ns(&[NdOption::SourceLinkAddr(HOST_MAC)]);
        assert!(reparsed(&good).is_ok());
        let refix = |mut b: Vec<u8>| {
            let (src, dst) = {
                let ip = Ipv6Packet::new_unchecked(&b[..]);
                (ip.src(), ip.dst())
            };
            Icmpv6Packet::new_unchecked(&mut b[40..]).fill_checksum(src, dst);
            b
        };
        let mut hop = good.clone();
        hop[7] = 64;
        assert_eq!(
            reparsed(&hop).err(),
            Some(WireError::Malformed),
            "hop limit"
        );
        let mut csum = good.clone();
        csum[60] ^= 1;
        assert_eq!(reparsed(&csum).err(), Some(WireError::BadChecksum));
        let mut code = good.clone();
        code[41] = 1;
        assert_eq!(
            reparsed(&refix(code)).err(),
            Some(WireError::Malformed),
            "code"
        );
        let mut zero_len = good.clone();
        zero_len[40 + 25] = 0;
        assert_eq!(
            reparsed(&refix(zero_len)).err(),
            Some(WireError::Malformed),
            "zero-length option (RFC 4861 §4.6)"
        );
        let mut overrun = good.clone();
        overrun[40 + 25] = 2;
        assert_eq!(reparsed(&refix(overrun)).err(), Some(WireError::Truncated));
        let mut multicast_target = good.clone();
        multicast_target[48] = 0xff;
        assert_eq!(
            reparsed(&refix(multicast_target)).err(),
            Some(WireError::Malformed)
        );
        let mut short = good[..40 + 20].to_vec();
        short[5] = 20;
        assert_eq!(reparsed(&refix(short)).err(), Some(WireError::Truncated));
        let unknown = ns(&[NdOption::Unknown {
            option_type: 14,
            data: &[1, 2, 3, 4, 5, 6],
        }]);
        assert_eq!(
            reparsed(&unknown).unwrap().1,
            [format!(
                "{:?}",
                NdOption::Unknown {
                    option_type: 14,
                    data: &[1, 2, 3, 4, 5, 6]
                }
            )]
        );
        let mut bad_prefix_len = ns(&[NdOption::PrefixInfo(PrefixInfo {
            prefix: lan_prefix(0xa),
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: 1,
            preferred_lifetime: 1,
        })]);
        bad_prefix_len[40 + 24 + 2] = 129;
        assert_eq!(
            reparsed(&refix(bad_prefix_len)).err(),
            Some(WireError::Malformed)
        );
        let mut out = [0u8; 200];
        for unencodable in [
            NdOption::Rdnss(Rdnss {
                lifetime: 1,
                servers: &[],
            }),
            NdOption::Rdnss(Rdnss {
                lifetime: 1,
                servers: &[0; 17],
            }),
            NdOption::Unknown {
                option_type: 9,
                data: &[0; 5],
            },
        ] {
            let repr = NdRepr {
                src: HOST,
                dst: ALL_ROUTERS,
                message: Message::RouterSolicit,
                options: &[unencodable],
            };
            assert_eq!(build(&mut out, &repr), Err(WireError::Malformed));
        }
        let repr = NdRepr {
            src: HOST,
            dst: ALL_ROUTERS,
            message: Message::RouterSolicit,
            options: &[],
        };
        assert_eq!(build(&mut out[..47], &repr), Err(WireError::Truncated));
    }

    #[test]
    fn route_info_lengths() {
        for (prefix_len, units) in [(0u8, 1usize), (48, 2), (64, 2), (65, 3), (128, 3)] {
            let option = NdOption::RouteInfo(RouteInfo {
                prefix: Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0xffff, 0, 0, 0, 0),
                prefix_len,
                preference: Preference::Low,
                lifetime: 5,
            });
            assert_eq!(option.len(), Ok(units * 8));
            let mut buf = vec![0u8; units * 8];
            option.write(&mut buf);
            let (read, len) = NdOption::read(&buf).unwrap();
            assert_eq!(len, units * 8);
            let NdOption::RouteInfo(r) = read else {
                panic!()
            };
            assert_eq!(
                (r.prefix_len, r.preference, r.lifetime),
                (prefix_len, Preference::Low, 5)
            );
        }
        // A /64 route in one unit does not fit (RFC 4191 §2.3).
        assert_eq!(
            NdOption::read(&[24, 1, 64, 0, 0, 0, 0, 1]).err(),
            Some(WireError::Malformed)
        );
        assert!(
            matches!(
                NdOption::read(&[24, 1, 0, 0b10 << 3, 0, 0, 0, 1]),
                Ok((
                    NdOption::Unknown {
                        option_type: 24,
                        ..
                    },
                    8
                ))
            ),
            "reserved preference: the option is ignored (RFC 4191 §2.3)"
        );
    }

    /// Found by the nd_options fuzz target: a /0 route in three units with bytes after the
    /// prefix length, which the minimal encoding drops.
    #[test]
    fn bits_after_the_prefix_length_are_ignored() {
        let mut route = [0u8; 24];
        route[..4].copy_from_slice(&[24, 3, 0, 0x08]);
        route[8..].fill(0xa5);
        let (NdOption::RouteInfo(r), 24) = NdOption::read(&route).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.prefix, r.preference),
            (Ipv6Addr::UNSPECIFIED, Preference::High)
        );
        let mut pio = [0u8; 32];
        pio[..4].copy_from_slice(&[3, 4, 48, 0xc0]);
        pio[16..].fill(0xff);
        let (NdOption::PrefixInfo(p), 32) = NdOption::read(&pio).unwrap() else {
            panic!()
        };
        assert_eq!(p.prefix, "ffff:ffff:ffff::".parse::<Ipv6Addr>().unwrap());
    }

    proptest! {
        #[test]
        fn options_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let checked = check_options(&bytes);
            let walked: Vec<_> = NdOptions { rest: &bytes }.collect();
            if checked.is_ok() {
                let total: usize = walked.iter().map(|o| o.len().unwrap_or(0)).sum();
                prop_assert!(total <= bytes.len());
                prop_assert!(walked.len() <= bytes.len() / 8);
            }
        }

        #[test]
        fn packets_never_panic(body in proptest::collection::vec(any::<u8>(), 0..120), ty in 133u8..=136) {
            let mut bytes = vec![0u8; 40];
            let mut msg = vec![ty, 0, 0, 0];
            msg.extend_from_slice(&body);
            ipv6::write_header(&mut bytes, &OwnHeader { src: HOST, dst: ALL_ROUTERS, hop_limit: 255 }.repr(58, msg.len())).unwrap();
            bytes.extend_from_slice(&msg);
            Icmpv6Packet::new_unchecked(&mut bytes[40..]).fill_checksum(HOST, ALL_ROUTERS);
            let ip = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            if let Ok(nd) = NdPacket::parse(&ip) {
                let _ = (nd.link_addr(), nd.options().count());
            }
        }
    }
}
