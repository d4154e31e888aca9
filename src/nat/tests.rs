use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const A: UplinkId = UplinkId(0);
const B: UplinkId = UplinkId(1);
const ADDR_A: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 6);
const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);

fn table(params: NatParams) -> NatTable {
    NatTable::new(params, &[Some(ADDR_A), Some(ADDR_B)])
}

fn flow(proto: u8, inside_port: u16, remote: Ipv4Addr, remote_port: u16) -> FlowKey {
    FlowKey {
        proto,
        inside: HOST,
        inside_port,
        remote,
        remote_port,
    }
}

fn inb(
    uplink: UplinkId,
    proto: u8,
    outside_port: u16,
    remote: Ipv4Addr,
    remote_port: u16,
) -> InboundKey {
    InboundKey {
        uplink,
        proto,
        outside_port,
        remote,
        remote_port,
    }
}

fn ms(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn state_of(t: &NatTable, key: &FlowKey) -> &'static str {
    let sessions = t.sessions(None, ms(0));
    sessions
        .iter()
        .find(|s| s.key == *key)
        .map_or("gone", |s| s.state)
}

fn inbound(t: &NatTable, key: &FlowKey, tr: &Translation, now: Instant, flags: u8) -> bool {
    t.lookup_inbound(
        &inb(
            tr.uplink,
            key.proto,
            tr.outside_port,
            key.remote,
            key.remote_port,
        ),
        now,
        flags,
    )
    .is_some()
}

#[test]
fn table_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NatTable>();
    assert_send_sync::<FragTable>();
}

#[test]
fn translates_to_the_uplink_address_and_back() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    assert_eq!(t.lookup_outbound(&key, ms(0), 0, None), None);
    let tr = t.create_outbound(&key, B, ms(0), 0, None).unwrap();
    assert_eq!(
        (tr.uplink, tr.outside, tr.inside, tr.inside_port),
        (B, ADDR_B, HOST, 5000)
    );
    assert!((1024..=65535).contains(&tr.outside_port));
    assert_eq!(t.lookup_outbound(&key, ms(1), 0, None), Some(tr));
    assert_eq!(t.peek_outbound(&key), Some(tr));
    let back = t.lookup_inbound(&inb(B, PROTO_UDP, tr.outside_port, SERVER, 53), ms(2), 0);
    assert_eq!(back, Some(tr));
    assert_eq!(t.len(), 1);
    assert_eq!(t.len_by_uplink(), vec![0, 1]);
    assert_eq!(t.counters().created, 1);
}

#[test]
fn mapping_is_endpoint_independent() {
    let t = table(NatParams::default());
    let first = t
        .create_outbound(&flow(PROTO_UDP, 5000, SERVER, 53), A, ms(0), 0, None)
        .unwrap();
    let other_remote = flow(PROTO_UDP, 5000, Ipv4Addr::new(8, 8, 8, 8), 123);
    let second = t
        .create_outbound(&other_remote, A, ms(20_000), 0, None)
        .unwrap();
    assert_eq!(first.outside_port, second.outside_port);
    assert_eq!(t.len(), 2);
    // The mapping outlives the first session while the second still uses it.
    assert_eq!(t.expire(ms(30_001)), 1);
    let third = flow(PROTO_UDP, 5000, SERVER, 54);
    let third = t.create_outbound(&third, A, ms(30_001), 0, None).unwrap();
    assert_eq!(third.outside_port, first.outside_port);
}

#[test]
fn different_inside_endpoints_get_different_outside_ports() {
    let t = table(NatParams::default());
    let p1 = t.create_outbound(&flow(PROTO_TCP, 40000, SERVER, 80), A, ms(0), TCP_SYN, None);
    let p2 = t.create_outbound(&flow(PROTO_TCP, 40001, SERVER, 80), A, ms(0), TCP_SYN, None);
    let mut other_host = flow(PROTO_TCP, 40000, SERVER, 80);
    other_host.inside = Ipv4Addr::new(192, 168, 0, 11);
    let p3 = t.create_outbound(&other_host, A, ms(0), TCP_SYN, None);
    let ports = [p1, p2, p3].map(|p| p.unwrap().outside_port);
    assert_ne!(ports[0], ports[1]);
    assert_ne!(ports[0], ports[2]);
    assert_ne!(ports[1], ports[2]);
}

#[test]
fn inbound_is_filtered_by_remote_address_port_and_uplink() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    let tr = t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    let port = tr.outside_port;
    let other = Ipv4Addr::new(172, 18, 0, 7);
    assert_eq!(
        t.lookup_inbound(&inb(A, PROTO_UDP, port, other, 53), ms(1), 0),
        None
    );
    assert_eq!(
        t.lookup_inbound(&inb(A, PROTO_UDP, port, SERVER, 54), ms(1), 0),
        None
    );
    assert_eq!(
        t.lookup_inbound(&inb(B, PROTO_UDP, port, SERVER, 53), ms(1), 0),
        None
    );
    assert_eq!(
        t.lookup_inbound(&inb(A, PROTO_TCP, port, SERVER, 53), ms(1), 0),
        None
    );
    assert_eq!(
        t.lookup_inbound(&inb(A, PROTO_UDP, port ^ 1, SERVER, 53), ms(1), 0),
        None
    );
    assert_eq!(t.peek_inbound(&inb(A, PROTO_UDP, port, other, 53)), None);
    // The rejected packets left the session unreplied.
    assert_eq!(state_of(&t, &key), "udp-unreplied");
    assert_eq!(
        t.peek_inbound(&inb(A, PROTO_UDP, port, SERVER, 53)),
        Some(tr)
    );
}

#[test]
fn sessions_differing_only_in_remote_port_are_filtered_apart() {
    let t = table(NatParams::default());
    let k53 = flow(PROTO_UDP, 5000, SERVER, 53);
    let k54 = flow(PROTO_UDP, 5000, SERVER, 54);
    let tr = t.create_outbound(&k53, A, ms(0), 0, None).unwrap();
    t.create_outbound(&k54, A, ms(20_000), 0, None).unwrap();
    assert_eq!(t.expire(ms(30_001)), 1);
    assert!(!inbound(&t, &k53, &tr, ms(30_001), 0));
    assert!(inbound(&t, &k54, &tr, ms(30_001), 0));
}

#[test]
fn icmp_echo_uses_the_identifier_as_port() {
    let t = table(NatParams::default());
    let key = flow(PROTO_ICMP, 0x1234, SERVER, 0);
    let tr = t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    let back = t.lookup_inbound(&inb(A, PROTO_ICMP, tr.outside_port, SERVER, 0), ms(1), 0);
    assert_eq!(back.map(|b| b.inside_port), Some(0x1234));
    assert_eq!(state_of(&t, &key), "icmp");
}

fn distinct_timeouts() -> Timeouts {
    Timeouts {
        tcp_syn: Duration::from_secs(11),
        tcp_established: Duration::from_secs(12),
        tcp_closing: Duration::from_secs(13),
        udp: Duration::from_secs(14),
        udp_unreplied: Duration::from_secs(15),
        icmp: Duration::from_secs(16),
    }
}

/// Creates a session at t=1000 ms, brings it into a state, and checks it survives `expire` at
/// exactly its timeout after the last packet and is gone 1 ms later.
fn check_timeout(key: FlowKey, setup: impl Fn(&NatTable, &Translation), label: &str, secs: u64) {
    let t = table(NatParams {
        timeouts: distinct_timeouts(),
        ..NatParams::default()
    });
    let tr = t.create_outbound(&key, A, ms(1000), TCP_SYN, None).unwrap();
    setup(&t, &tr);
    assert_eq!(state_of(&t, &key), label);
    let last = 1000 + secs * 1000;
    assert_eq!(t.expire(ms(last)), 0, "{label} expired early");
    assert_eq!(state_of(&t, &key), label);
    assert_eq!(t.expire(ms(last + 1)), 1, "{label} did not expire");
    assert_eq!(t.peek_outbound(&key), None);
    assert_eq!(
        t.peek_inbound(&inb(
            A,
            key.proto,
            tr.outside_port,
            key.remote,
            key.remote_port
        )),
        None
    );
    assert!(t.is_empty());
    assert_eq!(t.counters().expired, 1);
}

#[test]
fn every_state_has_its_own_timeout() {
    let tcp = flow(PROTO_TCP, 40000, SERVER, 80);
    let udp = flow(PROTO_UDP, 5000, SERVER, 53);
    let icmp = flow(PROTO_ICMP, 7, SERVER, 0);
    check_timeout(tcp, |_, _| {}, "syn", 11);
    let syn_ack = |t: &NatTable, tr: &Translation| {
        assert!(inbound(t, &tcp, tr, ms(1000), TCP_SYN | TCP_ACK));
    };
    check_timeout(tcp, syn_ack, "established", 12);
    let fin = |t: &NatTable, tr: &Translation| {
        syn_ack(t, tr);
        t.lookup_outbound(&tcp, ms(1000), TCP_FIN | TCP_ACK, Some(1));
    };
    check_timeout(tcp, fin, "closing", 13);
    let reply = |t: &NatTable, tr: &Translation| assert!(inbound(t, &udp, tr, ms(1000), 0));
    check_timeout(udp, reply, "udp", 14);
    check_timeout(udp, |_, _| {}, "udp-unreplied", 15);
    check_timeout(icmp, |_, _| {}, "icmp", 16);
}

#[test]
fn default_timeouts_match_the_design() {
    let d = Timeouts::default();
    let secs = |d: Duration| d.as_secs();
    assert_eq!(
        [
            d.tcp_syn,
            d.tcp_established,
            d.tcp_closing,
            d.udp,
            d.udp_unreplied,
            d.icmp
        ]
        .map(secs),
        [30, 7200, 10, 300, 30, 60]
    );
}

#[test]
fn traffic_refreshes_a_session_but_peeking_does_not() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    let tr = t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    t.peek_outbound(&key);
    t.peek_inbound(&inb(A, PROTO_UDP, tr.outside_port, SERVER, 53));
    assert_eq!(t.expire(ms(30_001)), 1);

    let tr = t.create_outbound(&key, A, ms(100_000), 0, None).unwrap();
    assert!(t.lookup_outbound(&key, ms(120_000), 0, None).is_some());
    assert_eq!(t.expire(ms(149_999)), 0);
    assert!(inbound(&t, &key, &tr, ms(149_999), 0));
    // Replied now: the 5 min timeout counts from the reply.
    assert_eq!(t.expire(ms(149_999 + 300_000)), 0);
    assert_eq!(t.expire(ms(149_999 + 300_001)), 1);
}

#[test]
fn late_packet_does_not_make_a_session_older() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    t.lookup_outbound(&key, ms(10_000), 0, None).unwrap();
    // Another worker read its clock before this one but took the shard lock after.
    t.lookup_outbound(&key, ms(9_000), 0, None).unwrap();
    assert_eq!(t.expire(ms(40_000)), 0);
    assert_eq!(t.expire(ms(40_001)), 1);
}

#[test]
fn expiry_counts_across_the_wrap_of_the_session_clock() {
    // Last seen 1 s before the millisecond counter of the session wraps at 2^32 ms.
    let start = (1u64 << 32) - 1000;
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    t.create_outbound(&key, A, ms(start), 0, None).unwrap();
    assert_eq!(t.expire(ms(start + 1000)), 0, "expired at the wrap");
    assert_eq!(
        t.sessions(None, ms(start + 2000))[0].idle,
        Duration::from_secs(2)
    );
    assert_eq!(t.expire(ms(start + 30_000)), 0);
    assert_eq!(t.expire(ms(start + 30_001)), 1);
}

#[test]
fn timeouts_are_capped_where_the_session_clock_stays_unambiguous() {
    let t = table(NatParams {
        timeouts: Timeouts {
            udp_unreplied: Duration::from_secs(100 * 24 * 60 * 60),
            ..Timeouts::default()
        },
        ..NatParams::default()
    });
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    let cap = MAX_TIMEOUT.as_millis() as u64;
    assert_eq!(t.expire(ms(cap)), 0);
    assert_eq!(t.expire(ms(cap + 1)), 1);
}

#[test]
fn session_is_not_translated_while_its_uplink_has_no_address() {
    let t = table(NatParams::default());
    let key = flow(PROTO_TCP, 40000, SERVER, 80);
    let tr = t.create_outbound(&key, A, ms(0), TCP_SYN, None).unwrap();
    // The moment inside `set_uplink_addr` between clearing the address and the flush.
    t.uplinks[0]
        .addr
        .0
        .store(encode_addr(None), Ordering::Release);
    assert_eq!(t.lookup_outbound(&key, ms(1), TCP_ACK, Some(1)), None);
    assert!(!inbound(&t, &key, &tr, ms(1), TCP_ACK));
    assert_eq!(
        t.create_outbound(&key, B, ms(1), TCP_SYN, None),
        Err(NatError::NoAddress)
    );
    assert!(t.sessions(None, ms(1)).is_empty());
    assert_eq!(
        t.count.load(Ordering::Acquire),
        1,
        "refused creation kept its slot"
    );
    assert_eq!(t.flush_uplink(A).0, 1);
    assert_eq!(t.count.load(Ordering::Acquire), 0);
}

#[test]
fn tcp_state_follows_the_flags() {
    let t = table(NatParams::default());
    let key = flow(PROTO_TCP, 40000, SERVER, 443);
    let tr = t.create_outbound(&key, A, ms(0), TCP_SYN, None).unwrap();
    assert_eq!(state_of(&t, &key), "syn");
    // The inside host's ACK alone does not establish: the remote has not answered.
    t.lookup_outbound(&key, ms(1), TCP_ACK, Some(5));
    assert_eq!(state_of(&t, &key), "syn");
    assert!(inbound(&t, &key, &tr, ms(2), TCP_SYN | TCP_ACK));
    assert_eq!(state_of(&t, &key), "established");
    t.lookup_outbound(&key, ms(3), TCP_ACK, Some(6));
    assert_eq!(state_of(&t, &key), "established");
    t.lookup_outbound(&key, ms(4), TCP_FIN | TCP_ACK, Some(7));
    assert_eq!(state_of(&t, &key), "closing");
    assert!(inbound(&t, &key, &tr, ms(5), TCP_ACK));
    assert_eq!(state_of(&t, &key), "closing", "an ACK does not reopen");
    // The inside host reuses the 4-tuple for a new connection.
    t.lookup_outbound(&key, ms(6), TCP_SYN, None);
    assert_eq!(state_of(&t, &key), "syn");
    assert!(inbound(&t, &key, &tr, ms(7), TCP_SYN | TCP_ACK));
    assert!(inbound(&t, &key, &tr, ms(8), TCP_RST));
    assert_eq!(state_of(&t, &key), "closing");
}

#[test]
fn session_created_by_a_fin_or_rst_is_closing() {
    let t = table(NatParams::default());
    let key = flow(PROTO_TCP, 40000, SERVER, 443);
    t.create_outbound(&key, A, ms(0), TCP_RST | TCP_ACK, Some(1))
        .unwrap();
    assert_eq!(state_of(&t, &key), "closing");
}

#[test]
fn full_table_refuses_new_flows_and_keeps_old_ones() {
    let t = table(NatParams {
        max_entries: 2,
        ..NatParams::default()
    });
    let k1 = flow(PROTO_UDP, 1, SERVER, 53);
    let k2 = flow(PROTO_TCP, 2, SERVER, 80);
    let k3 = flow(PROTO_UDP, 3, SERVER, 53);
    let t1 = t.create_outbound(&k1, A, ms(0), 0, None).unwrap();
    t.create_outbound(&k2, B, ms(0), TCP_SYN, None).unwrap();
    assert_eq!(
        t.create_outbound(&k3, A, ms(0), 0, None),
        Err(NatError::TableFull)
    );
    assert_eq!(
        t.create_outbound(&k3, A, ms(0), 0, None),
        Err(NatError::TableFull)
    );
    assert_eq!(t.counters().table_full, 2);
    assert_eq!(t.len(), 2);
    assert_eq!(t.lookup_outbound(&k1, ms(1), 0, None), Some(t1));
    assert!(inbound(&t, &k1, &t1, ms(1), 0));
    // Once a session expires there is room again.
    assert_eq!(t.expire(ms(30_002)), 1);
    assert!(t.create_outbound(&k3, A, ms(30_002), 0, None).is_ok());
}

#[test]
fn exhausted_port_range_refuses_new_endpoints_only() {
    let t = table(NatParams {
        port_min: 2000,
        port_max: 2001,
        ..NatParams::default()
    });
    let k1 = flow(PROTO_UDP, 1, SERVER, 53);
    let k2 = flow(PROTO_UDP, 2, SERVER, 53);
    let k3 = flow(PROTO_UDP, 3, SERVER, 53);
    let p1 = t
        .create_outbound(&k1, A, ms(0), 0, None)
        .unwrap()
        .outside_port;
    let p2 = t
        .create_outbound(&k2, A, ms(0), 0, None)
        .unwrap()
        .outside_port;
    let mut ports = [p1, p2];
    ports.sort_unstable();
    assert_eq!(ports, [2000, 2001]);
    assert_eq!(
        t.create_outbound(&k3, A, ms(0), 0, None),
        Err(NatError::PortsExhausted)
    );
    assert_eq!(t.counters().ports_exhausted, 1);
    // Other uplinks and protocols have their own ranges; known endpoints keep their mapping.
    assert!(t.create_outbound(&k3, B, ms(0), 0, None).is_ok());
    assert!(
        t.create_outbound(&flow(PROTO_TCP, 3, SERVER, 53), A, ms(0), TCP_SYN, None)
            .is_ok()
    );
    let k1_elsewhere = flow(PROTO_UDP, 1, SERVER, 54);
    assert_eq!(
        t.create_outbound(&k1_elsewhere, A, ms(0), 0, None)
            .map(|x| x.outside_port),
        Ok(p1)
    );
    assert_eq!(t.len(), 5);
}

#[test]
fn create_of_an_existing_flow_returns_it() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    let tr = t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    assert_eq!(t.create_outbound(&key, B, ms(1), 0, None), Ok(tr));
    assert_eq!(t.len(), 1);
    assert_eq!(t.len_by_uplink(), vec![1, 0]);
    assert_eq!(t.counters().created, 1);
}

#[test]
fn uplink_without_address_does_not_translate() {
    let t = NatTable::new(NatParams::default(), &[Some(ADDR_A), None]);
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    assert_eq!(
        t.create_outbound(&key, B, ms(0), 0, None),
        Err(NatError::NoAddress)
    );
    assert_eq!(
        t.create_outbound(&key, UplinkId(7), ms(0), 0, None),
        Err(NatError::NoAddress)
    );
    assert!(t.is_empty());
}

#[test]
fn flush_uplink_returns_tcp_sessions_with_their_last_ack() {
    let t = table(NatParams::default());
    let tcp = flow(PROTO_TCP, 40000, SERVER, 443);
    t.create_outbound(&tcp, A, ms(0), TCP_SYN, None).unwrap();
    t.lookup_outbound(&tcp, ms(1), TCP_ACK, Some(1000));
    t.lookup_outbound(&tcp, ms(2), TCP_ACK, Some(2500));
    t.lookup_outbound(&tcp, ms(3), TCP_ACK, None);
    let syn_only = flow(PROTO_TCP, 40001, SERVER, 443);
    t.create_outbound(&syn_only, A, ms(0), TCP_SYN, None)
        .unwrap();
    t.create_outbound(&flow(PROTO_UDP, 5000, SERVER, 53), A, ms(0), 0, None)
        .unwrap();
    let on_b = flow(PROTO_TCP, 40002, SERVER, 443);
    let tr_b = t
        .create_outbound(&on_b, B, ms(0), TCP_ACK, Some(9))
        .unwrap();

    let (removed, flushed) = t.flush_uplink(A);
    assert_eq!(removed, 3);
    assert_eq!(
        flushed,
        vec![FlushedTcp {
            key: tcp,
            uplink: A,
            inside_ack: 2500
        }]
    );
    assert_eq!(t.len_by_uplink(), vec![0, 1]);
    assert_eq!(t.counters().flushed, 3);
    assert_eq!(t.peek_outbound(&tcp), None);
    assert_eq!(t.peek_outbound(&on_b), Some(tr_b));
    assert!(inbound(&t, &on_b, &tr_b, ms(4), TCP_ACK));
}

#[test]
fn address_change_flushes_the_uplink() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    let on_b = flow(PROTO_UDP, 5001, SERVER, 53);
    t.create_outbound(&key, A, ms(0), 0, None).unwrap();
    t.create_outbound(&on_b, B, ms(0), 0, None).unwrap();
    t.set_uplink_addr(A, Some(ADDR_A));
    assert_eq!(t.len(), 2, "same address: nothing to flush");
    let new_addr = Ipv4Addr::new(100, 64, 0, 5);
    t.set_uplink_addr(A, Some(new_addr));
    assert_eq!(t.peek_outbound(&key), None);
    assert!(t.peek_outbound(&on_b).is_some());
    assert_eq!(
        t.create_outbound(&key, A, ms(1), 0, None).unwrap().outside,
        new_addr
    );
    t.set_uplink_addr(A, None);
    assert_eq!(t.len_by_uplink(), vec![0, 1]);
    assert_eq!(
        t.create_outbound(&key, A, ms(2), 0, None),
        Err(NatError::NoAddress)
    );
}

#[test]
fn sessions_lists_state_and_age() {
    let t = table(NatParams::default());
    let key = flow(PROTO_UDP, 5000, SERVER, 53);
    let tr = t.create_outbound(&key, A, ms(1000), 0, None).unwrap();
    t.create_outbound(&flow(PROTO_UDP, 5001, SERVER, 53), B, ms(0), 0, None)
        .unwrap();
    let on_a = t.sessions(Some(A), ms(11_000));
    assert_eq!(
        on_a,
        vec![SessionInfo {
            key,
            translation: tr,
            state: "udp-unreplied",
            idle: Duration::from_secs(10),
            expires_in: Duration::from_secs(20),
            forward: None,
        }]
    );
    assert_eq!(t.sessions(None, ms(11_000)).len(), 2);
}

#[test]
fn two_threads_create_and_look_up_concurrently() {
    let t = table(NatParams::default());
    std::thread::scope(|s| {
        for worker in 0..2u8 {
            let t = &t;
            s.spawn(move || {
                for i in 0..2000u16 {
                    // Both threads also race on the same flows (i % 50).
                    let remote = Ipv4Addr::new(172, 18, worker, (i % 200) as u8);
                    let key = flow(PROTO_TCP, 10_000 + i, remote, 443);
                    let shared = flow(PROTO_UDP, i % 50, SERVER, 53);
                    let tr = t
                        .create_outbound(&key, UplinkId(worker), ms(0), TCP_SYN, None)
                        .unwrap();
                    let st = t.create_outbound(&shared, A, ms(0), 0, None).unwrap();
                    assert_eq!(t.lookup_outbound(&key, ms(1), TCP_ACK, Some(1)), Some(tr));
                    assert_eq!(t.lookup_outbound(&shared, ms(1), 0, None), Some(st));
                    let back = t.lookup_inbound(
                        &inb(tr.uplink, PROTO_TCP, tr.outside_port, remote, 443),
                        ms(1),
                        0,
                    );
                    assert_eq!(back, Some(tr));
                }
            });
        }
    });
    assert_eq!(t.len(), 4000 + 50);
    assert_eq!(t.counters().created, 4050);
    assert_no_port_conflicts(&t);
}

/// No two live sessions on one uplink and protocol share an outside port for different inside
/// endpoints, and each inside endpoint has one outside port per uplink and protocol (EIM).
fn assert_no_port_conflicts(t: &NatTable) {
    let mut by_port = HashMap::new();
    let mut by_inside = HashMap::new();
    for s in t.sessions(None, ms(0)) {
        let tr = s.translation;
        let owner = by_port
            .entry((tr.uplink, s.key.proto, tr.outside_port))
            .or_insert((tr.inside, tr.inside_port));
        assert_eq!(*owner, (tr.inside, tr.inside_port), "outside port shared");
        let port = by_inside
            .entry((tr.uplink, s.key.proto, tr.inside, tr.inside_port))
            .or_insert(tr.outside_port);
        assert_eq!(*port, tr.outside_port, "mapping not endpoint-independent");
    }
}

/// 100k sessions, as the fast path would create them: the table's own estimate (hash buckets
/// with their control bytes, port bitmaps and mappings) divided by the session count.
#[test]
fn memory_per_session_is_at_most_128_bytes() {
    let t = NatTable::new(NatParams::default(), &[Some(ADDR_A), Some(ADDR_B)]);
    let sessions = 100_000u32;
    for i in 0..sessions {
        // 25,000 inside endpoints, 4 remotes each, over two uplinks and TCP/UDP.
        let endpoint = i / 4;
        let key = FlowKey {
            proto: if endpoint % 2 == 0 {
                PROTO_TCP
            } else {
                PROTO_UDP
            },
            inside: Ipv4Addr::from_bits(0xc0a8_0000 | (endpoint % 250)),
            inside_port: 10_000 + (endpoint / 250) as u16,
            remote: Ipv4Addr::from_bits(0xac12_0000 | (i % 4000)),
            remote_port: 443 + (i % 4) as u16,
        };
        let uplink = UplinkId((endpoint % 4 / 2) as u8);
        t.create_outbound(&key, uplink, ms(0), TCP_SYN, None)
            .unwrap();
    }
    assert_eq!(t.len(), sessions as usize);
    let per_session = t.memory_bytes() / sessions as usize;
    println!(
        "NAT memory: {per_session} bytes/session (entry sizes: out {} in {} bytes)",
        size_of::<(OutKey, Session)>(),
        size_of::<(InKey, Endpoint)>()
    );
    assert!(per_session <= 128, "{per_session} bytes per session");
    assert!(
        per_session >= size_of::<(OutKey, Session)>(),
        "estimate misses the entries"
    );
}

#[test]
fn table_entries_have_no_padding() {
    assert_eq!(size_of::<(OutKey, Session)>(), 26);
    assert_eq!(size_of::<(InKey, Endpoint)>(), 16);
    // A slot adds its distance byte (and the inbound one a byte of padding to its alignment).
    assert_eq!(size_of::<table::Slot<OutKey, Session>>(), 27);
    assert_eq!(size_of::<table::Slot<InKey, Endpoint>>(), 18);
    assert_eq!(size_of::<PaddedShard>(), 128);
}

#[test]
fn hash_table_estimate_follows_hashbrown_growth() {
    let mut m: HashMap<u64, u64> = HashMap::new();
    assert_eq!(hash_table_bytes::<u64, u64>(m.capacity()), 0);
    m.extend((0..1000).map(|i| (i, i)));
    // 1000 entries need 2048 buckets (1024 hold at most 896).
    assert_eq!(hash_table_bytes::<u64, u64>(m.capacity()), 2048 * 17 + 16);
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        inside: u8,
        port: u8,
        remote: u8,
        rport: u8,
        proto: u8,
        uplink: u8,
    },
    Outbound {
        inside: u8,
        port: u8,
        remote: u8,
        rport: u8,
        proto: u8,
    },
    Advance {
        secs: u16,
    },
    Flush {
        uplink: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let proto = prop::sample::select(vec![PROTO_TCP, PROTO_UDP, PROTO_ICMP]);
    // Small domains so flows, endpoints and remotes collide often.
    prop_oneof![
        6 => (0..4u8, 0..4u8, 0..4u8, 0..3u8, proto.clone(), 0..2u8).prop_map(
            |(inside, port, remote, rport, proto, uplink)| Op::Create { inside, port, remote, rport, proto, uplink }
        ),
        3 => (0..4u8, 0..4u8, 0..4u8, 0..3u8, proto).prop_map(
            |(inside, port, remote, rport, proto)| Op::Outbound { inside, port, remote, rport, proto }
        ),
        1 => (0..400u16).prop_map(|secs| Op::Advance { secs }),
        1 => (0..2u8).prop_map(|uplink| Op::Flush { uplink }),
    ]
}

fn prop_key(inside: u8, port: u8, remote: u8, rport: u8, proto: u8) -> FlowKey {
    FlowKey {
        proto,
        inside: Ipv4Addr::new(192, 168, 0, inside),
        inside_port: 1000 + u16::from(port),
        remote: Ipv4Addr::new(172, 18, 0, remote),
        remote_port: if proto == PROTO_ICMP {
            0
        } else {
            80 + u16::from(rport)
        },
    }
}

proptest! {
    #[test]
    fn translations_round_trip_and_never_share_ports(ops in prop::collection::vec(op(), 1..80)) {
        // A small range makes exhaustion and port reuse part of the search.
        let t = table(NatParams { port_min: 5000, port_max: 5009, ..NatParams::default() });
        let mut now = ms(0);
        for op in ops {
            let checked = match op {
                Op::Create { inside, port, remote, rport, proto, uplink } => {
                    let key = prop_key(inside, port, remote, rport, proto);
                    match t.create_outbound(&key, UplinkId(uplink), now, TCP_SYN, None) {
                        Ok(tr) => Some((key, tr)),
                        Err(e) => {
                            prop_assert_eq!(e, NatError::PortsExhausted);
                            None
                        }
                    }
                }
                Op::Outbound { inside, port, remote, rport, proto } => {
                    let key = prop_key(inside, port, remote, rport, proto);
                    t.lookup_outbound(&key, now, TCP_ACK, Some(1)).map(|tr| (key, tr))
                }
                Op::Advance { secs } => {
                    now = now + Duration::from_secs(u64::from(secs));
                    t.expire(now);
                    None
                }
                Op::Flush { uplink } => {
                    t.flush_uplink(UplinkId(uplink));
                    None
                }
            };
            if let Some((key, tr)) = checked {
                prop_assert_eq!((tr.inside, tr.inside_port), (key.inside, key.inside_port));
                let back = t.lookup_inbound(&inb(tr.uplink, key.proto, tr.outside_port, key.remote, key.remote_port), now, TCP_ACK);
                prop_assert_eq!(back, Some(tr));
                prop_assert_eq!(t.peek_outbound(&key), Some(tr));
            }
            assert_no_port_conflicts(&t);
            let sessions = t.sessions(None, now);
            prop_assert_eq!(sessions.len(), t.len());
            prop_assert_eq!(t.len_by_uplink().iter().sum::<usize>(), t.len());
        }
    }
}

/// TCP 8080 on A and B to HOST:80.
fn with_web_forward(params: NatParams) -> NatTable {
    table(params).with_forwards(vec![Forward {
        name: "web".into(),
        uplinks: vec![A, B],
        protocols: vec![PROTO_TCP],
        first: 8080,
        last: 8080,
        to: HOST,
        to_port: 80,
        allow: vec![],
    }])
}

#[test]
fn forwarded_sessions_live_and_die_with_their_uplink() {
    let t = with_web_forward(NatParams::default());
    let fwd = t.find_forward(B, PROTO_TCP, 8080).unwrap();
    let key = inb(B, PROTO_TCP, 8080, SERVER, 40000);
    let tr = t.create_inbound(&key, fwd, ms(0), TCP_SYN).unwrap();
    assert_eq!((tr.uplink, tr.outside, tr.outside_port), (B, ADDR_B, 8080));
    assert_eq!((tr.inside, tr.inside_port), (HOST, 80));
    // The server's replies find it as any session's.
    assert_eq!(
        t.lookup_outbound(
            &flow(PROTO_TCP, 80, SERVER, 40000),
            ms(1),
            TCP_SYN | TCP_ACK,
            Some(1)
        ),
        Some(tr)
    );
    assert_eq!(t.lookup_inbound(&key, ms(2), TCP_ACK), Some(tr));
    assert_eq!(
        state_of(&t, &flow(PROTO_TCP, 80, SERVER, 40000)),
        "established"
    );
    assert_eq!(t.flush_uplink(A).0, 0);
    // Routes withdrawn, link up: the forwarded session stays; an outbound one goes.
    // So does a LAN client's half of a hairpin flow (to B's own address).
    let out = flow(PROTO_UDP, 5000, SERVER, 53);
    t.create_outbound(&out, B, ms(3), 0, None).unwrap();
    let hairpin = flow(PROTO_TCP, 5555, ADDR_B, 8080);
    t.create_outbound(&hairpin, B, ms(3), TCP_SYN, None)
        .unwrap();
    assert_eq!(t.flush_outbound(B).0, 1);
    assert_eq!(state_of(&t, &out), "gone");
    assert_eq!(state_of(&t, &hairpin), "syn");
    // Carrier lost: it goes too.
    let (n, rst) = t.flush_uplink(B);
    assert_eq!((n, rst.len()), (2, 1), "flushed, and the server gets a RST");
    assert!(t.is_empty());
    assert_eq!(t.forward_stats()[0].hits, 1);
}

#[test]
fn the_pool_never_hands_out_a_forwarded_port() {
    let params = NatParams {
        port_min: 8080,
        port_max: 8081,
        ..NatParams::default()
    };
    let t = with_web_forward(params);
    let fwd = t.find_forward(A, PROTO_TCP, 8080).unwrap();
    let key = inb(A, PROTO_TCP, 8080, SERVER, 40000);
    t.create_inbound(&key, fwd, ms(0), TCP_SYN).unwrap();
    // The server's own outbound flow from port 80 takes the pool's one free port.
    let own = t
        .create_outbound(
            &flow(PROTO_TCP, 80, SERVER, 443),
            A,
            ms(20_000),
            TCP_SYN,
            None,
        )
        .unwrap();
    assert_eq!(own.outside_port, 8081);
    let other = flow(PROTO_TCP, 81, SERVER, 443);
    assert_eq!(
        t.create_outbound(&other, A, ms(20_000), TCP_SYN, None),
        Err(NatError::PortsExhausted)
    );
    // The forwarded session (SYN timeout 30 s) ends first; the server's mapping stays.
    assert_eq!(t.expire(ms(40_000)), 1);
    assert_eq!(
        t.create_outbound(&other, A, ms(40_000), TCP_SYN, None),
        Err(NatError::PortsExhausted)
    );
}

/// SPEC 35: one inside host holds at most `max_sessions_per_host` sessions; another host still
/// opens its own, and a removed session gives its host the room back.
#[test]
fn one_host_cannot_take_the_table() {
    let t = table(NatParams {
        max_entries: 100,
        max_sessions_per_host: 10,
        ..NatParams::default()
    });
    for port in 0..10 {
        assert!(
            t.create_outbound(&flow(PROTO_UDP, 1000 + port, SERVER, 53), A, ms(0), 0, None)
                .is_ok()
        );
    }
    let one_more = flow(PROTO_UDP, 2000, SERVER, 53);
    assert_eq!(
        t.create_outbound(&one_more, B, ms(0), 0, None),
        Err(NatError::HostQuota),
        "the quota spans the uplinks"
    );
    let other = FlowKey {
        inside: Ipv4Addr::new(192, 168, 0, 11),
        ..one_more
    };
    assert!(t.create_outbound(&other, A, ms(0), 0, None).is_ok());
    assert_eq!(t.len(), 11);
    t.flush_uplink(A);
    assert!(t.create_outbound(&one_more, A, ms(0), 0, None).is_ok());
}
