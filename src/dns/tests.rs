use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use proptest::prelude::*;

use super::*;

const ISP_A: UplinkId = UplinkId(0);
const ISP_B: UplinkId = UplinkId(1);
const RES_A1: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 53);
const RES_A2: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 54);
const RES_B: Ipv4Addr = Ipv4Addr::new(100, 64, 2, 53);

fn cfg() -> DnsConfig {
    DnsConfig {
        cache_entries: 4,
        cache_bytes: 4096,
        rate: 10,
        burst: 5,
        timeout: Duration::from_secs(2),
    }
}

fn fwd() -> Forwarder {
    let mut f = Forwarder::new(cfg(), 42);
    f.set_upstream(Some((ISP_A, vec![RES_A1, RES_A2])), Instant::ZERO);
    f
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn host(n: u8) -> Client {
    Client {
        addr: SocketAddr::new(Ipv4Addr::new(192, 168, 0, n).into(), 40000 + u16::from(n)),
        server: Ipv4Addr::new(192, 168, 0, 1).into(),
    }
}

fn question(name: &str) -> Query {
    Query::query(Name::from_ascii(name).unwrap(), RecordType::A)
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(question(name));
    m.to_vec().unwrap()
}

/// The resolver's answer to `upstream` (a query as forwarded) with one A record.
fn answer(upstream: &[u8], ttl: u32, tc: bool) -> Vec<u8> {
    let q = Message::from_vec(upstream).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.truncation = tc;
    m.add_query(q.queries[0].clone());
    let mut r = Record::from_rdata(
        q.queries[0].name.clone(),
        ttl,
        RData::A(A(Ipv4Addr::new(203, 0, 113, 7))),
    );
    r.dns_class = DNSClass::IN;
    m.add_answer(r);
    m.to_vec().unwrap()
}

fn out(f: &mut Forwarder) -> Vec<Transmit> {
    std::iter::from_fn(|| f.poll_transmit()).collect()
}

fn upstream(f: &mut Forwarder) -> (UplinkId, Ipv4Addr, Vec<u8>) {
    match &out(f)[..] {
        [
            Transmit::Upstream {
                uplink,
                server,
                payload,
            },
        ] => (*uplink, *server, payload.clone()),
        o => panic!("expected one upstream query: {o:?}"),
    }
}

fn to_client(f: &mut Forwarder) -> (Client, Message) {
    match &out(f)[..] {
        [Transmit::Client { dst, payload }] => (*dst, Message::from_vec(payload).unwrap()),
        o => panic!("expected one answer to a client: {o:?}"),
    }
}

#[test]
fn forwards_with_a_new_id_and_answers_from_the_cache_with_aged_ttls() {
    let mut f = fwd();
    f.handle_query(host(10), &query(0x1234, "example.com."), t(0));
    let (uplink, server, q) = upstream(&mut f);
    assert_eq!((uplink, server), (ISP_A, RES_A1));
    let up_id = u16::from_be_bytes([q[0], q[1]]);
    assert_ne!(up_id, 0x1234, "the id is rewritten");
    assert_eq!(
        q[2..],
        query(0x1234, "example.com.")[2..],
        "the rest is unchanged"
    );
    f.handle_response(ISP_A, RES_A1, &answer(&q, 300, false), t(30));
    let (dst, m) = to_client(&mut f);
    assert_eq!(dst, host(10));
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.answers[0].ttl, 300);
    // 100 s later another client asks: answered from the cache, TTL lowered.
    f.handle_query(host(11), &query(0x9999, "EXAMPLE.com."), t(100_030));
    let (dst, m) = to_client(&mut f);
    assert_eq!((dst, m.metadata.id), (host(11), 0x9999));
    assert_eq!(m.answers[0].ttl, 200);
    assert_eq!(f.counters().cache_hits, 1);
    // After the TTL the resolver is asked again.
    f.handle_query(host(11), &query(0x9998, "example.com."), t(300_030));
    upstream(&mut f);
}

#[test]
fn failover_moves_queries_to_the_new_uplinks_resolvers_at_once() {
    let mut f = fwd();
    f.handle_query(host(10), &query(1, "a.example."), t(0));
    let (_, _, qa) = upstream(&mut f);
    f.handle_response(ISP_A, RES_A1, &answer(&qa, 300, false), t(10));
    out(&mut f);
    f.handle_query(host(10), &query(2, "b.example."), t(20));
    upstream(&mut f);
    // The default route moves to ISP B: the pending query is resent there now.
    f.set_upstream(Some((ISP_B, vec![RES_B])), t(30));
    let (uplink, server, qb) = upstream(&mut f);
    assert_eq!((uplink, server), (ISP_B, RES_B));
    // ISP A's resolver answering late is not believed.
    f.handle_response(ISP_A, RES_A1, &answer(&qb, 300, false), t(40));
    assert!(out(&mut f).is_empty());
    assert_eq!(f.counters().unmatched, 1);
    f.handle_response(ISP_B, RES_B, &answer(&qb, 300, false), t(50));
    assert_eq!(to_client(&mut f).1.metadata.id, 2);
    // The cache was flushed: a.example is asked again, through ISP B.
    assert_eq!(f.cache_len(), 1, "only b.example, answered through B");
    f.handle_query(host(10), &query(3, "a.example."), t(60));
    assert_eq!(upstream(&mut f).0, ISP_B);
}

#[test]
fn unanswered_queries_try_each_resolver_then_get_servfail() {
    let mut f = fwd();
    f.handle_query(host(10), &query(7, "slow.example."), t(0));
    let mut servers = vec![upstream(&mut f).1];
    let mut now = t(0);
    while let Some(at) = f.poll_timeout() {
        assert_eq!(at - now, Duration::from_secs(2), "each try waits `timeout`");
        now = at;
        f.handle_timeout(now);
        match &out(&mut f)[..] {
            [Transmit::Upstream { server, .. }] => servers.push(*server),
            [Transmit::Client { payload, .. }] => {
                let m = Message::from_vec(payload).unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
                assert_eq!(m.metadata.id, 7);
                assert_eq!(m.queries[0], question("slow.example."));
            }
            o => panic!("{o:?}"),
        }
    }
    assert_eq!(servers, vec![RES_A1, RES_A2, RES_A1, RES_A2]);
    assert_eq!(f.counters().timeouts, 1);
    assert_eq!(f.pending_len(), 0);
}

#[test]
fn truncated_answers_reach_the_client_and_are_not_cached() {
    let mut f = fwd();
    f.handle_query(host(10), &query(5, "big.example."), t(0));
    let (_, _, q) = upstream(&mut f);
    f.handle_response(ISP_A, RES_A1, &answer(&q, 300, true), t(5));
    let (_, m) = to_client(&mut f);
    assert!(m.metadata.truncation);
    assert_eq!(f.cache_len(), 0);
    assert_eq!(f.counters().truncated, 1);
}

#[test]
fn a_refusing_resolver_is_followed_by_the_next() {
    let mut f = fwd();
    f.handle_query(host(10), &query(5, "x.example."), t(0));
    let (_, _, q) = upstream(&mut f);
    let mut refused = Message::from_vec(&answer(&q, 300, false)).unwrap();
    refused.metadata.response_code = ResponseCode::Refused;
    refused.answers.clear();
    f.handle_response(ISP_A, RES_A1, &refused.to_vec().unwrap(), t(5));
    let (_, server, q2) = upstream(&mut f);
    assert_eq!(server, RES_A2);
    f.handle_response(ISP_A, RES_A2, &answer(&q2, 60, false), t(6));
    assert_eq!(to_client(&mut f).1.answers.len(), 1);
}

#[test]
fn spoofed_and_stray_answers_are_ignored() {
    let mut f = fwd();
    f.handle_query(host(10), &query(5, "x.example."), t(0));
    let (_, _, q) = upstream(&mut f);
    let other_question = answer(
        &[&q[..2], &query(0, "y.example.")[2..]].concat(),
        300,
        false,
    );
    let mut other_id = answer(&q, 300, false);
    other_id[0] ^= 0xff;
    for (uplink, server, payload) in [
        (ISP_A, RES_B, answer(&q, 300, false)),
        (ISP_B, RES_A1, answer(&q, 300, false)),
        (ISP_A, RES_A1, other_question),
        (ISP_A, RES_A1, other_id),
        (ISP_A, RES_A1, q.clone()),
        (ISP_A, RES_A1, vec![1, 2, 3]),
    ] {
        f.handle_response(uplink, server, &payload, t(1));
    }
    assert!(out(&mut f).is_empty());
    assert_eq!(f.counters().unmatched, 6);
    assert_eq!(f.pending_len(), 1);
}

#[test]
fn without_an_upstream_clients_get_servfail_at_once() {
    let mut f = Forwarder::new(cfg(), 1);
    f.handle_query(host(10), &query(9, "x.example."), t(0));
    let (_, m) = to_client(&mut f);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(f.counters().no_upstream, 1);
    // An uplink without resolvers is no upstream either.
    f.set_upstream(Some((ISP_A, vec![])), t(1));
    f.handle_query(host(10), &query(9, "x.example."), t(1));
    assert_eq!(
        to_client(&mut f).1.metadata.response_code,
        ResponseCode::ServFail
    );
}

#[test]
fn each_client_is_rate_limited() {
    let mut f = fwd();
    for i in 0..8 {
        f.handle_query(host(10), &query(i, "r.example."), t(0));
    }
    assert_eq!(out(&mut f).len(), 5, "the burst");
    assert_eq!(f.counters().rate_limited, 3);
    // Another client is not affected; the first one gets 10/s back.
    f.handle_query(host(11), &query(1, "r.example."), t(0));
    assert_eq!(out(&mut f).len(), 1);
    for i in 0..3 {
        f.handle_query(host(10), &query(100 + i, "r.example."), t(200));
    }
    assert_eq!(out(&mut f).len(), 2, "200 ms at 10/s");
}

#[test]
fn malformed_queries_are_dropped() {
    let mut f = fwd();
    let mut two = Message::from_vec(&query(1, "a.example.")).unwrap();
    two.add_query(question("b.example."));
    let mut response = Message::from_vec(&query(1, "a.example.")).unwrap();
    response.metadata.message_type = MessageType::Response;
    for p in [
        vec![0u8; 5],
        two.to_vec().unwrap(),
        response.to_vec().unwrap(),
        vec![0xff; 5000],
    ] {
        f.handle_query(host(10), &p, t(0));
    }
    assert!(out(&mut f).is_empty());
    assert_eq!(f.counters().malformed, 4);
}

#[test]
fn the_cache_is_bounded_in_entries_and_bytes() {
    let mut f = fwd();
    for (i, now) in (0..10u16).zip((0..).map(|s| t(s * 1000))) {
        let name = format!("n{i}.example.");
        f.handle_query(host(10), &query(i, &name), now);
        let (_, _, q) = upstream(&mut f);
        f.handle_response(ISP_A, RES_A1, &answer(&q, 600, false), now);
        out(&mut f);
        assert!(f.cache_len() <= 4);
        assert!(f.cache_bytes <= 4096);
    }
    // The oldest went first: n9 is cached, n0 is not.
    f.handle_query(host(12), &query(1, "n9.example."), t(20_000));
    assert!(matches!(out(&mut f)[..], [Transmit::Client { .. }]));
    f.handle_query(host(12), &query(1, "n0.example."), t(20_000));
    assert!(matches!(out(&mut f)[..], [Transmit::Upstream { .. }]));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_grow_state(
        inputs in proptest::collection::vec(
            (any::<bool>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 1..60),
    ) {
        let mut f = fwd();
        for (i, (is_query, who, mut bytes)) in inputs.into_iter().enumerate() {
            let now = t(i as u64 * 100);
            if is_query {
                // Half of the queries are real ones with random trailing bytes.
                if who % 2 == 0 {
                    bytes = [query(u16::from(who), "p.example."), bytes].concat();
                }
                f.handle_query(host(who), &bytes, now);
            } else {
                f.handle_response(ISP_A, RES_A1, &bytes, now);
            }
            f.handle_timeout(now);
            while f.poll_transmit().is_some() {}
            prop_assert!(f.pending_len() <= MAX_PENDING);
            prop_assert!(f.cache_len() <= 4 && f.cache_bytes <= 4096);
            prop_assert!(f.buckets.len() <= ratelimit::MAX_CLIENTS);
        }
    }
}
