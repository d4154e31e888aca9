use super::*;
use etherparse::{PacketBuilder, TcpOptionElement};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const ROUTER_MAC: [u8; 6] = [0x02, 0x6d, 0x68, 0, 0, 1];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const SERVER: [u8; 4] = [172, 18, 0, 6];
const HOST: [u8; 4] = [192, 168, 0, 10];
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0, 0, 0, 0, 6);
const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 1, 0, 0, 0, 0x10);
/// Linux senders label their flows; the label stays the same for a connection's life.
const FLOW_LABEL: u32 = 0xa_bcde;
const MSS: usize = 1448;
/// The same with timestamps over IPv6 (1500 - 40 - 20 - 12).
const MSS6: usize = 1428;
/// Offset of the TCP header in an IPv4 frame without options.
const TCP_OFFSET: usize = IP_OFFSET + 20;
/// Offset of the TCP header in an IPv6 frame without extension headers.
const TCP6_OFFSET: usize = IP_OFFSET + 40;

/// One segment as the fast path outputs it toward the LAN host.
#[derive(Clone, Debug)]
struct Spec {
    v6: bool,
    dport: u16,
    seq: u32,
    ack: u32,
    ident: u16,
    psh: bool,
    ts: Option<u32>,
    len: usize,
}

impl Spec {
    fn first(len: usize) -> Spec {
        Spec {
            v6: false,
            dport: 40000,
            seq: 0xffff_f000, // wraps within a run
            ack: 77,
            ident: 0xfffe, // wraps too
            psh: false,
            ts: Some(1000),
            len,
        }
    }

    /// The first segment of an IPv6 flow.
    fn first6(len: usize) -> Spec {
        Spec {
            v6: true,
            ..Spec::first(len)
        }
    }

    /// The segment that follows `self` in its flow.
    fn next(&self, len: usize) -> Spec {
        Spec {
            seq: self.seq.wrapping_add(self.len as u32),
            ident: self.ident.wrapping_add(1),
            psh: false,
            len,
            ..self.clone()
        }
    }
}

/// Payload bytes that differ per sequence number, so misplaced data shows.
fn payload(seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_add(i as u32) % 251) as u8)
        .collect()
}

fn build(s: &Spec) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(ROUTER_MAC, HOST_MAC);
    let b = if s.v6 {
        b.ipv6(SERVER6.octets(), HOST6.octets(), 63)
    } else {
        b.ipv4(SERVER, HOST, 63)
    };
    let b = b.tcp(5201, s.dport, s.seq, 502).ack(s.ack);
    let b = if s.psh { b.psh() } else { b };
    let b = match s.ts {
        Some(ts) => b
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(ts, 4242),
            ])
            .unwrap(),
        None => b,
    };
    let mut out = vec![0u8; vnet::LEN];
    b.write(&mut out, &payload(s.seq, s.len)).unwrap();
    if s.v6 {
        // Not covered by any checksum.
        Ipv6Packet::new_unchecked(&mut out[IP_OFFSET..]).set_version_tc_flow(0, FLOW_LABEL);
    } else {
        let mut ip = Ipv4Packet::new_unchecked(&mut out[IP_OFFSET..]);
        ip.set_ident(s.ident);
        ip.fill_checksum();
    }
    out
}

fn flow(sizes: &[usize]) -> Vec<Vec<u8>> {
    flow_from(Spec::first(sizes[0]), sizes)
}

fn flow6(sizes: &[usize]) -> Vec<Vec<u8>> {
    flow_from(Spec::first6(sizes[0]), sizes)
}

/// `first`, then segments of `sizes[1..]` that follow it.
fn flow_from(first: Spec, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut spec = first;
    let mut out = vec![build(&spec)];
    for &len in &sizes[1..] {
        spec = spec.next(len);
        out.push(build(&spec));
    }
    out
}

fn is_v6(frame: &[u8]) -> bool {
    frame[ETH_OFFSET + 12..ETH_OFFSET + 14] == [0x86, 0xdd]
}

/// Recomputes the checksums after a test changed a header field.
fn refill(frame: &mut [u8]) {
    if is_v6(frame) {
        let ip = Ipv6Packet::new_unchecked(&frame[IP_OFFSET..]);
        let (src, dst, end) = (ip.src(), ip.dst(), TCP6_OFFSET + ip.payload_len());
        TcpPacket::new_unchecked(&mut frame[TCP6_OFFSET..end]).fill_checksum_v6(src, dst);
        return;
    }
    let (src, dst, total) = {
        let ip = Ipv4Packet::new_unchecked(&frame[IP_OFFSET..]);
        (ip.src(), ip.dst(), ip.total_len())
    };
    let hlen = Ipv4Packet::new_unchecked(&frame[IP_OFFSET..]).header_len();
    Ipv4Packet::new_unchecked(&mut frame[IP_OFFSET..]).fill_checksum();
    TcpPacket::new_unchecked(&mut frame[IP_OFFSET + hlen..IP_OFFSET + total])
        .fill_checksum(src, dst);
}

fn coalesce(gro: &mut Gro, frames: &[Vec<u8>]) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    gro.coalesce(frames.iter().map(Vec::as_slice), |f, n| {
        out.push((f.to_vec(), n))
    });
    out
}

/// Splits a super-frame the way the kernel's TCP segmentation does (headers copied, payload cut
/// by gso_size, IPv4 length, ident + k and header checksum or IPv6 payload length per segment,
/// sequence numbers advanced, PSH only on the last), then completes each partial checksum as
/// NEEDS_CSUM asks: the pseudo-header sum for the segment's length in the field, the sum from
/// csum_start to the end, complemented. Asserts the super-frame's own headers on the way.
fn segment(sf: &[u8]) -> Vec<Vec<u8>> {
    let v6 = is_v6(sf);
    let tcp_at = if v6 { TCP6_OFFSET } else { TCP_OFFSET };
    let vh = VnetHdr::parse(sf).unwrap();
    assert_eq!(vh.flags, vnet::flags::NEEDS_CSUM);
    let gso_type = if v6 {
        vnet::gso::TCPV6
    } else {
        vnet::gso::TCPV4
    };
    assert_eq!(vh.gso_type, gso_type);
    assert_eq!(usize::from(vh.csum_start), tcp_at - ETH_OFFSET);
    assert_eq!(vh.csum_offset, 16);
    if v6 {
        let ip = Ipv6Packet::new_checked(&sf[IP_OFFSET..]).unwrap();
        assert_eq!(ip.payload_len(), sf.len() - TCP6_OFFSET);
    } else {
        let ip = Ipv4Packet::new_checked(&sf[IP_OFFSET..]).unwrap();
        assert!(ip.verify_checksum(), "super-frame IPv4 header checksum");
        assert_eq!(ip.total_len(), sf.len() - IP_OFFSET);
    }
    let ident = Ipv4Packet::new_unchecked(&sf[IP_OFFSET..]).ident();
    // The IP header of segment `k`, `len` bytes of TCP.
    let fix_ip = |hdr: &mut [u8], len: usize, k: usize| {
        if v6 {
            Ipv6Packet::new_unchecked(hdr).set_payload_len(len as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(hdr);
            ip.set_total_len((20 + len) as u16);
            ip.set_ident(ident.wrapping_add(k as u16));
            ip.fill_checksum();
        }
    };
    let pseudo = |len: usize| pseudo_header_sum(sf, len);
    let tcp = TcpPacket::new_checked(&sf[tcp_at..]).unwrap();
    let hdr_end = tcp_at + tcp.header_len();
    assert_eq!(ETH_OFFSET + usize::from(vh.hdr_len), hdr_end);
    assert_eq!(
        tcp.checksum(),
        checksum::fold(pseudo(sf.len() - tcp_at)),
        "partial checksum of the super-frame"
    );
    let (seq, flags) = (tcp.seq(), tcp.flags());
    let gso = usize::from(vh.gso_size);
    let chunks: Vec<&[u8]> = sf[hdr_end..].chunks(gso).collect();
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(k, chunk)| {
            let mut seg = vec![0u8; vnet::LEN];
            seg.extend_from_slice(&sf[ETH_OFFSET..hdr_end]);
            seg.extend_from_slice(chunk);
            let seg_len = seg.len() - tcp_at;
            fix_ip(&mut seg[IP_OFFSET..tcp_at], seg_len, k);
            let mut tcp = TcpPacket::new_unchecked(&mut seg[tcp_at..]);
            tcp.set_seq(seq.wrapping_add((k * gso) as u32));
            if k != last {
                tcp.set_flags(flags & !tcp::flags::PSH);
            }
            tcp.set_checksum(checksum::fold(pseudo(seg_len)));
            let full = checksum::checksum(&seg[tcp_at..]);
            TcpPacket::new_unchecked(&mut seg[tcp_at..]).set_checksum(full);
            seg
        })
        .collect()
}

/// The TCP pseudo-header sum for `len` bytes of TCP between the addresses of `frame`.
fn pseudo_header_sum(frame: &[u8], len: usize) -> u32 {
    if is_v6(frame) {
        let ip = Ipv6Packet::new_unchecked(&frame[IP_OFFSET..]);
        checksum::pseudo_header_sum_v6(ip.src(), ip.dst(), 6, len as u32)
    } else {
        let ip = Ipv4Packet::new_unchecked(&frame[IP_OFFSET..]);
        checksum::pseudo_header_sum(ip.src(), ip.dst(), 6, len as u16)
    }
}

/// The outputs turned back into the frames they stand for: super-frames segmented, other
/// frames as they are.
fn expand(out: &[(Vec<u8>, usize)]) -> Vec<Vec<u8>> {
    out.iter()
        .flat_map(|(f, n)| {
            if *n == 1 {
                vec![f.clone()]
            } else {
                let segs = segment(f);
                assert_eq!(segs.len(), *n);
                segs
            }
        })
        .collect()
}

#[test]
fn merges_a_run_and_segments_back_to_the_originals() {
    let mut sizes = vec![MSS; 9];
    sizes.push(700);
    let mut frames = flow(&sizes);
    // PSH on the last segment, as a sender's last write of a burst has.
    let s = Spec::first(MSS);
    let mut last = s.clone();
    for &len in &sizes[1..] {
        last = last.next(len);
    }
    last.psh = true;
    frames[9] = build(&last);

    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out.len(), 1);
    let (sf, n) = &out[0];
    assert_eq!(*n, 10);
    let hdrs = 14 + 20 + 32;
    assert_eq!(sf.len(), vnet::LEN + hdrs + 9 * MSS + 700);
    let vh = VnetHdr::parse(sf).unwrap();
    assert_eq!(
        vh,
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            gso_type: vnet::gso::TCPV4,
            hdr_len: hdrs as u16,
            gso_size: MSS as u16,
            csum_start: 34,
            csum_offset: 16,
        }
    );
    let ip = Ipv4Packet::new_checked(&sf[IP_OFFSET..]).unwrap();
    assert_eq!(ip.total_len(), 20 + 32 + 9 * MSS + 700);
    assert_eq!(ip.ident(), s.ident);
    let tcp = TcpPacket::new_checked(&sf[TCP_OFFSET..]).unwrap();
    assert_eq!(tcp.seq(), s.seq);
    assert_eq!(tcp.flags(), tcp::flags::ACK | tcp::flags::PSH);

    let segs = segment(sf);
    assert_eq!(segs, frames);
}

#[test]
fn merges_trusted_and_partial_checksums() {
    let originals = flow(&[MSS, MSS, MSS, 10]);
    let mut frames = originals.clone();
    // DATA_VALID: checksum already verified upstream; its value is not looked at.
    VnetHdr {
        flags: vnet::flags::DATA_VALID,
        ..VnetHdr::default()
    }
    .write(&mut frames[0])
    .unwrap();
    frames[0][TCP_OFFSET + 16] ^= 0xff;
    // NEEDS_CSUM: the field holds the pseudo-header sum.
    for f in &mut frames[1..3] {
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .write(f)
        .unwrap();
        let len = (f.len() - TCP_OFFSET) as u16;
        let partial = checksum::fold(checksum::pseudo_header_sum(
            Ipv4Addr::from(SERVER),
            Ipv4Addr::from(HOST),
            6,
            len,
        ));
        TcpPacket::new_unchecked(&mut f[TCP_OFFSET..]).set_checksum(partial);
    }
    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 4);
    assert_eq!(segment(&out[0].0), originals);
}

#[test]
fn partial_checksum_at_other_offsets_is_not_merged() {
    let mut frames = flow(&[MSS, MSS]);
    for f in &mut frames {
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            csum_start: 40,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .write(f)
        .unwrap();
    }
    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out, vec![(frames[0].clone(), 1), (frames[1].clone(), 1)]);
}

#[test]
fn stops_at_the_ipv4_length_limit() {
    let frames = flow(&[MSS; 50]);
    let out = coalesce(&mut Gro::default(), &frames);
    // (65535 - 20 - 32) / 1448 = 45 segments fit.
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, vec![45, 5]);
    assert!(out[0].0.len() - IP_OFFSET <= 65535);
    assert_eq!(expand(&out), frames);
}

#[test]
fn padded_small_segments_lose_their_padding() {
    // 14 + 20 + 20 + 2 = 56 bytes: padded to the 60-byte Ethernet minimum on the wire.
    let originals: Vec<Vec<u8>> = {
        let mut s = Spec::first(2);
        s.ts = None;
        let t = s.next(2);
        vec![build(&s), build(&t)]
    };
    let padded: Vec<Vec<u8>> = originals
        .iter()
        .map(|f| {
            let mut p = f.clone();
            p.extend_from_slice(&[0xee; 4]);
            p
        })
        .collect();
    let out = coalesce(&mut Gro::default(), &padded);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.len(), IP_OFFSET + 20 + 20 + 4);
    assert_eq!(segment(&out[0].0), originals);
}

#[test]
fn interleaved_flows_merge_each_in_their_own_order() {
    let a = flow(&[MSS, MSS, MSS]);
    let b: Vec<Vec<u8>> = {
        let mut s = Spec::first(MSS);
        s.dport = 40001;
        let t = s.next(MSS);
        vec![build(&s), build(&t)]
    };
    let batch = vec![
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        a[2].clone(),
        b[1].clone(),
    ];
    let out = coalesce(&mut Gro::default(), &batch);
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, vec![3, 2], "one super-frame per flow, oldest first");
    assert_eq!(expand(&out[..1]), a);
    assert_eq!(expand(&out[1..]), b);
}

#[test]
fn more_flows_than_slots_finish_the_oldest_run() {
    let flows: Vec<Vec<Vec<u8>>> = (0..=MAX_OPEN as u16)
        .map(|i| {
            let mut s = Spec::first(MSS);
            s.dport = 41000 + i;
            let t = s.next(MSS);
            vec![build(&s), build(&t), build(&t.next(MSS))]
        })
        .collect();
    // Two segments from each of MAX_OPEN flows, interleaved, fill every slot; one more flow
    // then takes the slot of the oldest run (flow 0), which is finished, so flow 0's third
    // segment can no longer join it: it takes the next oldest slot (flow 1's) for itself.
    let batch: Vec<Vec<u8>> = (0..2)
        .flat_map(|k| flows[..MAX_OPEN].iter().map(move |f| f[k].clone()))
        .chain([flows[MAX_OPEN][0].clone(), flows[0][2].clone()])
        .collect();
    let out = coalesce(&mut Gro::default(), &batch);
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    let mut expected = vec![2; MAX_OPEN];
    expected.extend([1, 1]);
    assert_eq!(counts, expected);
    assert_eq!(expand(&out[..1]), flows[0][..2].to_vec());
    assert_eq!(expand(&out[1..2]), flows[1][..2].to_vec());
    assert_eq!(out[MAX_OPEN].0, flows[MAX_OPEN][0]);
    assert_eq!(out[MAX_OPEN + 1].0, flows[0][2]);
}

#[test]
fn a_segment_that_cannot_merge_finishes_its_own_flow_first() {
    let a = flow(&[MSS, MSS, MSS]);
    let mut b = Spec::first(MSS);
    b.dport = 40001;
    let b0 = build(&b);
    let mut a_fin = a[2].clone();
    a_fin[TCP_OFFSET + 13] |= tcp::flags::FIN;
    refill(&mut a_fin);
    let batch = vec![a[0].clone(), b0.clone(), a[1].clone(), a_fin.clone()];
    let out = coalesce(&mut Gro::default(), &batch);
    assert_eq!(
        out.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![2, 1, 1]
    );
    assert_eq!(expand(&out[..1]), a[..2].to_vec());
    assert_eq!(out[1].0, a_fin, "the FIN follows its flow's run");
    assert_eq!(out[2].0, b0, "the other flow's run stays open past it");
}

/// Each case changes the second of two full-size segments (or the first) so that the kernel's
/// GRO would not merge them either: both must come out untouched and in order.
#[test]
fn non_mergeable_pairs_stay_untouched() {
    type Change = fn(&mut Vec<u8>, &mut Vec<u8>);
    let set_flags = |f: &mut Vec<u8>, flags: u8| {
        f[TCP_OFFSET + 13] = flags;
        refill(f);
    };
    let cases: Vec<(&str, Change)> = vec![
        ("other port", |_, b| {
            b[TCP_OFFSET + 3] ^= 1;
            refill(b)
        }),
        ("sequence gap", |_, b| {
            b[TCP_OFFSET + 7] ^= 1;
            refill(b)
        }),
        ("ident not incremented", |_, b| {
            b[IP_OFFSET + 5] ^= 2;
            refill(b)
        }),
        ("other ack", |_, b| {
            b[TCP_OFFSET + 11] ^= 1;
            refill(b)
        }),
        ("other window", |_, b| {
            b[TCP_OFFSET + 15] ^= 1;
            refill(b)
        }),
        ("other timestamp", |_, b| {
            b[TCP_OFFSET + 27] ^= 1;
            refill(b)
        }),
        ("other TTL", |_, b| {
            b[IP_OFFSET + 8] -= 1;
            refill(b)
        }),
        ("other TOS (ECN CE)", |_, b| {
            b[IP_OFFSET + 1] = 3;
            refill(b)
        }),
        ("other destination MAC", |_, b| b[ETH_OFFSET + 5] ^= 1),
        ("no DF", |a, b| {
            a[IP_OFFSET + 6] &= !0x40;
            b[IP_OFFSET + 6] &= !0x40;
            refill(a);
            refill(b)
        }),
        ("more fragments", |_, b| {
            b[IP_OFFSET + 6] |= 0x20;
            refill(b)
        }),
        ("bad TCP checksum on the second", |_, b| {
            b[TCP_OFFSET + 16] ^= 1
        }),
        ("bad TCP checksum on the first", |a, _| {
            a[TCP_OFFSET + 16] ^= 1
        }),
        ("bad IPv4 checksum", |_, b| b[IP_OFFSET + 10] ^= 1),
        ("PSH on the first", |a, _| {
            a[TCP_OFFSET + 13] |= tcp::flags::PSH;
            refill(a)
        }),
        ("GSO frame", |_, b| {
            VnetHdr {
                gso_type: vnet::gso::TCPV4,
                gso_size: MSS as u16,
                ..VnetHdr::default()
            }
            .write(b)
            .unwrap()
        }),
        ("truncated", |_, b| b.truncate(IP_OFFSET + 30)),
    ];
    for (name, change) in cases {
        let mut frames = flow(&[MSS, MSS]);
        let (a, b) = frames.split_at_mut(1);
        change(&mut a[0], &mut b[0]);
        let out = coalesce(&mut Gro::default(), &frames);
        let expected: Vec<(Vec<u8>, usize)> = frames.iter().map(|f| (f.clone(), 1)).collect();
        assert_eq!(out, expected, "{name}");
    }
    for (name, flags) in [
        ("FIN", tcp::flags::FIN),
        ("SYN", tcp::flags::SYN),
        ("RST", tcp::flags::RST),
        ("URG", tcp::flags::URG),
        ("ECE", 0x40),
        ("CWR", 0x80),
    ] {
        for which in 0..2 {
            let mut frames = flow(&[MSS, MSS]);
            set_flags(&mut frames[which], tcp::flags::ACK | flags);
            let out = coalesce(&mut Gro::default(), &frames);
            let expected: Vec<(Vec<u8>, usize)> = frames.iter().map(|f| (f.clone(), 1)).collect();
            assert_eq!(out, expected, "{name} on segment {which}");
        }
    }
}

#[test]
fn size_rules_follow_the_first_segment() {
    // A bigger segment after a smaller one cannot be cut back by gso_size.
    let frames = flow(&[700, MSS]);
    assert_eq!(
        coalesce(&mut Gro::default(), &frames)
            .iter()
            .map(|(_, n)| *n)
            .collect::<Vec<_>>(),
        vec![1, 1]
    );
    // Nothing may follow a short segment: it ends the run.
    let frames = flow(&[MSS, 700, 700]);
    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(expand(&out), frames);
    // Pure ACKs carry no payload: nothing to merge.
    let frames = flow(&[0, 0]);
    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![1, 1]);
}

#[test]
fn other_protocols_pass_through_without_breaking_runs() {
    let tcp = flow(&[MSS, MSS, MSS, MSS]);
    let mut udp = vec![0u8; vnet::LEN];
    PacketBuilder::ethernet2(ROUTER_MAC, HOST_MAC)
        .ipv4(SERVER, HOST, 63)
        .udp(53, 5353)
        .write(&mut udp, &[1, 2, 3])
        .unwrap();
    let batch = vec![
        tcp[0].clone(),
        tcp[1].clone(),
        udp.clone(),
        tcp[2].clone(),
        tcp[3].clone(),
        vec![1, 2, 3],
    ];
    let out = coalesce(&mut Gro::default(), &batch);
    assert_eq!(
        out.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![1, 1, 4]
    );
    assert_eq!(out[0].0, udp);
    assert_eq!(out[1].0, vec![1, 2, 3]);
    assert_eq!(expand(&out[2..]), tcp);
}

#[test]
fn a_tcp_fragment_finishes_every_open_run() {
    let a = flow(&[MSS, MSS]);
    let mut frag = a[1].clone();
    // MF set: a fragment whose ports cannot be trusted to name its flow.
    frag[IP_OFFSET + 6] = 0x20;
    Ipv4Packet::new_unchecked(&mut frag[IP_OFFSET..]).fill_checksum();
    let batch = vec![a[0].clone(), frag.clone()];
    let out = coalesce(&mut Gro::default(), &batch);
    assert_eq!(
        out.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        batch
    );
}

/// `frame` (IPv6) with an extension header of `next_header` type inserted after the fixed
/// header: 8 bytes of `body` behind its next-header byte (TCP) and the payload length grown.
/// The TCP checksum stays right: the pseudo-header covers only the upper layer.
fn with_ext(frame: &[u8], next_header: u8, body: [u8; 7]) -> Vec<u8> {
    let mut out = frame[..TCP6_OFFSET].to_vec();
    out.push(ipv6::next_header::TCP);
    out.extend_from_slice(&body);
    out.extend_from_slice(&frame[TCP6_OFFSET..]);
    let mut ip = Ipv6Packet::new_unchecked(&mut out[IP_OFFSET..]);
    let len = ip.payload_len() as u16 + 8;
    ip.set_payload_len(len);
    ip.set_next_header(next_header);
    out
}

/// Destination options holding one PadN option.
fn dest_opts(frame: &[u8]) -> Vec<u8> {
    with_ext(frame, ipv6::next_header::DEST_OPTS, [0, 1, 4, 0, 0, 0, 0])
}

fn untouched(frames: &[Vec<u8>]) -> Vec<(Vec<u8>, usize)> {
    frames.iter().map(|f| (f.clone(), 1)).collect()
}

#[test]
fn merges_a_v6_run_and_segments_back_to_the_originals() {
    let mut sizes = vec![MSS6; 9];
    sizes.push(700);
    let mut frames = flow6(&sizes);
    let s = Spec::first6(MSS6);
    let mut last = s.clone();
    for &len in &sizes[1..] {
        last = last.next(len);
    }
    last.psh = true;
    frames[9] = build(&last);
    for f in &mut frames {
        // DSCP AF11 with ECT(0), and the hop limit the router left: both kept.
        Ipv6Packet::new_unchecked(&mut f[IP_OFFSET..]).set_version_tc_flow(0x2a, FLOW_LABEL);
    }

    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out.len(), 1);
    let (sf, n) = &out[0];
    assert_eq!(*n, 10);
    let hdrs = 14 + 40 + 32;
    assert_eq!(sf.len(), vnet::LEN + hdrs + 9 * MSS6 + 700);
    assert_eq!(
        VnetHdr::parse(sf).unwrap(),
        VnetHdr {
            flags: vnet::flags::NEEDS_CSUM,
            gso_type: vnet::gso::TCPV6,
            hdr_len: hdrs as u16,
            gso_size: MSS6 as u16,
            csum_start: 54,
            csum_offset: 16,
        }
    );
    let ip = Ipv6Packet::new_checked(&sf[IP_OFFSET..]).unwrap();
    assert_eq!(ip.payload_len(), 32 + 9 * MSS6 + 700);
    assert_eq!(
        (ip.traffic_class(), ip.flow_label(), ip.hop_limit()),
        (0x2a, FLOW_LABEL, 63)
    );
    assert_eq!((ip.src(), ip.dst()), (SERVER6, HOST6));
    let tcp = TcpPacket::new_checked(&sf[TCP6_OFFSET..]).unwrap();
    assert_eq!(tcp.seq(), s.seq);
    assert_eq!(tcp.flags(), tcp::flags::ACK | tcp::flags::PSH);
    // The seed the kernel completes: the IPv6 pseudo-header sum (addresses, upper-layer length
    // 32 + payload, next header 6) folded, not complemented. Summed by hand here.
    let words = |a: Ipv6Addr| a.segments().iter().map(|&w| u32::from(w)).sum::<u32>();
    let seed = words(SERVER6) + words(HOST6) + (32 + 9 * MSS6 + 700) as u32 + 6;
    assert_eq!(tcp.checksum(), checksum::fold(seed));
    // A receiver reassembles the stream byte for byte.
    let stream: Vec<u8> = frames
        .iter()
        .flat_map(|f| f[TCP6_OFFSET + 32..].to_vec())
        .collect();
    assert_eq!(stream, payload(s.seq, 9 * MSS6 + 700));
    assert_eq!(&sf[TCP6_OFFSET + 32..], &stream[..]);
    assert_eq!(segment(sf), frames);
}

#[test]
fn v6_trusted_and_partial_checksums_merge_only_at_the_v6_offsets() {
    let originals = flow6(&[MSS6, MSS6, MSS6, 10]);
    let mut frames = originals.clone();
    VnetHdr {
        flags: vnet::flags::DATA_VALID,
        ..VnetHdr::default()
    }
    .write(&mut frames[0])
    .unwrap();
    frames[0][TCP6_OFFSET + 16] ^= 0xff;
    let partial = |frames: &mut [Vec<u8>], csum_start: u16| {
        for f in &mut frames[1..3] {
            VnetHdr {
                flags: vnet::flags::NEEDS_CSUM,
                csum_start,
                csum_offset: 16,
                ..VnetHdr::default()
            }
            .write(f)
            .unwrap();
            let len = (f.len() - TCP6_OFFSET) as u32;
            let seed = checksum::fold(checksum::pseudo_header_sum_v6(SERVER6, HOST6, 6, len));
            TcpPacket::new_unchecked(&mut f[TCP6_OFFSET..]).set_checksum(seed);
        }
    };
    partial(&mut frames, 54);
    let out = coalesce(&mut Gro::default(), &frames);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 4);
    assert_eq!(segment(&out[0].0), originals);
    // At the IPv4 offsets the partial checksum is not where a TCPv6 header has it.
    partial(&mut frames, 34);
    let out = coalesce(&mut Gro::default(), &frames);
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, vec![1, 1, 1, 1]);
}

#[test]
fn stops_at_the_length_limit_over_ipv6() {
    let frames = flow6(&[MSS6; 50]);
    let out = coalesce(&mut Gro::default(), &frames);
    // (65535 - 40 - 32) / 1428 = 45 segments fit.
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, vec![45, 5]);
    assert!(out[0].0.len() - IP_OFFSET <= 65535);
    assert_eq!(expand(&out), frames);
}

#[test]
fn interleaved_v6_flows_and_a_v4_flow_merge_each_in_their_own_order() {
    let a = flow6(&[MSS6, MSS6, MSS6]);
    let b = flow_from(
        Spec {
            dport: 40001,
            ..Spec::first6(MSS6)
        },
        &[MSS6, MSS6],
    );
    // The same ports over IPv4: another flow.
    let c = flow(&[MSS, MSS, MSS]);
    let batch = vec![
        a[0].clone(),
        c[0].clone(),
        b[0].clone(),
        a[1].clone(),
        c[1].clone(),
        a[2].clone(),
        b[1].clone(),
        c[2].clone(),
    ];
    let out = coalesce(&mut Gro::default(), &batch);
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        counts,
        vec![3, 3, 2],
        "one super-frame per flow, oldest first"
    );
    assert_eq!(expand(&out[..1]), a);
    assert_eq!(expand(&out[1..2]), c);
    assert_eq!(expand(&out[2..]), b);
}

/// Each case changes the second of two full-size IPv6 segments (or both) so that the kernel's
/// GRO would not merge them either: both must come out untouched and in order.
#[test]
fn non_mergeable_v6_pairs_stay_untouched() {
    type Change = fn(&mut Vec<u8>, &mut Vec<u8>);
    let cases: Vec<(&str, Change)> = vec![
        ("other port", |_, b| {
            b[TCP6_OFFSET + 3] ^= 1;
            refill(b)
        }),
        ("sequence gap", |_, b| {
            b[TCP6_OFFSET + 7] ^= 1;
            refill(b)
        }),
        ("other ack", |_, b| {
            b[TCP6_OFFSET + 11] ^= 1;
            refill(b)
        }),
        ("other window", |_, b| {
            b[TCP6_OFFSET + 15] ^= 1;
            refill(b)
        }),
        ("other timestamp", |_, b| {
            b[TCP6_OFFSET + 27] ^= 1;
            refill(b)
        }),
        ("other flow label", |_, b| b[IP_OFFSET + 3] ^= 1),
        ("other hop limit", |_, b| b[IP_OFFSET + 7] -= 1),
        ("other traffic class (ECN CE)", |_, b| {
            b[IP_OFFSET + 1] |= 0x30
        }),
        ("other destination MAC", |_, b| b[ETH_OFFSET + 5] ^= 1),
        ("destination options on both", |a, b| {
            *a = dest_opts(a);
            *b = dest_opts(b)
        }),
        ("destination options on the second", |_, b| {
            *b = dest_opts(b)
        }),
        ("hop-by-hop options on both", |a, b| {
            *a = with_ext(a, ipv6::next_header::HOP_BY_HOP, [0, 1, 4, 0, 0, 0, 0]);
            *b = with_ext(b, ipv6::next_header::HOP_BY_HOP, [0, 1, 4, 0, 0, 0, 0])
        }),
        ("atomic fragment header on both", |a, b| {
            *a = with_ext(a, ipv6::next_header::FRAGMENT, [0, 0, 0, 0, 0, 0, 7]);
            *b = with_ext(b, ipv6::next_header::FRAGMENT, [0, 0, 0, 0, 0, 0, 8])
        }),
        ("a byte past the payload", |_, b| b.push(0)),
        ("bad TCP checksum on the second", |_, b| {
            b[TCP6_OFFSET + 16] ^= 1
        }),
        ("bad TCP checksum on the first", |a, _| {
            a[TCP6_OFFSET + 16] ^= 1
        }),
        ("PSH on the first", |a, _| {
            a[TCP6_OFFSET + 13] |= tcp::flags::PSH;
            refill(a)
        }),
        ("FIN on the second", |_, b| {
            b[TCP6_OFFSET + 13] |= tcp::flags::FIN;
            refill(b)
        }),
        ("CWR on the second", |_, b| {
            b[TCP6_OFFSET + 13] |= 0x80;
            refill(b)
        }),
        ("GSO frame", |_, b| {
            VnetHdr {
                gso_type: vnet::gso::TCPV6,
                gso_size: MSS6 as u16,
                ..VnetHdr::default()
            }
            .write(b)
            .unwrap()
        }),
        ("truncated", |_, b| b.truncate(TCP6_OFFSET + 10)),
    ];
    for (name, change) in cases {
        let mut frames = flow6(&[MSS6, MSS6]);
        assert_eq!(coalesce(&mut Gro::default(), &frames).len(), 1);
        let (a, b) = frames.split_at_mut(1);
        change(&mut a[0], &mut b[0]);
        let out = coalesce(&mut Gro::default(), &frames);
        assert_eq!(out, untouched(&frames), "{name}");
    }
}

#[test]
fn a_v6_segment_with_an_extension_header_finishes_its_own_flow_first() {
    let a = flow6(&[MSS6, MSS6, MSS6]);
    let b0 = build(&Spec {
        dport: 40001,
        ..Spec::first6(MSS6)
    });
    let a_ext = dest_opts(&a[2]);
    let batch = vec![a[0].clone(), b0.clone(), a[1].clone(), a_ext.clone()];
    let out = coalesce(&mut Gro::default(), &batch);
    let counts: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
    assert_eq!(counts, vec![2, 1, 1]);
    assert_eq!(expand(&out[..1]), a[..2].to_vec());
    assert_eq!(out[1].0, a_ext, "the segment follows its flow's run");
    assert_eq!(out[2].0, b0, "the other flow's run stays open past it");
}

#[test]
fn a_non_initial_v6_fragment_finishes_every_open_run() {
    let a = flow6(&[MSS6, MSS6]);
    let c = flow(&[MSS, MSS]);
    // Offset 1448, no more fragments: its ports cannot be read, whatever flow it belongs to.
    let frag = with_ext(
        &a[1],
        ipv6::next_header::FRAGMENT,
        [0, 0x05, 0xa8, 0, 0, 0, 9],
    );
    let batch = vec![a[0].clone(), c[0].clone(), frag.clone(), c[1].clone()];
    let out = coalesce(&mut Gro::default(), &batch);
    assert_eq!(out, untouched(&batch));
}

/// The TCP flow (addresses and ports) of a frame, as a parser that is not ours reads it.
fn flow_key(frame: &[u8]) -> Option<(Vec<u8>, Vec<u8>, u16, u16)> {
    let pkt = etherparse::SlicedPacket::from_ethernet(frame.get(ETH_OFFSET..)?).ok()?;
    let Some(etherparse::TransportSlice::Tcp(tcp)) = &pkt.transport else {
        return None;
    };
    let (src, dst) = match &pkt.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => (
            ip.header().source().to_vec(),
            ip.header().destination().to_vec(),
        ),
        Some(etherparse::NetSlice::Ipv6(ip)) => (
            ip.header().source().to_vec(),
            ip.header().destination().to_vec(),
        ),
        None => return None,
    };
    Some((src, dst, tcp.source_port(), tcp.destination_port()))
}

/// A step of a random batch: which of four flows (two over IPv4, two over IPv6) sends, how
/// much, and what goes wrong.
#[derive(Debug, Clone)]
enum Step {
    Segment { flow: usize, len: usize, fault: u8 },
    Garbage(Vec<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..4, prop_oneof![4 => Just(MSS), 1 => 0usize..=MSS], 0u8..24)
            .prop_map(|(flow, len, fault)| Step::Segment { flow, len, fault }),
        1 => proptest::collection::vec(any::<u8>(), 0..120).prop_map(Step::Garbage),
    ]
}

/// Builds the batch: each flow continues where it left off unless a fault (rarely) breaks the
/// rules; returns the frames in batch order.
fn batch(steps: &[Step]) -> Vec<Vec<u8>> {
    let mut flows: Vec<Spec> = (0..4)
        .map(|i| Spec {
            v6: i >= 2,
            dport: 40000 + i as u16,
            ..Spec::first(0)
        })
        .collect();
    steps
        .iter()
        .map(|s| match s {
            Step::Garbage(bytes) => bytes.clone(),
            Step::Segment { flow, len, fault } => {
                let mut spec = flows[*flow].next(*len);
                match fault {
                    0 => spec.seq = spec.seq.wrapping_add(1),
                    1 => spec.ident = spec.ident.wrapping_add(3),
                    2 => spec.psh = true,
                    3 => spec.ts = spec.ts.map(|t| t + 1),
                    4 => spec.ack += 1,
                    _ => {}
                }
                flows[*flow] = spec.clone();
                let mut f = build(&spec);
                let tcp_at = if spec.v6 { TCP6_OFFSET } else { TCP_OFFSET };
                match fault {
                    5 => f[tcp_at + 16] ^= 0x10,
                    6 => {
                        f[tcp_at + 13] |= tcp::flags::FIN;
                        refill(&mut f)
                    }
                    // IPv4 header checksum; IPv6 flow label.
                    7 => f[IP_OFFSET + if spec.v6 { 3 } else { 10 }] ^= 1,
                    8 => {
                        let pos = IP_OFFSET + (*len % 40);
                        f[pos] = f[pos].wrapping_add(1)
                    }
                    // Bytes past the IPv6 payload (over IPv4 they would be Ethernet
                    // padding, which a super-frame drops).
                    9 if spec.v6 => f.extend_from_slice(&[0; 3]),
                    _ => {}
                }
                f
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn random_batches_expand_back_to_the_input(steps in proptest::collection::vec(step(), 0..80)) {
        let frames = batch(&steps);
        let mut gro = Gro::default();
        let out = expand(&coalesce(&mut gro, &frames));
        // Merged segments come back byte for byte (a merged corrupted segment would come back
        // with a fresh, valid checksum); each flow's frames, and the frames of no flow, in
        // their order.
        let mut sorted_in = frames.clone();
        let mut sorted_out = out.clone();
        sorted_in.sort();
        sorted_out.sort();
        prop_assert_eq!(sorted_out, sorted_in);
        let keys: std::collections::BTreeSet<_> = frames.iter().map(|f| flow_key(f)).collect();
        for key in keys {
            let of = |v: &[Vec<u8>]| v.iter().filter(|f| flow_key(f) == key).cloned().collect::<Vec<_>>();
            prop_assert_eq!(of(&out), of(&frames), "flow {:?}", key);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..200), 0..16)) {
        let out = coalesce(&mut Gro::default(), &frames);
        prop_assert_eq!(out.len(), frames.len());
    }
}
