//! Userspace GRO for frames going out on the LAN TAP: runs of in-order TCP segments of one flow
//! become one GSO super-frame, so the TAP, the bridge and the LAN host's stack handle one 64 KiB
//! frame instead of ~44 frames of 1500 bytes (what the kernel's own GRO would have built). TCP
//! over IPv4 and over IPv6 alike; one batch may mix them.
//!
//! Up to `MAX_OPEN` flows have a run open at once, like the kernel's `MAX_GRO_SKBS`, so a batch
//! in which several downloads interleave merges each of them. Frames of one TCP flow (addresses
//! and ports) never change order; frames of different flows may, as they do through the
//! kernel's GRO: a frame that cannot be merged is passed on at once unless it may belong to a
//! flow with an open run, which is then finished first. Open runs are finished oldest first when
//! a new flow needs a slot, and all of them at the end of the batch.
//!
//! The merge rules are the kernel's `inet_gro_receive`/`ipv6_gro_receive` and `tcp_gro_receive`
//! ones, kept strict so that segmenting the super-frame (which the kernel does by `gso_size`,
//! copying the headers, incrementing the IPv4 ident, clearing PSH on all but the last segment)
//! gives back exactly the segments that were merged:
//! - IPv4 without options, DF, not a fragment, valid header checksum; or IPv6 whose next header
//!   is TCP (extension headers disqualify: the kernel's GSO would copy them into every segment,
//!   and a fragment header cannot be); TCP with ACK and no other flag but PSH, which ends a
//!   run; at least one byte of payload;
//! - the same MACs, addresses, ports, ack, window and TCP option bytes (timestamps included);
//!   for IPv4 the same TOS and TTL and the ident one more than the previous segment's; for IPv6
//!   the same traffic class, flow label and hop limit; the sequence number contiguous;
//! - every payload as large as the first one's (`gso_size`), but the last may be shorter.
//!
//! A segment with a complete checksum is merged only if that checksum verifies: the super-frame
//! gets a fresh partial checksum the kernel finishes, which would otherwise turn a corrupted
//! segment into a valid one. Frames the sender marked verified (`DATA_VALID`) or partial
//! (`NEEDS_CSUM`, at the usual TCP offsets) are taken as they are, like the kernel does.
//!
//! Memory: one 64 KiB buffer per open run, allocated on first use and kept (512 KiB per worker).

use core::ops::Range;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::checksum;
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::wire::ipv4::{self, Ipv4Packet, proto};
use crate::wire::ipv6::{self, Ipv6Packet, next_header};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::vnet::{self, VnetHdr};

/// Largest IP datagram of a super-frame, header included: IPv4's bound, and the kernel's GRO
/// limit (`GRO_MAX_SIZE`) for IPv6 as well.
const MAX_IP_LEN: usize = u16::MAX as usize;
/// Offset of the checksum in the TCP header.
const CSUM_OFFSET: u16 = 16;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS: usize = 13;

/// How many flows may have a run open at once.
pub const MAX_OPEN: usize = 8;

/// The builder of super-frames; one per worker, its buffers allocated once.
#[derive(Default)]
pub struct Gro {
    /// One per open run; `Run::buf` says whose.
    bufs: Vec<Vec<u8>>,
}

/// What a mergeable frame's headers say, read once.
#[derive(Clone, Copy)]
struct Seg {
    /// End of the TCP header in the frame (start of the payload).
    hdr_end: usize,
    /// End of the IP datagram in the frame (Ethernet padding excluded).
    end: usize,
    /// The IPv4 ident; IPv6 has none.
    ident: Option<u16>,
    seq: u32,
    psh: bool,
}

impl Seg {
    fn payload_len(&self) -> usize {
        self.end - self.hdr_end
    }
}

/// The run being built: its first frame and where the next segment must continue.
struct Run<'a> {
    head: &'a [u8],
    flow: FlowKey,
    /// Index of the buffer in `Gro::bufs` the super-frame is built in.
    buf: usize,
    first: Seg,
    segments: usize,
    /// Payload bytes so far; once `segments > 1` they sit in the run's buffer after the headers.
    payload: usize,
    next_seq: u32,
    next_ident: Option<u16>,
    /// False once a segment shorter than the first or with PSH was taken: it must be the last.
    open: bool,
}

impl Gro {
    /// Passes every frame of `frames` to `emit`, except that runs of mergeable TCP segments are
    /// passed as one super-frame; `emit` also gets how many frames it stands for (1 for a frame
    /// passed as it is). Order is kept within each flow (see the module doc).
    pub fn coalesce<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
        mut emit: impl FnMut(&[u8], usize),
    ) {
        let mut open: Vec<Run<'a>> = Vec::with_capacity(MAX_OPEN);
        for frame in frames {
            let Some((seg, flow)) = parse(frame) else {
                match tcp_flow(frame) {
                    Belongs::Flow(flow) => {
                        if let Some(i) = open.iter().position(|r| r.flow == flow) {
                            let r = open.remove(i);
                            self.finish(&r, &mut emit);
                        }
                    }
                    Belongs::Unknown => {
                        for r in open.drain(..) {
                            self.finish(&r, &mut emit);
                        }
                    }
                    Belongs::NoFlow => {}
                }
                emit(frame, 1);
                continue;
            };
            let buf = match open.iter().position(|r| r.flow == flow) {
                Some(i) => {
                    if self.append(&mut open[i], frame, &seg) {
                        continue;
                    }
                    let r = open.remove(i);
                    self.finish(&r, &mut emit);
                    r.buf
                }
                None if open.len() == MAX_OPEN => {
                    let r = open.remove(0);
                    self.finish(&r, &mut emit);
                    r.buf
                }
                None => (0..MAX_OPEN)
                    .find(|b| open.iter().all(|r| r.buf != *b))
                    .unwrap_or_default(),
            };
            open.push(Run {
                head: frame,
                flow,
                buf,
                first: seg,
                segments: 1,
                payload: seg.payload_len(),
                next_seq: seg.seq.wrapping_add(seg.payload_len() as u32),
                next_ident: seg.ident.map(|i| i.wrapping_add(1)),
                open: !seg.psh,
            });
        }
        for r in open {
            self.finish(&r, &mut emit);
        }
    }

    /// The buffer a run builds its super-frame in, allocated the first time it is needed.
    fn buf(&mut self, index: usize) -> &mut Vec<u8> {
        while self.bufs.len() <= index {
            self.bufs.push(vec![0; IP_OFFSET + MAX_IP_LEN]);
        }
        &mut self.bufs[index]
    }

    /// Adds `seg` to the run if it continues it; false (nothing changed) if it does not.
    fn append(&mut self, run: &mut Run, frame: &[u8], seg: &Seg) -> bool {
        let size = run.first.payload_len();
        let len = seg.payload_len();
        let hdr_end = run.first.hdr_end;
        let fits = hdr_end - IP_OFFSET + run.payload + len <= MAX_IP_LEN;
        if !(run.open
            && fits
            && len <= size
            && seg.seq == run.next_seq
            && seg.ident == run.next_ident
            && same_flow(run.flow.addrs, run.head, frame, hdr_end))
        {
            return false;
        }
        let buf = self.buf(run.buf);
        if run.segments == 1 {
            let (Some(dst), Some(src)) =
                (buf.get_mut(..run.first.end), run.head.get(..run.first.end))
            else {
                return false;
            };
            dst.copy_from_slice(src);
        }
        let at = hdr_end + run.payload;
        let (Some(dst), Some(src)) = (buf.get_mut(at..at + len), frame.get(seg.hdr_end..seg.end))
        else {
            return false;
        };
        dst.copy_from_slice(src);
        run.segments += 1;
        run.payload += len;
        run.next_seq = run.next_seq.wrapping_add(len as u32);
        run.next_ident = run.next_ident.map(|i| i.wrapping_add(1));
        run.open = len == size && !seg.psh;
        if seg.psh {
            let flags = run.flow.addrs.tcp_offset() + TCP_FLAGS;
            if let Some(f) = buf.get_mut(flags) {
                *f |= tcp::flags::PSH;
            }
        }
        true
    }

    /// Emits the run: its only frame untouched, or the super-frame with its headers completed.
    fn finish(&mut self, run: &Run, emit: &mut impl FnMut(&[u8], usize)) {
        if run.segments == 1 {
            emit(run.head, 1);
            return;
        }
        let addrs = run.flow.addrs;
        let tcp_at = addrs.tcp_offset();
        let hdr_end = run.first.hdr_end;
        let end = hdr_end + run.payload;
        let Some(frame) = self.buf(run.buf).get_mut(..end) else {
            return;
        };
        let Some(ip_hdr) = frame.get_mut(IP_OFFSET..tcp_at) else {
            return;
        };
        // `append` kept the datagram within MAX_IP_LEN.
        match addrs {
            Addrs::V4 { .. } => {
                let mut ip = Ipv4Packet::new_unchecked(ip_hdr);
                ip.set_total_len((end - IP_OFFSET) as u16);
                ip.fill_checksum();
            }
            Addrs::V6 { .. } => {
                Ipv6Packet::new_unchecked(ip_hdr).set_payload_len((end - tcp_at) as u16)
            }
        }
        // The partial checksum the kernel completes (docs/architecture.md: NEEDS_CSUM holds the
        // folded, uncomplemented pseudo-header sum).
        let pseudo = addrs.pseudo_header_sum(end - tcp_at);
        let Some(tcp_hdr) = frame.get_mut(tcp_at..hdr_end) else {
            return;
        };
        TcpPacket::new_unchecked(tcp_hdr).set_checksum(checksum::fold(pseudo));
        let hdr = VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            gso_type: addrs.gso_type(),
            hdr_len: (hdr_end - ETH_OFFSET) as u16,
            gso_size: run.first.payload_len() as u16,
            csum_start: addrs.csum_start(),
            csum_offset: CSUM_OFFSET,
        };
        // The buffer is longer than a vnet header.
        let _ = hdr.write(frame);
        emit(frame, run.segments);
    }
}

/// The headers and flow of `frame` if it may be merged with its neighbours (see the module's
/// rules).
fn parse(frame: &[u8]) -> Option<(Seg, FlowKey)> {
    let vh = VnetHdr::parse(frame).ok()?;
    if vh.is_gso() {
        return None;
    }
    let eth = EthernetFrame::new_checked(frame.get(ETH_OFFSET..)?).ok()?;
    let (addrs, end, ident) = match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(frame.get(IP_OFFSET..)?).ok()?;
            if ip.header_len() != ipv4::MIN_HEADER_LEN
                || ip.protocol() != proto::TCP
                || !ip.dont_frag()
                || ip.is_fragment()
                || !ip.verify_checksum()
            {
                return None;
            }
            let addrs = Addrs::V4 {
                src: ip.src(),
                dst: ip.dst(),
            };
            (addrs, IP_OFFSET + ip.total_len(), Some(ip.ident()))
        }
        ethernet::ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(frame.get(IP_OFFSET..)?).ok()?;
            let end = IP_OFFSET + ipv6::HEADER_LEN + ip.payload_len();
            // No Ethernet padding follows an IPv6 TCP segment: bytes past its payload length
            // are refused as the kernel's GRO does (they would be lost in a super-frame).
            if ip.next_header() != next_header::TCP || frame.len() != end {
                return None;
            }
            let addrs = Addrs::V6 {
                src: ip.src(),
                dst: ip.dst(),
            };
            (addrs, end, None)
        }
        _ => return None,
    };
    if vh.needs_csum() && (vh.csum_start != addrs.csum_start() || vh.csum_offset != CSUM_OFFSET) {
        return None;
    }
    let tcp_at = addrs.tcp_offset();
    let tcp = TcpPacket::new_checked(frame.get(tcp_at..end)?).ok()?;
    let flags = tcp.flags();
    // The reserved bits and the AE (ECN) bit share the data offset's byte.
    let reserved = frame.get(tcp_at + 12).copied()? & 0x0f;
    if flags & !tcp::flags::PSH != tcp::flags::ACK || reserved != 0 {
        return None;
    }
    let hdr_end = tcp_at + tcp.header_len();
    if hdr_end >= end {
        return None;
    }
    let trusted = vh.needs_csum() || vh.flags & vnet::flags::DATA_VALID != 0;
    if !trusted && !addrs.verifies(&tcp) {
        return None;
    }
    let seg = Seg {
        hdr_end,
        end,
        ident,
        seq: tcp.seq(),
        psh: flags & tcp::flags::PSH != 0,
    };
    let flow = FlowKey {
        addrs,
        ports: [tcp.src_port(), tcp.dst_port()],
    };
    Some((seg, flow))
}

/// The addresses of a TCP flow, which also say where its TCP header sits in a mergeable frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Addrs {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl Addrs {
    /// Offset of the TCP header in a mergeable frame (no IPv4 options, no IPv6 extension
    /// headers).
    fn tcp_offset(self) -> usize {
        IP_OFFSET
            + match self {
                Addrs::V4 { .. } => ipv4::MIN_HEADER_LEN,
                Addrs::V6 { .. } => ipv6::HEADER_LEN,
            }
    }

    /// `csum_start` of the TCP checksum, counted from the Ethernet header.
    fn csum_start(self) -> u16 {
        (self.tcp_offset() - ETH_OFFSET) as u16
    }

    fn gso_type(self) -> u8 {
        match self {
            Addrs::V4 { .. } => vnet::gso::TCPV4,
            Addrs::V6 { .. } => vnet::gso::TCPV6,
        }
    }

    /// The fields of the IP header that differ from segment to segment, as (offset, length) in
    /// order: IPv4's total length and ident, and its header checksum; IPv6's payload length.
    fn varying(self) -> &'static [(usize, usize)] {
        match self {
            Addrs::V4 { .. } => &[(2, 4), (10, 2)],
            Addrs::V6 { .. } => &[(4, 2)],
        }
    }

    /// The TCP pseudo-header sum of a segment of `len` bytes (at most `MAX_IP_LEN`).
    fn pseudo_header_sum(self, len: usize) -> u32 {
        match self {
            Addrs::V4 { src, dst } => checksum::pseudo_header_sum(src, dst, proto::TCP, len as u16),
            Addrs::V6 { src, dst } => {
                checksum::pseudo_header_sum_v6(src, dst, next_header::TCP, len as u32)
            }
        }
    }

    /// The segment's complete checksum verifies.
    fn verifies(self, tcp: &TcpPacket<&[u8]>) -> bool {
        match self {
            Addrs::V4 { src, dst } => tcp.verify_checksum(src, dst),
            Addrs::V6 { src, dst } => tcp.verify_checksum_v6(src, dst),
        }
    }
}

/// A TCP flow as the order guarantee sees it: addresses and ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FlowKey {
    addrs: Addrs,
    ports: [u16; 2],
}

/// Which flow a frame that cannot be merged may belong to.
enum Belongs {
    /// A TCP segment of this flow.
    Flow(FlowKey),
    /// Not TCP: no run can hold a frame of its flow.
    NoFlow,
    /// IP that may be TCP but whose ports cannot be read (a fragment, a broken header).
    Unknown,
}

fn tcp_flow(frame: &[u8]) -> Belongs {
    let Some(eth) = frame
        .get(ETH_OFFSET..)
        .and_then(|f| EthernetFrame::new_checked(f).ok())
    else {
        return Belongs::NoFlow;
    };
    let packet = frame.get(IP_OFFSET..).unwrap_or_default();
    // The addresses and where the TCP header starts, for a TCP packet that carries one.
    let (addrs, tcp_at) = match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(packet) else {
                return Belongs::Unknown;
            };
            if ip.protocol() != proto::TCP {
                return Belongs::NoFlow;
            }
            if ip.frag_offset() != 0 {
                return Belongs::Unknown;
            }
            let addrs = Addrs::V4 {
                src: ip.src(),
                dst: ip.dst(),
            };
            (addrs, IP_OFFSET + ip.header_len())
        }
        ethernet::ethertype::IPV6 => {
            let Ok(ip) = Ipv6Packet::new_checked(packet) else {
                return Belongs::Unknown;
            };
            let upper = match ip.upper_layer() {
                Ok(u) if u.protocol != next_header::TCP => return Belongs::NoFlow,
                Ok(u) if u.fragment.is_none_or(|f| !f.is_non_initial()) => u,
                _ => return Belongs::Unknown,
            };
            let addrs = Addrs::V6 {
                src: ip.src(),
                dst: ip.dst(),
            };
            (addrs, IP_OFFSET + ipv6::HEADER_LEN + upper.offset)
        }
        _ => return Belongs::NoFlow,
    };
    match frame.get(tcp_at..tcp_at + 4) {
        Some(p) => Belongs::Flow(FlowKey {
            addrs,
            ports: [
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            ],
        }),
        None => Belongs::Unknown,
    }
}

/// Everything but lengths, IPv4 ident and checksum, TCP checksum, sequence number and flags
/// byte (the flags themselves were checked by `parse`) is equal in the headers of two parsed
/// frames of `addrs` whose TCP headers end at `hdr_end` in `a`.
fn same_flow(addrs: Addrs, a: &[u8], b: &[u8], hdr_end: usize) -> bool {
    // Sequence number, flags byte, checksum, as (offset, length).
    const TCP_VARYING: [(usize, usize); 3] = [(4, 4), (TCP_FLAGS, 1), (16, 2)];
    let same = |r: Range<usize>| a.get(r.clone()).is_some_and(|x| b.get(r) == Some(x));
    let tcp_at = addrs.tcp_offset();
    let varying = addrs
        .varying()
        .iter()
        .map(|&(at, len)| IP_OFFSET + at..IP_OFFSET + at + len)
        .chain(TCP_VARYING.map(|(at, len)| tcp_at + at..tcp_at + at + len));
    // From the Ethernet header to the end of the TCP options, skipping the fields that differ
    // per segment. Equal data offsets make equal header lengths.
    let mut from = ETH_OFFSET;
    for skip in varying {
        if !same(from..skip.start) {
            return false;
        }
        from = skip.end;
    }
    same(from..hdr_end)
}

#[cfg(test)]
mod tests;
