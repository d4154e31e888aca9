//! ICMPv6 "address unreachable" (destination unreachable code 3, RFC 4443 §3.1; SPEC 34): the
//! answer to the sender of a packet the router forwarded to a LAN address that never answered
//! neighbour discovery, so a connection attempt fails at once instead of timing out.
//!
//! The error goes back the way the packet came: on the LAN to a LAN sender, else out of the
//! uplink the LAN host's own packets take (`route::source6` on the host's address: its
//! prefix's uplink, or with NPTv6 the uplink that translates now), from the router's address
//! there. Under NPTv6 the packet it quotes gets its destination translated back to the address
//! the sender used. Nothing is sent where RFC 4443 §2.4 (e) forbids an error.
//!
//! Pure: the snapshot and the dropped frame in, the frame to send out.

use std::net::Ipv6Addr;

use super::Transmit;
use crate::Iface;
use crate::route::source6::{SourceRoute, route_by_source};
use crate::snapshot::Snapshot;
use crate::wire::ethernet::MacAddr;
use crate::wire::frame::IP_OFFSET;
use crate::wire::icmpv6::{self, ErrorRepr, codes, types};
use crate::wire::ipv6::{self, Ipv6Packet};

/// An error to send to `next_hop` on its interface (the frame's destination MAC is left for
/// neighbour discovery).
pub struct Unreachable {
    pub next_hop: Ipv6Addr,
    pub transmit: Transmit,
}

/// The address-unreachable error about `held` (a frame, vnet header first, the fast path
/// forwarded to the LAN), or None when none may or can be sent.
pub fn address_unreachable(snap: &Snapshot, held: &mut [u8]) -> Option<Unreachable> {
    let v6 = snap.ipv6.as_ref()?;
    let ip = held.get_mut(IP_OFFSET..)?;
    if !icmpv6::may_send_error_about(types::DEST_UNREACH, ip) {
        return None;
    }
    let mut packet = Ipv6Packet::new_checked(ip).ok()?;
    let (src, dst) = (packet.src(), packet.dst());
    let (egress, next_hop) = if v6.is_lan(src) {
        (Iface::Lan, src)
    } else {
        let SourceRoute::Via(u) = route_by_source(dst, &v6.uplinks, None) else {
            return None;
        };
        if let Some(n) = v6.npt6(u) {
            packet.set_dst(n.to_external(dst)?);
        }
        (Iface::Uplink(u), v6.next_hop(u)?)
    };
    let repr = ErrorRepr {
        src: v6.iface_addr(egress)?,
        dst: src,
        msg_type: types::DEST_UNREACH,
        code: codes::ADDR_UNREACH,
        rest_of_header: 0,
    };
    let offending = packet.into_inner();
    let transmit = Transmit::ipv6(
        egress,
        snap.iface_mac(egress)?,
        MacAddr::ZERO,
        ipv6::MIN_MTU,
        |out| icmpv6::build_error(out, &repr, &*offending).ok(),
    )?;
    Some(Unreachable { next_hop, transmit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastpath::valid_frames::v6::{A, host_a, pe_a};
    use crate::fastpath::valid_frames::{LAN_MAC, world};
    use crate::nat::npt6::Npt6;
    use crate::wire::icmpv6::Icmpv6Packet;
    use crate::wire::vnet;

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A UDP packet from `src` to `dst` as the fast path holds it for neighbour discovery.
    fn held(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; vnet::LEN];
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&LAN_MAC.0);
        f.extend_from_slice(&[0x86, 0xdd]);
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 63)
            .udp(40000, 7)
            .write(&mut f, b"anyone?")
            .unwrap();
        f
    }

    /// The error's (interface, next hop, source, destination) and the packet it quotes.
    fn sent(u: &Unreachable) -> (Iface, Ipv6Addr, Ipv6Addr, Ipv6Addr, Vec<u8>) {
        let ip = Ipv6Packet::new_checked(&u.transmit.frame[IP_OFFSET..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.code()), (1, 3));
        assert!(icmp.verify_checksum(ip.src(), ip.dst()));
        (
            u.transmit.iface,
            u.next_hop,
            ip.src(),
            ip.dst(),
            ip.payload()[8..].to_vec(),
        )
    }

    #[test]
    fn from_outside_back_through_the_prefixs_uplink() {
        let w = world(1500);
        let server = a6("2001:db8:18::6");
        let mut f = held(server, a6("2001:db8:a:1::dead"));
        let u = address_unreachable(&w.snap, &mut f).unwrap();
        let (iface, hop, src, dst, quoted) = sent(&u);
        assert_eq!(
            (iface, hop, src, dst),
            (A, pe_a(), a6("2001:db8:ffa::1"), server)
        );
        assert_eq!(quoted, f[IP_OFFSET..]);
    }

    #[test]
    fn from_the_lan_back_on_the_lan() {
        let w = world(1500);
        let mut f = held(host_a(), a6("2001:db8:b:1::dead"));
        let (iface, hop, src, dst, _) = sent(&address_unreachable(&w.snap, &mut f).unwrap());
        assert_eq!(
            (iface, hop, src, dst),
            (Iface::Lan, host_a(), a6("2001:db8:a:1::1"), host_a())
        );
    }

    #[test]
    fn under_npt6_the_quote_has_the_external_destination() {
        let mut w = world(1500);
        let ula = "fd00:db8:1::/64".parse().unwrap();
        let v6 = w.snap.ipv6.as_mut().unwrap();
        v6.lan_prefixes = vec![ula];
        v6.uplinks[0].translates = true;
        v6.uplinks[1].translates = true;
        let npt = Npt6::new(ula, "2001:db8:a:1::/64".parse().unwrap()).unwrap();
        v6.npt6 = vec![Some(npt), None];
        let server = a6("2001:db8:18::6");
        let mut f = held(server, a6("fd00:db8:1::dead"));
        let (iface, _, _, _, quoted) = sent(&address_unreachable(&w.snap, &mut f).unwrap());
        assert_eq!(iface, A);
        let quoted = Ipv6Packet::new_quoted(&quoted[..]).unwrap();
        assert_eq!(
            quoted.dst(),
            npt.to_external(a6("fd00:db8:1::dead")).unwrap()
        );
    }

    #[test]
    fn not_to_unspecified_sources_nor_without_a_way_back() {
        let w = world(1500);
        let mut f = held(a6("::"), a6("2001:db8:a:1::dead"));
        assert!(address_unreachable(&w.snap, &mut f).is_none());
        // A packet to a LAN host whose uplink is down: no way back.
        let mut w = world(1500);
        w.snap.ipv6.as_mut().unwrap().uplinks[0].up = false;
        let mut f = held(a6("2001:db8:18::6"), a6("2001:db8:a:1::dead"));
        assert!(address_unreachable(&w.snap, &mut f).is_none());
    }
}
