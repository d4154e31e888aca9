//! Probe reply matching (SPEC 15, 34): the probe engine of the lab config, with an ICMPv6 echo
//! probe on each uplink added, sends its probes; each
//! input then either flips bytes of a genuine reply or is a frame of its own, delivered on an
//! uplink of its choice. A frame may count as a reply only if it is, in every field that
//! identifies the probe (uplink, source, destination, protocol, ICMP type, id, sequence), the
//! genuine reply — so neither a forged nor a misdelivered frame can keep a dead uplink "up" —
//! and each sent probe is answered at most once.
#![no_main]

use std::net::Ipv6Addr;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mhrouter::clock::Instant;
use mhrouter::config::Config;
use mhrouter::control::probe::{ProbeEngine, ProbeUplink, ProbeUplink6};
use mhrouter::wire::ethernet::MacAddr;
use mhrouter::wire::frame::IP_OFFSET;
use mhrouter::wire::icmpv6::Icmpv6Packet;
use mhrouter::wire::ipv4::Ipv4Packet;
use mhrouter::{Iface, UplinkId};

const LAB: &str = include_str!("../../scripts/lab.toml");

/// An ICMPv6 echo probe on each uplink, from its `address6` (SPEC 34), timed like the lab's so
/// an attempt is outstanding at the end of the run-up.
const PROBES6: &str = r#"
[[probe]]
name = "a6"
type = "icmp-echo"
uplink = "isp-a"
target = "2001:db8:18::6"
interval = "3s"
timeout = "1s"

[[probe]]
name = "b6"
type = "icmp-echo"
uplink = "isp-b"
target = "2001:db8:18::6"
interval = "3s"
timeout = "1s"
"#;

/// Parsed once: the parser is what an input would otherwise spend most of its time in.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::parse(&format!("{LAB}{PROBES6}"), "lab.toml").expect("the lab config parses")
});

/// The genuine reply to an ICMP or ICMPv6 echo probe frame: addresses swapped, type echo
/// reply, checksums fixed.
fn echo_reply(sent: &[u8]) -> Vec<u8> {
    let mut f = sent.to_vec();
    let ip = &mut f[IP_OFFSET..];
    if ip[0] >> 4 == 6 {
        let (src, dst) = (ip[8..24].to_vec(), ip[24..40].to_vec());
        ip[8..24].copy_from_slice(&dst);
        ip[24..40].copy_from_slice(&src);
        let to = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
        let mut icmp = Icmpv6Packet::new_unchecked(&mut ip[40..]);
        icmp.set_msg_type(129);
        icmp.fill_checksum(to(&dst), to(&src));
        return f;
    }
    let (src, dst) = (ip[12..16].to_vec(), ip[16..20].to_vec());
    ip[12..16].copy_from_slice(&dst);
    ip[16..20].copy_from_slice(&src);
    Ipv4Packet::new_unchecked(&mut ip[..]).fill_checksum();
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    let icmp = &mut ip[hlen..];
    icmp[0] = 0;
    icmp[2..4].copy_from_slice(&[0, 0]);
    let sum = mhrouter::wire::checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The fields that say which probe a reply answers: version, addresses, protocol, ICMP type,
/// id and sequence.
fn identity(frame: &[u8]) -> Option<Vec<u8>> {
    let ip = frame.get(IP_OFFSET..)?;
    let version = *ip.first()? >> 4;
    let (addrs, proto, hlen) = match version {
        6 => (ip.get(8..40)?, *ip.get(6)?, 40),
        _ => (ip.get(12..20)?, *ip.get(9)?, usize::from(ip[0] & 0x0f) * 4),
    };
    let mut id = vec![version, proto, *ip.get(hlen)?];
    id.extend_from_slice(addrs);
    id.extend_from_slice(ip.get(hlen + 4..hlen + 8)?);
    Some(id)
}

fuzz_target!(|input: (bool, u8, Vec<(u16, u8)>, Vec<u8>)| {
    let (mutate, uplink_pick, flips, raw) = input;
    let cfg = &*CONFIG;
    let t0 = Instant::from_millis(1_000);
    let mut engine = ProbeEngine::new(
        cfg.probes.clone(),
        |name| cfg.uplink_index(name).unwrap_or(0),
        0,
        t0,
    );
    let uplinks: Vec<ProbeUplink> = cfg
        .uplinks
        .iter()
        .enumerate()
        .map(|(i, u)| ProbeUplink {
            addr: u.address.addr(),
            mac: MacAddr([2, 0, 0, 0, 0, i as u8]),
            next_hop_mac: Some(MacAddr([2, 0, 0, 0, 1, i as u8])),
            carrier: true,
            v6: cfg
                .ipv6
                .as_ref()
                .and_then(|v6| v6.uplinks.get(i)?.as_ref()?.address)
                .map(|a| ProbeUplink6 {
                    addr: a.addr(),
                    next_hop_mac: Some(MacAddr([2, 0, 0, 0, 2, i as u8])),
                }),
        })
        .collect();
    engine.set_uplinks(uplinks);
    // Probes start spread over their first interval: run the clock until each has gone out.
    let mut now = t0;
    let mut sent = Vec::new();
    while let Some(due) = engine.poll_timeout().filter(|&d| d <= t0 + Duration::from_secs(4)) {
        now = due;
        engine.handle_timeout(now);
    }
    while let Some(t) = engine.poll_transmit() {
        // ICMP and ICMPv6 echo probes: their genuine reply is built here (TCP and DNS ones
        // answer otherwise).
        let echo = match t.frame.get(IP_OFFSET).map(|b| b >> 4) {
            Some(6) => t.frame.get(IP_OFFSET + 6) == Some(&58),
            _ => t.frame.get(IP_OFFSET + 9) == Some(&1),
        };
        if echo {
            sent.push(t);
        }
    }
    assert!(
        sent.iter().any(|t| t.frame[IP_OFFSET] >> 4 == 6) && sent.len() > 2,
        "the lab config sends ICMP and ICMPv6 echo probes at start"
    );

    let pick = &sent[usize::from(uplink_pick) % sent.len()];
    let genuine = echo_reply(&pick.frame);
    let frame = if mutate {
        let mut f = genuine.clone();
        for &(at, x) in &flips {
            let i = usize::from(at) % f.len();
            f[i] ^= x;
        }
        // ICMPv6 replies are checksum-verified: refill it over the flipped addresses and
        // message, so the flips reach the identifying fields (the checksum has its unit test).
        if genuine[IP_OFFSET] >> 4 == 6 && f[IP_OFFSET] >> 4 == 6 {
            let ip = &mut f[IP_OFFSET..];
            let to = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
            let (src, dst) = (to(&ip[8..24]), to(&ip[24..40]));
            Icmpv6Packet::new_unchecked(&mut ip[40..]).fill_checksum(src, dst);
        }
        f
    } else {
        raw
    };
    let on = UplinkId(uplink_pick % cfg.uplinks.len() as u8);
    let at = now + Duration::from_millis(1);
    if engine.handle_reply(on, &frame, at) {
        // Probes sent more than once (their interval is shorter than the run-up) have one
        // genuine reply per attempt: the frame must be one of them, on that probe's uplink.
        let answered = sent
            .iter()
            .find(|t| identity(&echo_reply(&t.frame)) == identity(&frame))
            .expect("a frame that differs from every genuine reply in an identifying field matched");
        assert_eq!(
            Iface::Uplink(on),
            answered.iface,
            "a reply matched on another uplink"
        );
        assert!(
            !engine.handle_reply(on, &frame, at),
            "the same probe was answered twice"
        );
    }
});
