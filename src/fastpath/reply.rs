//! What the fast path sends back instead of forwarding: ICMP errors (time exceeded,
//! unreachable, fragmentation needed) and TCP RSTs, built in the scratch buffer behind a fresh
//! virtio_net_hdr and an Ethernet header back to the sender. Rate limited like the kernel's
//! icmp_msgs_per_sec.

use super::parse::{L4, parse_l4_kind};
use super::{Env, FastPath, Frame, Verdict};
use crate::counters::DropReason;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::icmp::{self, codes, types};
use crate::wire::ipv4::OwnHeader;
use crate::wire::tcp::{self, TcpRepr};
use crate::wire::vnet::VnetHdr;

/// An ICMP error to send about a dropped packet, and the drop it stands for.
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorMsg {
    pub msg_type: u8,
    pub code: u8,
    /// The 32 bits after the checksum (the next-hop MTU of "fragmentation needed").
    pub rest: u32,
    pub reason: DropReason,
}

impl ErrorMsg {
    pub(super) const NET_UNREACH: ErrorMsg = ErrorMsg {
        msg_type: types::DEST_UNREACH,
        code: codes::NET_UNREACH,
        rest: 0,
        reason: DropReason::NoRoute,
    };

    pub(super) const TTL_EXCEEDED: ErrorMsg = ErrorMsg {
        msg_type: types::TIME_EXCEEDED,
        code: codes::TTL_EXCEEDED,
        rest: 0,
        reason: DropReason::TtlExceeded,
    };

    pub(super) fn frag_needed(mtu: usize) -> ErrorMsg {
        ErrorMsg {
            msg_type: types::DEST_UNREACH,
            code: codes::FRAG_NEEDED,
            rest: mtu as u32 & 0xffff,
            reason: DropReason::FragNeeded,
        }
    }
}

impl FastPath {
    /// Writes an ICMP error about the packet in `f` into the scratch buffer, addressed back to
    /// its sender through the interface it came from, rate limited.
    pub(super) fn icmp_error(
        &mut self,
        env: &Env,
        f: &mut Frame,
        msg: ErrorMsg,
    ) -> Result<Verdict, DropReason> {
        let reason = msg.reason;
        // Never answer an ICMP error with an error, nor a non-first fragment (RFC 1812 4.3.2.7).
        if matches!(parse_l4_kind(f.buf, f.ip), L4::IcmpError | L4::Fragment)
            || !self.errors.take(env.now)
        {
            return Err(reason);
        }
        let Some(src) = env.snap.iface_addr(f.ingress) else {
            return Err(reason);
        };
        let error = icmp::ErrorRepr {
            src,
            dst: f.ip.src,
            msg_type: msg.msg_type,
            code: msg.code,
            rest_of_header: msg.rest,
        };
        let offending = &f.buf[IP_OFFSET..IP_OFFSET + f.ip.total];
        let Ok(n) = icmp::build_error(&mut f.scratch[IP_OFFSET..], &error, offending) else {
            return Err(reason);
        };
        reply_frame(env, f, n, reason)
    }

    /// Answers a TCP segment of no known flow with a RST from its destination (RFC 793: seq =
    /// the segment's ACK), so the LAN host drops a connection whose uplink died instead of
    /// retransmitting into the void. Segments without ACK, and RSTs, are just dropped.
    pub(super) fn tcp_reset(&mut self, env: &Env, f: &mut Frame) -> Result<Verdict, DropReason> {
        let reason = DropReason::NatNoFlow;
        let L4::Ports {
            sport,
            dport,
            flags,
            ack: Some(ack),
            ..
        } = f.l4
        else {
            return Err(reason);
        };
        if flags & tcp::flags::RST != 0 || !self.errors.take(env.now) {
            return Err(reason);
        }
        // From the segment's destination back to its source.
        let ip = OwnHeader::new(f.ip.dst, f.ip.src);
        let rst = TcpRepr::rst(dport, sport, ack);
        let Ok(n) = tcp::build_segment(&mut f.scratch[IP_OFFSET..], &ip, &rst) else {
            return Err(reason);
        };
        reply_frame(env, f, n, reason)
    }
}

/// Completes a reply built at `scratch[IP_OFFSET..IP_OFFSET + n]`: zero vnet header and an
/// Ethernet header back to the sender of the frame, out of the interface it came in on.
fn reply_frame(
    env: &Env,
    f: &mut Frame,
    n: usize,
    reason: DropReason,
) -> Result<Verdict, DropReason> {
    let Some(my_mac) = env.snap.iface_mac(f.ingress) else {
        return Err(reason);
    };
    if VnetHdr::default().write(f.scratch).is_err() {
        return Err(reason);
    }
    let sender_mac = EthernetFrame::new_unchecked(&f.buf[ETH_OFFSET..]).src();
    let mut eth = EthernetFrame::new_unchecked(&mut f.scratch[ETH_OFFSET..]);
    eth.set_dst(sender_mac);
    eth.set_src(my_mac);
    eth.set_ethertype(ethernet::ethertype::IPV4);
    Ok(Verdict::Reply {
        egress: f.ingress,
        len: IP_OFFSET + n,
        reason,
    })
}
