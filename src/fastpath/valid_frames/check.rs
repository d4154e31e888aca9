//! What every outcome of a frame through the fast path must satisfy (`check`), and the names
//! of what it did (`outcomes`).

use super::Seeded;
use crate::Iface;
use crate::counters::{Counters, DropReason, Totals};
use crate::fastpath::Verdict;
use crate::nat::{FlowKey, InboundKey, NatTable};
use crate::wire::checksum;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::ipv4::{Ipv4Packet, proto};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use crate::wire::vnet::VnetHdr;

/// Returns an error naming the check unless `cond` holds (`check` runs outside proptest too).
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Returns an error with both values unless they are equal.
macro_rules! ensure_eq {
    ($a:expr, $b:expr, $($msg:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{}: {:?} != {:?}", format!($($msg)+), a, b));
        }
    }};
}

fn field(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The transport checksum of the IPv4 packet `ip` is right. With `partial` (the offset of a
/// NEEDS_CSUM field in the segment) it is right once completed as the kernel or NIC would:
/// the segment summed with the field as it is, the complement written to the field.
fn l4_checksum_ok(ip: &[u8], partial: Option<usize>) -> Result<(), String> {
    let p = Ipv4Packet::new_checked(ip).map_err(|e| format!("IPv4: {e}"))?;
    let (src, dst, protocol) = (p.src(), p.dst(), p.protocol());
    let mut seg = p.payload().to_vec();
    if let Some(at) = partial {
        ensure!(
            at + 2 <= seg.len(),
            "partial checksum field past the segment"
        );
        let c = checksum::checksum(&seg);
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
    let pseudo = checksum::pseudo_header_sum(src, dst, protocol, seg.len() as u16);
    match protocol {
        proto::TCP => {
            let total = checksum::add(pseudo, checksum::sum(&seg));
            ensure_eq!(checksum::fold(total), 0xffff, "TCP checksum");
        }
        // Zero: the sender computed no checksum.
        proto::UDP if seg.len() >= 8 && field(&seg, 6) != 0 => {
            let total = checksum::add(pseudo, checksum::sum(&seg));
            ensure_eq!(checksum::fold(total), 0xffff, "UDP checksum");
        }
        proto::ICMP => ensure_eq!(checksum::checksum(&seg), 0, "ICMP checksum"),
        _ => {}
    }
    Ok(())
}

/// The offset in the segment of the frame's NEEDS_CSUM field, if it has one the fast path keeps
/// partial (its checksum starts at the transport header).
fn partial_field(frame: &[u8], ip_hlen: usize) -> Option<usize> {
    let vh = VnetHdr::parse(frame).ok()?;
    (vh.needs_csum() && vh.csum_start as usize == ethernet::HEADER_LEN + ip_hlen)
        .then_some(vh.csum_offset as usize)
}

/// A frame the generator built is valid: its IPv4 header checksum, and its transport checksum
/// (completed first if partial) unless it is a later fragment.
pub fn frame_valid(frame: &[u8]) -> Result<(), String> {
    let ip = Ipv4Packet::new_checked(&frame[IP_OFFSET..]).map_err(|e| format!("IPv4: {e}"))?;
    ensure!(ip.verify_checksum(), "IPv4 header checksum");
    if ip.frag_offset() == 0 {
        l4_checksum_ok(&frame[IP_OFFSET..], partial_field(frame, ip.header_len()))?;
    }
    Ok(())
}

/// What the outcome of each case must satisfy. `before` may be any frame (the fuzz targets
/// also feed garbage): what the fast path cannot vouch for (a transport checksum) must only be
/// as right after as it was before.
pub fn check(
    s: &Seeded,
    ingress: Iface,
    before: &[u8],
    after: &[u8],
    verdict: Verdict,
    scratch: &[u8],
) -> Result<(), String> {
    let snap = &s.world.snap;
    let egress = match verdict {
        Verdict::Forward { egress }
        | Verdict::Fragment { egress, .. }
        | Verdict::NeedsNeighbour { egress, .. } => egress,
        Verdict::Reply { len, reason, .. } => {
            counted(ingress, reason)?;
            let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
            let reply = Ipv4Packet::new_checked(&scratch[IP_OFFSET..len]).unwrap();
            ensure!(reply.verify_checksum(), "reply IP checksum");
            ensure_eq!(reply.dst(), old.src(), "reply goes back to the sender");
            ensure_eq!(reply.total_len(), len - IP_OFFSET, "reply length");
            ensure!(
                reply.total_len() <= icmp::MAX_ERROR_LEN,
                "reply over 576 bytes"
            );
            l4_checksum_ok(&scratch[IP_OFFSET..len], None)?;
            let e = EthernetFrame::new_unchecked(&scratch[ETH_OFFSET..]);
            ensure_eq!(
                e.dst(),
                EthernetFrame::new_unchecked(&before[ETH_OFFSET..]).src(),
                "reply to the sender's MAC"
            );
            ensure_eq!(after, before, "a reply leaves the frame alone");
            return Ok(());
        }
        Verdict::Drop(reason) => {
            counted(ingress, reason)?;
            ensure_eq!(after, before, "dropped frames are not modified");
            return Ok(());
        }
        Verdict::Punt(_) | Verdict::Mld => {
            ensure_eq!(after, before, "punted frames are not modified");
            return Ok(());
        }
    };
    ensure_eq!(after.len(), before.len(), "frame length");
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    ensure!(new.verify_checksum(), "IPv4 header checksum");
    ensure_eq!(new.ttl(), old.ttl() - 1, "TTL");
    ensure_eq!(
        (
            new.total_len(),
            new.header_len(),
            new.protocol(),
            new.ident()
        ),
        (
            old.total_len(),
            old.header_len(),
            old.protocol(),
            old.ident()
        ),
        "lengths and identity"
    );
    ensure_eq!(
        (new.dont_frag(), new.more_frags(), new.frag_offset()),
        (old.dont_frag(), old.more_frags(), old.frag_offset()),
        "fragmentation fields"
    );
    match egress {
        // Nothing leaves with a LAN address the uplink translates (a session may translate
        // one it does not).
        Iface::Uplink(u) => {
            let up = snap.uplink(u).unwrap();
            let translated = new.src() == up.address.addr();
            ensure!(
                translated || (new.src() == old.src() && !up.translates(old.src())),
                "{} left {:?} untranslated",
                old.src(),
                u
            );
        }
        Iface::Lan => ensure!(
            snap.lan.address.contains(new.dst()),
            "{} is not on the LAN",
            new.dst()
        ),
    }
    // Inbound to a LAN address unchanged: only what the uplink does not translate (SPEC 10).
    if let Iface::Uplink(u) = ingress
        && new.dst() == old.dst()
    {
        let up = snap.uplink(u).unwrap();
        ensure!(
            !up.translates(old.dst()),
            "transit to {} via {:?}",
            old.dst(),
            u
        );
    }
    let vh_in = VnetHdr::parse(before).unwrap();
    let vh = VnetHdr::parse(after).unwrap();
    ensure_eq!(
        (vh.gso_type, vh.gso_size),
        (vh_in.gso_type, vh_in.gso_size),
        "GSO fields"
    );
    if !old.is_fragment() {
        let valid = l4_checksum_ok(
            &before[IP_OFFSET..],
            partial_field(before, old.header_len()),
        );
        if valid.is_ok() {
            l4_checksum_ok(&after[IP_OFFSET..], partial_field(after, new.header_len()))?;
        }
        if new.protocol() == proto::UDP
            && let (Ok(a), Ok(b)) = (
                UdpPacket::new_checked(new.payload()),
                UdpPacket::new_checked(old.payload()),
            )
        {
            ensure_eq!(a.len(), b.len(), "UDP length");
        }
        if let Ok(icmp) = IcmpPacket::new_checked(new.payload())
            && new.protocol() == proto::ICMP
            && icmp::is_error(icmp.msg_type())
        {
            check_quoted(egress, &old, &new, icmp.payload())?;
        }
    }
    check_session(&s.world.nat, &old, &new)?;
    let e = EthernetFrame::new_unchecked(&after[ETH_OFFSET..]);
    ensure_eq!(e.src(), snap.iface_mac(egress).unwrap(), "source MAC");
    if let Verdict::Fragment { mtu, .. } = verdict {
        ensure!(
            !new.dont_frag() && new.total_len() > mtu,
            "fragmented without need"
        );
    }
    Ok(())
}

/// The packet quoted by a forwarded ICMP error. One translated (the error was) is translated
/// like the error: it reads as sent by (to the LAN) or to (to an uplink) the endpoint the error
/// now goes to or comes from, with a right header checksum. An untranslated error may quote
/// anything.
fn check_quoted(
    egress: Iface,
    old: &Ipv4Packet<&[u8]>,
    new: &Ipv4Packet<&[u8]>,
    quote: &[u8],
) -> Result<(), String> {
    if (old.src(), old.dst()) == (new.src(), new.dst()) {
        return Ok(());
    }
    let quoted = Ipv4Packet::new_quoted(quote).map_err(|e| format!("quoted packet: {e}"))?;
    ensure!(quoted.verify_checksum(), "quoted IPv4 header checksum");
    match egress {
        Iface::Lan => ensure_eq!(quoted.src(), new.dst(), "quoted source"),
        Iface::Uplink(_) => ensure_eq!(quoted.dst(), new.src(), "quoted destination"),
    }
    Ok(())
}

/// The ports NAT keys a packet by (for an echo, its identifier as the source port of a request
/// and the destination port of a reply); none for errors, other protocols and later fragments.
pub fn nat_ports(p: &Ipv4Packet<&[u8]>) -> Option<(u16, u16)> {
    if p.frag_offset() != 0 {
        return None;
    }
    let l4 = p.payload();
    let at = |i: usize| Some(u16::from_be_bytes([*l4.get(i)?, *l4.get(i + 1)?]));
    match (p.protocol(), l4.first()) {
        (proto::TCP | proto::UDP, _) => Some((at(0)?, at(2)?)),
        (proto::ICMP, Some(&icmp::types::ECHO_REQUEST)) => Some((at(4)?, 0)),
        (proto::ICMP, Some(&icmp::types::ECHO_REPLY)) => Some((0, at(4)?)),
        _ => None,
    }
}

/// A translated packet belongs to a session: the one of its inside endpoint maps it to what it
/// now carries, and the lookup its reply will make finds that same session.
fn check_session(
    nat: &NatTable,
    old: &Ipv4Packet<&[u8]>,
    new: &Ipv4Packet<&[u8]>,
) -> Result<(), String> {
    let (Some((os, od)), Some((ns, nd))) = (nat_ports(old), nat_ports(new)) else {
        return Ok(());
    };
    let proto = old.protocol();
    // Source translated: from (inside) to (outside); destination translated: the other way.
    let mut sides = Vec::new();
    if (new.src(), ns) != (old.src(), os) {
        sides.push(((old.src(), os), (new.src(), ns), (old.dst(), od)));
    }
    if (new.dst(), nd) != (old.dst(), od) {
        sides.push(((new.dst(), nd), (old.dst(), od), (new.src(), ns)));
    }
    for ((inside, inside_port), outside, (remote, remote_port)) in sides {
        let key = FlowKey {
            proto,
            inside,
            inside_port,
            remote,
            remote_port,
        };
        let t = nat
            .peek_outbound(&key)
            .ok_or_else(|| format!("translated without a session: {key:?}"))?;
        ensure_eq!(
            (t.outside, t.outside_port),
            outside,
            "the session's outside"
        );
        let back = InboundKey {
            uplink: t.uplink,
            proto,
            outside_port: t.outside_port,
            remote,
            remote_port,
        };
        ensure_eq!(nat.peek_inbound(&back), Some(t), "the reverse lookup");
    }
    Ok(())
}

/// A drop for `reason` on `ingress`, counted as the workers count it, moves the counter of that
/// reason (shown by name) and the interface's dropped count.
fn counted(ingress: Iface, reason: DropReason) -> Result<(), String> {
    let c = Counters::new(3);
    c.rx_dropped(ingress.index(), reason);
    let t = Totals::sum([&c]);
    ensure_eq!(
        t.drop_count(reason.name()),
        1,
        "drop counter {}",
        reason.name()
    );
    ensure_eq!(t.ifaces[ingress.index()].rx_dropped, 1, "rx_dropped");
    Ok(())
}

/// Names of what `verdict` and the rewrite did, for `every_outcome_is_reached`.
pub fn outcomes(
    ingress: Iface,
    before: &[u8],
    after: &[u8],
    verdict: Verdict,
) -> Vec<&'static str> {
    let mut out = vec![match verdict {
        Verdict::Forward { egress: Iface::Lan }
            if ingress != Iface::Lan && same_ends(before, after) =>
        {
            "untranslated to the LAN"
        }
        Verdict::Forward { egress: Iface::Lan } => "forward to the LAN",
        Verdict::Forward { .. } => "forward to an uplink",
        Verdict::Fragment { .. } => "fragment",
        Verdict::Reply {
            reason: DropReason::NatNoFlow,
            ..
        } => "TCP reset",
        Verdict::Reply { .. } => "ICMP error",
        Verdict::Punt(_) => "punt",
        Verdict::NeedsNeighbour { .. } => "needs neighbour",
        Verdict::Drop(_) => "drop",
        Verdict::Mld => "mld",
    }];
    if !matches!(
        verdict,
        Verdict::Forward { .. } | Verdict::Fragment { .. } | Verdict::NeedsNeighbour { .. }
    ) {
        return out;
    }
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    if new.src() != old.src() {
        out.push("source translated");
    }
    if new.dst() != old.dst() {
        out.push("destination translated");
    }
    if new.is_fragment() {
        out.push("fragment translated");
    }
    if new.protocol() == proto::ICMP
        && let Ok(i) = IcmpPacket::new_checked(new.payload())
        && icmp::is_error(i.msg_type())
    {
        out.push("ICMP error translated");
    }
    if VnetHdr::parse(after).unwrap().needs_csum() {
        out.push("partial checksum kept");
    }
    if new.protocol() == proto::TCP
        && !new.is_fragment()
        && let Some(at) = TcpPacket::new_checked(old.payload())
            .ok()
            .and_then(|t| t.mss_offset())
        && old.payload()[at..at + 2] != new.payload()[at..at + 2]
    {
        out.push("MSS clamped");
    }
    out
}

/// Source and destination addresses unchanged.
fn same_ends(before: &[u8], after: &[u8]) -> bool {
    let old = Ipv4Packet::new_checked(&before[IP_OFFSET..]).unwrap();
    let new = Ipv4Packet::new_checked(&after[IP_OFFSET..]).unwrap();
    (old.src(), old.dst()) == (new.src(), new.dst())
}
