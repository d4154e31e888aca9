//! Probe reply matching (SPEC 15): the probe engine of the lab config sends its probes; each
//! input then either flips bytes of a genuine reply or is a frame of its own, delivered on an
//! uplink of its choice. A frame may count as a reply only if it is, in every field that
//! identifies the probe (uplink, source, destination, protocol, ICMP type, id, sequence), the
//! genuine reply — so neither a forged nor a misdelivered frame can keep a dead uplink "up" —
//! and each sent probe is answered at most once.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mhrouter::clock::Instant;
use mhrouter::config::Config;
use mhrouter::control::probe::{ProbeEngine, ProbeUplink};
use mhrouter::wire::ethernet::MacAddr;
use mhrouter::wire::frame::IP_OFFSET;
use mhrouter::wire::ipv4::Ipv4Packet;
use mhrouter::{Iface, UplinkId};

const LAB: &str = include_str!("../../scripts/lab.toml");

/// Parsed once: the parser is what an input would otherwise spend most of its time in.
static CONFIG: LazyLock<Config> =
    LazyLock::new(|| Config::parse(LAB, "lab.toml").expect("the lab config parses"));

/// The genuine reply to an ICMP echo probe frame: addresses swapped, type 0, checksums fixed.
fn echo_reply(sent: &[u8]) -> Vec<u8> {
    let mut f = sent.to_vec();
    let ip = &mut f[IP_OFFSET..];
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

/// The fields that say which probe a reply answers.
fn identity(frame: &[u8]) -> Option<[u8; 14]> {
    let ip = frame.get(IP_OFFSET..)?;
    let hlen = usize::from(*ip.first()? & 0x0f) * 4;
    let mut id = [0u8; 14];
    id[..8].copy_from_slice(ip.get(12..20)?);
    id[8] = *ip.get(9)?;
    id[9] = *ip.get(hlen)?;
    id[10..14].copy_from_slice(ip.get(hlen + 4..hlen + 8)?);
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
        // ICMP echo probes: their genuine reply is built here (TCP and DNS ones answer otherwise).
        if t.frame.get(IP_OFFSET + 9) == Some(&1) {
            sent.push(t);
        }
    }
    assert!(!sent.is_empty(), "the lab config sends echo probes at start");

    let pick = &sent[usize::from(uplink_pick) % sent.len()];
    let genuine = echo_reply(&pick.frame);
    let frame = if mutate {
        let mut f = genuine.clone();
        for &(at, x) in &flips {
            let i = usize::from(at) % f.len();
            f[i] ^= x;
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
