use proptest::prelude::*;

use super::*;

const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);
const SERVER: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0xbb, 1];
const OTHER: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0xbb, 2];
const SERVER_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xb1);

fn p6(s: &str) -> Ipv6Prefix {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn client() -> PdClient {
    PdClient::new(MAC, 7, Instant::ZERO)
}

fn sent(c: &mut PdClient) -> Vec<Message> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|p| Message::from_bytes(&p).unwrap())
        .collect()
}

fn events(c: &mut PdClient) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Fires the client's timer; returns when it fired.
fn fire(c: &mut PdClient) -> Instant {
    let at = c.poll_timeout().expect("a timer");
    c.handle_timeout(at);
    at
}

/// An IAPrefix: (prefix, preferred, valid).
fn iaprefix(p: &str, preferred: u32, valid: u32) -> DhcpOption {
    let p = p6(p);
    DhcpOption::IAPrefix(IAPrefix {
        preferred_lifetime: preferred,
        valid_lifetime: valid,
        prefix_len: p.prefix_len(),
        prefix_ip: p.addr(),
        opts: DhcpOptions::new(),
    })
}

fn status(s: Status) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status: s,
        msg: String::new(),
    })
}

/// A server message answering `req`: same xid and client id, `server`'s id, an IA_PD with
/// `t1`/`t2` holding `inner`.
fn answer(
    req: &Message,
    kind: MessageType,
    server: &[u8],
    t: (u32, u32),
    inner: Vec<DhcpOption>,
) -> Vec<u8> {
    let mut m = Message::new(kind);
    m.set_xid_num(req.xid_num());
    let o = m.opts_mut();
    if let Some(id) = req.opts().get(OptionCode::ClientId) {
        o.insert(id.clone());
    }
    o.insert(DhcpOption::ServerId(server.to_vec()));
    let mut ia = DhcpOptions::new();
    for i in inner {
        ia.insert(i);
    }
    o.insert(DhcpOption::IAPD(IAPD {
        id: IAID,
        t1: t.0,
        t2: t.1,
        opts: ia,
    }));
    m.to_vec().unwrap()
}

fn delegating(req: &Message, kind: MessageType, server: &[u8], prefix: &str) -> Vec<u8> {
    answer(req, kind, server, (10, 16), vec![iaprefix(prefix, 20, 20)])
}

fn one(c: &mut PdClient) -> Message {
    let mut v = sent(c);
    assert_eq!(v.len(), 1, "one message sent");
    v.remove(0)
}

/// Drives a client to Bound with 2001:db8:b::/48 (T1 10 s, T2 16 s, valid 20 s).
fn bound() -> (PdClient, Instant) {
    let mut c = client();
    fire(&mut c);
    let sol = one(&mut c);
    c.handle_packet(
        &delegating(&sol, MessageType::Advertise, SERVER, "2001:db8:b::/48"),
        SERVER_LL,
        Instant::from_millis(1100),
    );
    fire(&mut c);
    let req = one(&mut c);
    let at = c.poll_timeout().unwrap();
    let reply = delegating(&req, MessageType::Reply, SERVER, "2001:db8:b::/48");
    c.handle_packet(&reply, SERVER_LL, at);
    events(&mut c);
    let acquired = c.delegation().unwrap().acquired;
    (c, acquired)
}

fn ia_prefixes(m: &Message) -> Vec<Ipv6Prefix> {
    let Some(DhcpOption::IAPD(ia)) = m.opts().get(OptionCode::IAPD) else {
        panic!("no IA_PD in {m:?}");
    };
    ia.opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAPrefix(p) => Some(Ipv6Prefix::new(p.prefix_ip, p.prefix_len).unwrap()),
            _ => None,
        })
        .collect()
}

fn server_id(m: &Message) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::ServerId) {
        Some(DhcpOption::ServerId(id)) => Some(id.clone()),
        _ => None,
    }
}

#[test]
fn solicit_advertise_request_reply_delegates() {
    let mut c = client();
    assert_eq!(c.state(), State::Init);
    let first = fire(&mut c);
    assert!(
        first <= Instant::ZERO + SOL_MAX_DELAY,
        "first Solicit within SOL_MAX_DELAY"
    );
    let sol = one(&mut c);
    assert_eq!(sol.msg_type(), MessageType::Solicit);
    assert_eq!(
        sol.opts().get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 0x0b])),
        "DUID-LL of the uplink MAC"
    );
    assert_eq!(
        sol.opts().get(OptionCode::ElapsedTime),
        Some(&DhcpOption::ElapsedTime(0))
    );
    assert!(ia_prefixes(&sol).is_empty());
    assert_eq!(server_id(&sol), None);
    // The first RT is above IRT (RFC 8415 §15): Advertises are collected for it.
    let rt = c.poll_timeout().unwrap().saturating_since(first);
    assert!(rt > SOL_TIMEOUT && rt <= SOL_TIMEOUT * 11 / 10, "{rt:?}");
    c.handle_packet(
        &delegating(&sol, MessageType::Advertise, OTHER, "2001:db8:c::/48"),
        SERVER_LL,
        first,
    );
    let mut better = Message::from_bytes(&delegating(
        &sol,
        MessageType::Advertise,
        SERVER,
        "2001:db8:b::/48",
    ))
    .unwrap();
    better.opts_mut().insert(DhcpOption::Preference(10));
    c.handle_packet(&better.to_vec().unwrap(), SERVER_LL, first);
    assert_eq!(c.state(), State::Soliciting, "still collecting");
    assert!(sent(&mut c).is_empty());
    let at = fire(&mut c);
    assert_eq!(c.state(), State::Requesting);
    let req = one(&mut c);
    assert_eq!(req.msg_type(), MessageType::Request);
    assert_ne!(req.xid_num(), sol.xid_num(), "a new transaction");
    assert_eq!(
        server_id(&req).as_deref(),
        Some(SERVER),
        "the preferred server"
    );
    assert_eq!(ia_prefixes(&req), vec![p6("2001:db8:b::/48")]);
    let reply = delegating(&req, MessageType::Reply, SERVER, "2001:db8:b::/48");
    c.handle_packet(&reply, SERVER_LL, at + Duration::from_millis(5));
    assert_eq!(c.state(), State::Bound);
    let d = c.delegation().unwrap().clone();
    assert_eq!(events(&mut c), vec![Event::Delegated(d.clone())]);
    assert_eq!(d.prefix, p6("2001:db8:b::/48"));
    assert_eq!(
        (d.t1, d.t2, d.valid, d.preferred),
        (secs(10), secs(16), secs(20), secs(20))
    );
    assert_eq!(d.server_id, SERVER);
    assert_eq!(d.server_addr, SERVER_LL);
    assert_eq!(d.acquired, at, "timers count from the Request");
    assert_eq!(c.poll_timeout(), Some(at + secs(10)), "next: T1");
    let n = c.counters();
    assert_eq!(
        (n.solicits, n.advertises, n.requests, n.replies, n.ignored()),
        (1, 2, 1, 1, 0)
    );
}

#[test]
fn preference_255_requests_at_once() {
    let mut c = client();
    let at = fire(&mut c);
    let sol = one(&mut c);
    let mut m = Message::from_bytes(&delegating(
        &sol,
        MessageType::Advertise,
        SERVER,
        "2001:db8:b::/48",
    ))
    .unwrap();
    m.opts_mut().insert(DhcpOption::Preference(255));
    c.handle_packet(&m.to_vec().unwrap(), SERVER_LL, at);
    assert_eq!(c.state(), State::Requesting);
    assert_eq!(one(&mut c).msg_type(), MessageType::Request);
}

#[test]
fn renew_at_t1_to_the_server() {
    let (mut c, acquired) = bound();
    let at = fire(&mut c);
    assert_eq!(at, acquired + secs(10));
    assert_eq!(c.state(), State::Renewing);
    let ren = one(&mut c);
    assert_eq!(ren.msg_type(), MessageType::Renew);
    assert_eq!(server_id(&ren).as_deref(), Some(SERVER));
    assert_eq!(ia_prefixes(&ren), vec![p6("2001:db8:b::/48")]);
    let reply = delegating(&ren, MessageType::Reply, SERVER, "2001:db8:b::/48");
    c.handle_packet(&reply, SERVER_LL, at);
    assert_eq!(c.state(), State::Bound);
    let d = c.delegation().unwrap().clone();
    assert_eq!(events(&mut c), vec![Event::Renewed(d.clone())]);
    assert_eq!(d.acquired, at);
    assert_eq!(c.poll_timeout(), Some(at + secs(10)));
}

#[test]
fn rebind_at_t2_to_any_server_then_expiry_withdraws() {
    let (mut c, acquired) = bound();
    fire(&mut c);
    assert_eq!(one(&mut c).msg_type(), MessageType::Renew);
    // REN_TIMEOUT is 10 s, T2 6 s later: the next event is T2, not a retransmission.
    let at = fire(&mut c);
    assert_eq!(at, acquired + secs(16));
    assert_eq!(c.state(), State::Rebinding);
    let reb = one(&mut c);
    assert_eq!(reb.msg_type(), MessageType::Rebind);
    assert_eq!(server_id(&reb), None, "Rebind goes to any server");
    assert_eq!(ia_prefixes(&reb), vec![p6("2001:db8:b::/48")]);
    assert_eq!(
        events(&mut c),
        vec![Event::Rebinding {
            prefix: p6("2001:db8:b::/48")
        }]
    );
    let at = fire(&mut c);
    assert_eq!(at, acquired + secs(20), "expiry caps the retransmission");
    assert_eq!(
        events(&mut c),
        vec![Event::Lost {
            prefix: p6("2001:db8:b::/48")
        }]
    );
    assert_eq!(c.delegation(), None);
    assert_eq!(c.state(), State::Soliciting);
    assert_eq!(one(&mut c).msg_type(), MessageType::Solicit);
}

#[test]
fn rebind_answered_by_another_server() {
    let (mut c, _) = bound();
    fire(&mut c);
    sent(&mut c);
    let at = fire(&mut c);
    let reb = one(&mut c);
    events(&mut c);
    c.handle_packet(
        &delegating(&reb, MessageType::Reply, OTHER, "2001:db8:b::/48"),
        SERVER_LL,
        at,
    );
    assert_eq!(c.state(), State::Bound);
    assert!(matches!(&events(&mut c)[..], [Event::Renewed(d)] if d.server_id == OTHER));
    // The next Renew goes to the server that answered.
    fire(&mut c);
    assert_eq!(server_id(&one(&mut c)).as_deref(), Some(OTHER));
}

#[test]
fn renumbering_loses_the_old_prefix_and_delegates_the_new() {
    let (mut c, _) = bound();
    let at = fire(&mut c);
    let ren = one(&mut c);
    // What Kea sends when its pool moved: the old prefix with lifetimes 0 beside the new one.
    let reply = answer(
        &ren,
        MessageType::Reply,
        SERVER,
        (10, 16),
        vec![
            iaprefix("2001:db8:b::/48", 0, 0),
            iaprefix("2001:db8:bb::/48", 20, 20),
        ],
    );
    c.handle_packet(&reply, SERVER_LL, at);
    let ev = events(&mut c);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(
        ev[0],
        Event::Lost {
            prefix: p6("2001:db8:b::/48")
        }
    );
    assert!(matches!(&ev[1], Event::Delegated(d) if d.prefix == p6("2001:db8:bb::/48")));
    assert_eq!(c.delegation().unwrap().prefix, p6("2001:db8:bb::/48"));
}

#[test]
fn withdrawn_with_valid_zero_is_lost_at_once() {
    let (mut c, _) = bound();
    let at = fire(&mut c);
    let ren = one(&mut c);
    let reply = answer(
        &ren,
        MessageType::Reply,
        SERVER,
        (0, 0),
        vec![iaprefix("2001:db8:b::/48", 0, 0)],
    );
    c.handle_packet(&reply, SERVER_LL, at);
    assert_eq!(
        events(&mut c),
        vec![Event::Lost {
            prefix: p6("2001:db8:b::/48")
        }]
    );
    assert_eq!(c.state(), State::Soliciting);
    assert_eq!(one(&mut c).msg_type(), MessageType::Solicit);
}

#[test]
fn no_prefix_avail() {
    let mut c = client();
    let at = fire(&mut c);
    let sol = one(&mut c);
    // In an Advertise: ignored, soliciting goes on.
    c.handle_packet(
        &answer(
            &sol,
            MessageType::Advertise,
            SERVER,
            (0, 0),
            vec![status(Status::NoPrefixAvail)],
        ),
        SERVER_LL,
        at,
    );
    assert_eq!(c.counters().unusable, 1);
    fire(&mut c);
    assert_eq!(c.state(), State::Soliciting);
    let sol = one(&mut c);
    assert_eq!(sol.msg_type(), MessageType::Solicit);
    assert!(
        matches!(sol.opts().get(OptionCode::ElapsedTime), Some(DhcpOption::ElapsedTime(e)) if *e > 0),
        "a retransmission says how long the exchange has run"
    );
    // After the first RT an Advertise is requested from at once; a NoPrefixAvail in the
    // Reply to the Request: back to soliciting.
    c.handle_packet(
        &delegating(&sol, MessageType::Advertise, SERVER, "2001:db8:b::/48"),
        SERVER_LL,
        at,
    );
    let req = one(&mut c);
    assert_eq!(req.msg_type(), MessageType::Request);
    c.handle_packet(
        &answer(
            &req,
            MessageType::Reply,
            SERVER,
            (0, 0),
            vec![status(Status::NoPrefixAvail)],
        ),
        SERVER_LL,
        at,
    );
    assert_eq!(c.state(), State::Soliciting);
    assert_eq!(one(&mut c).msg_type(), MessageType::Solicit);
    assert_eq!(c.delegation(), None);
    assert!(events(&mut c).is_empty());
}

#[test]
fn no_binding_to_a_renew_requests_again() {
    let (mut c, _) = bound();
    let at = fire(&mut c);
    let ren = one(&mut c);
    c.handle_packet(
        &answer(
            &ren,
            MessageType::Reply,
            SERVER,
            (0, 0),
            vec![status(Status::NoBinding)],
        ),
        SERVER_LL,
        at,
    );
    assert_eq!(c.state(), State::Requesting);
    let req = one(&mut c);
    assert_eq!(req.msg_type(), MessageType::Request);
    assert_eq!(ia_prefixes(&req), vec![p6("2001:db8:b::/48")]);
    assert!(
        c.delegation().is_some(),
        "kept until the server answers or it expires"
    );
    c.handle_packet(
        &delegating(&req, MessageType::Reply, SERVER, "2001:db8:b::/48"),
        SERVER_LL,
        at,
    );
    assert!(matches!(&events(&mut c)[..], [Event::Renewed(_)]));
}

#[test]
fn unexpected_and_malformed_messages_are_ignored_and_counted() {
    let (mut c, _) = bound();
    let at = fire(&mut c);
    let ren = one(&mut c);
    let before = c.delegation().cloned();
    let good = delegating(&ren, MessageType::Reply, SERVER, "2001:db8:c::/48");
    c.handle_packet(&[1, 2, 3], SERVER_LL, at);
    c.handle_packet(&vec![0u8; 1600], SERVER_LL, at);
    assert_eq!(c.counters().malformed, 2);
    let mut other_xid = Message::from_bytes(&good).unwrap();
    other_xid.set_xid_num(ren.xid_num() ^ 1);
    c.handle_packet(&other_xid.to_vec().unwrap(), SERVER_LL, at);
    let mut other_client = Message::from_bytes(&good).unwrap();
    other_client
        .opts_mut()
        .insert(DhcpOption::ClientId(vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9]));
    c.handle_packet(&other_client.to_vec().unwrap(), SERVER_LL, at);
    // An Advertise while renewing; a Reply to the Renew from another server.
    c.handle_packet(
        &delegating(&ren, MessageType::Advertise, SERVER, "2001:db8:c::/48"),
        SERVER_LL,
        at,
    );
    c.handle_packet(
        &delegating(&ren, MessageType::Reply, OTHER, "2001:db8:c::/48"),
        SERVER_LL,
        at,
    );
    // A client message looped back.
    c.handle_packet(&ren.to_vec().unwrap(), SERVER_LL, at);
    assert_eq!(c.counters().not_ours, 5);
    let mut no_server = Message::from_bytes(&good).unwrap();
    no_server.opts_mut().remove(OptionCode::ServerId);
    c.handle_packet(&no_server.to_vec().unwrap(), SERVER_LL, at);
    // T1 above T2: the IA_PD is discarded (RFC 8415 §21.21); a link-local prefix is unusable.
    c.handle_packet(
        &answer(
            &ren,
            MessageType::Reply,
            SERVER,
            (20, 10),
            vec![iaprefix("2001:db8:c::/48", 20, 20)],
        ),
        SERVER_LL,
        at,
    );
    c.handle_packet(
        &answer(
            &ren,
            MessageType::Reply,
            SERVER,
            (10, 16),
            vec![iaprefix("fe80::/48", 20, 20)],
        ),
        SERVER_LL,
        at,
    );
    c.handle_packet(
        &answer(
            &ren,
            MessageType::Reply,
            SERVER,
            (10, 16),
            vec![iaprefix("2001:db8:c::/48", 30, 20)],
        ),
        SERVER_LL,
        at,
    );
    assert_eq!(c.counters().unusable, 4);
    assert_eq!(c.state(), State::Renewing);
    assert_eq!(c.delegation().cloned(), before);
    assert!(events(&mut c).is_empty());
    assert_eq!(c.counters().replies, 1, "only the first Reply counted");
}

#[test]
fn retransmission_backs_off_to_a_bound() {
    let mut c = client();
    let mut last = fire(&mut c);
    let mut rts = Vec::new();
    for _ in 0..12 {
        let at = fire(&mut c);
        rts.push(at.saturating_since(last));
        last = at;
    }
    assert_eq!(c.counters().solicits, 13);
    for w in rts.windows(2) {
        let (a, b) = (w[0].as_secs_f64(), w[1].as_secs_f64());
        assert!(
            b >= (2.0 * a - 0.1 * a).min(SOL_MAX_RT.as_secs_f64() * 0.9) - 0.002,
            "{rts:?}"
        );
    }
    let top = *rts.iter().max().unwrap();
    assert!(
        top <= SOL_MAX_RT * 11 / 10 && top >= SOL_MAX_RT * 9 / 10,
        "{rts:?}"
    );
}

#[test]
fn request_gives_up_after_req_max_rc() {
    let mut c = client();
    let at = fire(&mut c);
    let sol = one(&mut c);
    c.handle_packet(
        &delegating(&sol, MessageType::Advertise, SERVER, "2001:db8:b::/48"),
        SERVER_LL,
        at,
    );
    fire(&mut c);
    for _ in 1..REQ_MAX_RC {
        fire(&mut c);
    }
    assert_eq!(c.counters().requests, u64::from(REQ_MAX_RC));
    fire(&mut c);
    assert_eq!(c.state(), State::Soliciting);
    assert_eq!(c.counters().solicits, 2);
}

#[test]
fn duid_is_stable_for_a_mac() {
    let a = PdClient::new(MAC, 1, Instant::ZERO);
    let b = PdClient::new(MAC, 2, Instant::from_millis(99_999));
    assert_eq!(a.duid(), b.duid());
    assert_eq!(a.duid(), duid_ll(MAC));
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_change_a_delegation(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (mut c, at) = bound();
        let before = c.delegation().cloned();
        let counted = c.counters().ignored();
        c.handle_packet(&bytes, SERVER_LL, at);
        prop_assert_eq!(c.delegation().cloned(), before);
        prop_assert_eq!(c.counters().ignored(), counted + 1);
        prop_assert!(events(&mut c).is_empty());
    }
}
