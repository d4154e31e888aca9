//! Every transition and timer of RFC 5798 §6.4 on a simulated clock, then two engines talking
//! to each other over a simulated LAN.

use super::*;
use crate::config::VrrpTrack;
use crate::wire::arp::ArpPacket;
use crate::wire::ethernet::{self, EthernetFrame};

const ME: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 3);
const LOW_PEER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const VRID: u8 = 51;

fn cfg(priority: u8) -> VrrpConfig {
    VrrpConfig {
        vrid: VRID,
        addresses: vec![VIP],
        priority,
        advert_interval_cs: 100,
        preempt: true,
        preempt_delay: Duration::ZERO,
        tracks: vec![],
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// One nanosecond before `t`.
fn before(t: Instant) -> Instant {
    Instant::from_nanos(t.as_nanos() - 1)
}

fn started(cfg: VrrpConfig, now: Instant) -> Vrrp {
    let mut v = Vrrp::new(vec![cfg], ME);
    v.startup(now);
    v
}

/// The IPv4 packet of an advertisement from `src`.
fn advert(src: Ipv4Addr, priority: u8, interval_cs: u16) -> Vec<u8> {
    let repr = VrrpRepr {
        vrid: VRID,
        priority,
        max_adver_int: interval_cs,
        addrs: vec![VIP],
    };
    let mut frame = vec![0u8; repr.frame_len()];
    repr.build_frame(&mut frame, src).unwrap();
    frame.split_off(ethernet::HEADER_LEN)
}

/// What a frame the engine sent is.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Advert { priority: u8 },
    GratuitousArp(Ipv4Addr),
}

fn sent(v: &mut Vrrp) -> Vec<Sent> {
    std::iter::from_fn(|| v.poll_transmit())
        .map(|frame| {
            let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
            assert_eq!(eth.src(), vrrp::virtual_mac(VRID));
            if eth.ethertype() == ethernet::ethertype::ARP {
                let a = ArpPacket::new_checked(eth.payload()).unwrap();
                assert_eq!(eth.dst(), MacAddr::BROADCAST);
                assert_eq!(a.sender_ip(), a.target_ip());
                assert_eq!(a.sender_mac(), vrrp::virtual_mac(VRID));
                return Sent::GratuitousArp(a.sender_ip());
            }
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert_eq!((ip.src(), ip.ttl()), (ME, 255));
            let (_, repr) = parse(eth.payload()).unwrap();
            Sent::Advert {
                priority: repr.priority,
            }
        })
        .collect()
}

fn events(v: &mut Vrrp) -> Vec<VrrpEvent> {
    std::iter::from_fn(|| v.poll_event()).collect()
}

fn state(v: &Vrrp) -> VrrpState {
    v.status()[0].state
}

fn change(from: VrrpState, to: VrrpState, cause: Cause) -> VrrpEvent {
    VrrpEvent::StateChange {
        vrid: VRID,
        from,
        to,
        cause,
    }
}

use VrrpState::{Backup, Initialize, Master};

#[test]
fn timers_follow_the_rfc_formulas() {
    // Priority 100, 1 s: skew (256 - 100) / 256 s = 609.375 ms.
    assert_eq!(skew_time(100, 100), Duration::from_micros(609_375));
    assert_eq!(
        master_down_interval(100, 100),
        Duration::from_micros(3_609_375)
    );
    // 100 ms adverts, priority 200: 300 ms + 21.875 ms.
    assert_eq!(
        master_down_interval(200, 10),
        Duration::from_micros(321_875)
    );
    assert_eq!(skew_time(255, 100), Duration::from_micros(3_906));
}

#[test]
fn backup_becomes_master_when_no_master_speaks() {
    let mut v = started(cfg(100), ms(0));
    assert_eq!(events(&mut v), [change(Initialize, Backup, Cause::Startup)]);
    assert!(sent(&mut v).is_empty());
    let down = ms(0) + Duration::from_micros(3_609_375);
    assert_eq!(v.poll_timeout(), Some(down));
    v.handle_timeout(before(down));
    assert_eq!(state(&v), Backup);
    v.handle_timeout(down);
    assert_eq!(state(&v), Master);
    assert_eq!(events(&mut v), [change(Backup, Master, Cause::MasterDown)]);
    // An advertisement, then gratuitous ARP for each virtual address.
    assert_eq!(
        sent(&mut v),
        [Sent::Advert { priority: 100 }, Sent::GratuitousArp(VIP)]
    );
    assert_eq!(v.mastered().count(), 1);
    // Then one advertisement per interval.
    assert_eq!(v.poll_timeout(), Some(down + Duration::from_secs(1)));
    v.handle_timeout(down + Duration::from_millis(999));
    assert!(sent(&mut v).is_empty());
    v.handle_timeout(down + Duration::from_secs(1));
    assert_eq!(sent(&mut v), [Sent::Advert { priority: 100 }]);
    let s = &v.status()[0];
    assert_eq!((s.master, s.adverts_sent, s.transitions), (Some(ME), 2, 2));
}

#[test]
fn owner_starts_as_master() {
    let mut v = started(
        VrrpConfig {
            addresses: vec![ME],
            ..cfg(255)
        },
        ms(0),
    );
    assert_eq!(events(&mut v), [change(Initialize, Master, Cause::Startup)]);
    assert_eq!(sent(&mut v).len(), 2);
    assert_eq!(v.poll_timeout(), Some(ms(1000)));
}

#[test]
fn backup_resets_its_timer_and_learns_the_masters_interval() {
    let mut v = started(cfg(100), ms(0));
    // A master at 100 ms: Master_Down_Interval becomes 300 ms + skew(100, 10 cs).
    v.handle_packet(&advert(PEER, 200, 10), ms(3000));
    let down = ms(3000) + Duration::from_micros(300_000 + 60_937);
    assert_eq!(v.poll_timeout(), Some(down));
    let s = &v.status()[0];
    assert_eq!(
        (s.master, s.master_priority, s.master_adver_interval_cs),
        (Some(PEER), Some(200), 10)
    );
    assert_eq!(s.master_down_interval_ms, 360);
    // Each advertisement pushes the deadline on: never master while the master speaks.
    for t in (3100..6000).step_by(100) {
        v.handle_timeout(ms(t));
        v.handle_packet(&advert(PEER, 200, 10), ms(t));
    }
    assert_eq!(state(&v), Backup);
    // Silence: master exactly one down interval after the last advertisement.
    let last = ms(5900);
    v.handle_timeout(last + Duration::from_micros(360_936));
    assert_eq!(state(&v), Backup);
    v.handle_timeout(last + Duration::from_micros(360_937));
    assert_eq!(state(&v), Master);
}

#[test]
fn preempting_backup_ignores_a_lower_priority_master() {
    // RFC 5798 §6.4.2: Preempt_Mode true and a lower priority: discard the advertisement.
    let mut v = started(cfg(150), ms(0));
    for t in (0..=4000).step_by(1000) {
        v.handle_packet(&advert(PEER, 100, 100), ms(t));
        v.handle_timeout(ms(t));
    }
    // Master at the down interval counted from startup, as if nobody had spoken.
    let down = ms(0) + master_down_interval(150, 100);
    assert!(down < ms(4000));
    assert_eq!(state(&v), Master);
    assert_eq!(v.status()[0].adverts_received, 5);
    // The old master hears us and yields (its side of the same rule).
    let mut old = Vrrp::new(vec![cfg(100)], PEER);
    old.startup(ms(0));
    old.handle_timeout(ms(0) + master_down_interval(100, 100));
    assert_eq!(state(&old), Master);
    old.handle_packet(&advert(ME, 150, 100), ms(4000));
    assert_eq!(state(&old), Backup);
    assert!(events(&mut old).contains(&change(
        Master,
        Backup,
        Cause::Preempted {
            by: ME,
            priority: 150
        }
    )));
}

#[test]
fn non_preempting_backup_accepts_a_lower_priority_master() {
    let mut v = started(
        VrrpConfig {
            preempt: false,
            ..cfg(150)
        },
        ms(0),
    );
    for t in (0..20_000).step_by(1000) {
        v.handle_timeout(ms(t));
        v.handle_packet(&advert(PEER, 100, 100), ms(t));
    }
    assert_eq!(state(&v), Backup);
    assert_eq!(v.status()[0].master, Some(PEER));
}

#[test]
fn preempt_delay_tolerates_the_lower_master_that_long() {
    let delay = Duration::from_secs(10);
    let mut v = started(
        VrrpConfig {
            preempt_delay: delay,
            ..cfg(150)
        },
        ms(0),
    );
    // A lower master is heard from t = 1 s; its advertisements count until t = 11 s.
    let mut last_accepted = ms(0);
    for t in (1000..=20_000).step_by(1000) {
        v.handle_timeout(ms(t));
        if state(&v) == Master {
            break;
        }
        v.handle_packet(&advert(PEER, 100, 100), ms(t));
        if ms(t) < ms(1000) + delay {
            last_accepted = ms(t);
        }
    }
    let takeover = last_accepted + master_down_interval(150, 100);
    assert_eq!(last_accepted, ms(10_000));
    // Replay precisely: Backup just before the deadline, Master at it.
    let mut w = started(
        VrrpConfig {
            preempt_delay: delay,
            ..cfg(150)
        },
        ms(0),
    );
    for t in (1000..=13_000).step_by(1000) {
        w.handle_timeout(ms(t));
        w.handle_packet(&advert(PEER, 100, 100), ms(t));
    }
    assert_eq!(state(&w), Backup);
    w.handle_timeout(before(takeover));
    assert_eq!(state(&w), Backup);
    w.handle_timeout(takeover);
    assert_eq!(state(&w), Master);
    assert_eq!(state(&v), Master);
}

#[test]
fn preempt_delay_restarts_when_the_master_outranks_us_again() {
    let mut v = started(
        VrrpConfig {
            preempt_delay: Duration::from_secs(5),
            ..cfg(150)
        },
        ms(0),
    );
    v.handle_packet(&advert(PEER, 100, 100), ms(1000));
    v.handle_packet(&advert(PEER, 100, 100), ms(2000));
    // The master's priority goes back above ours: the delay is forgotten.
    v.handle_packet(&advert(PEER, 200, 100), ms(3000));
    for t in (4000..=8000).step_by(1000) {
        v.handle_packet(&advert(PEER, 100, 100), ms(t));
        v.handle_timeout(ms(t));
    }
    // 4 s..8 s of a lower master: still inside the new 5 s delay.
    assert_eq!(state(&v), Backup);
}

fn master_at(t: Instant, priority: u8) -> Vrrp {
    let mut v = started(cfg(priority), ms(0));
    v.handle_timeout(t);
    assert_eq!(state(&v), Master);
    events(&mut v);
    sent(&mut v);
    v
}

#[test]
fn master_yields_to_higher_priority_and_to_a_higher_address_on_a_tie() {
    let mut v = master_at(ms(4000), 100);
    v.handle_packet(&advert(PEER, 101, 50), ms(4100));
    assert_eq!(state(&v), Backup);
    assert_eq!(v.status()[0].master, Some(PEER));
    // Learned the new master's interval: 1.5 s + skew(100, 50 cs).
    assert_eq!(
        v.poll_timeout(),
        Some(ms(4100) + master_down_interval(100, 50))
    );
    assert!(sent(&mut v).is_empty());
    assert_eq!(v.mastered().count(), 0);

    let mut v = master_at(ms(4000), 100);
    v.handle_packet(&advert(PEER, 100, 100), ms(4100));
    assert_eq!(state(&v), Backup, "tie, PEER > ME");
    let mut v = master_at(ms(4000), 100);
    v.handle_packet(&advert(LOW_PEER, 100, 100), ms(4100));
    assert_eq!(state(&v), Master, "tie, LOW_PEER < ME");
    v.handle_packet(&advert(PEER, 99, 100), ms(4200));
    assert_eq!(state(&v), Master, "lower priority");
    assert!(events(&mut v).is_empty());
    assert!(sent(&mut v).is_empty(), "discarded, no extra advert");
}

#[test]
fn leaving_master_hands_over_after_skew_time() {
    let mut v = started(cfg(100), ms(0));
    v.handle_packet(&advert(PEER, 200, 100), ms(1000));
    v.handle_packet(&advert(PEER, LEAVING_PRIORITY, 100), ms(1500));
    let at = ms(1500) + skew_time(100, 100);
    assert_eq!(v.poll_timeout(), Some(at));
    v.handle_timeout(at);
    assert_eq!(state(&v), Master);
}

#[test]
fn master_answers_a_leaving_advert_at_once() {
    let mut v = master_at(ms(4000), 100);
    v.handle_packet(&advert(PEER, LEAVING_PRIORITY, 100), ms(4300));
    assert_eq!(sent(&mut v), [Sent::Advert { priority: 100 }]);
    assert_eq!(v.poll_timeout(), Some(ms(5300)));
    assert_eq!(state(&v), Master);
}

#[test]
fn shutdown_advertises_priority_zero() {
    let mut v = master_at(ms(4000), 100);
    v.shutdown(ms(4500));
    assert_eq!(sent(&mut v), [Sent::Advert { priority: 0 }]);
    assert_eq!(
        events(&mut v),
        [change(Master, Initialize, Cause::Shutdown)]
    );
    assert_eq!(v.poll_timeout(), None);
    // A backup stops silently.
    let mut b = started(cfg(100), ms(0));
    events(&mut b);
    b.shutdown(ms(100));
    assert!(sent(&mut b).is_empty());
    assert_eq!(
        events(&mut b),
        [change(Backup, Initialize, Cause::Shutdown)]
    );
    // And ignores advertisements while in Initialize.
    b.handle_packet(&advert(PEER, 200, 100), ms(200));
    assert_eq!((state(&b), b.poll_timeout()), (Initialize, None));
}

fn tracked() -> VrrpConfig {
    VrrpConfig {
        tracks: vec![
            VrrpTrack {
                track: "a-e2e".into(),
                decrement: 60,
            },
            VrrpTrack {
                track: "a-nexthop".into(),
                decrement: 200,
            },
        ],
        ..cfg(150)
    }
}

#[test]
fn tracks_down_lower_the_priority_and_a_master_says_so_at_once() {
    let mut v = started(tracked(), ms(0));
    v.handle_timeout(ms(4000));
    sent(&mut v);
    events(&mut v);
    v.set_down_tracks(|t| t == "a-e2e", ms(4200));
    assert_eq!(
        events(&mut v),
        [VrrpEvent::PriorityChange {
            vrid: VRID,
            from: 150,
            to: 90
        }]
    );
    assert_eq!(sent(&mut v), [Sent::Advert { priority: 90 }]);
    assert_eq!(v.poll_timeout(), Some(ms(5200)));
    // Untracked names change nothing; the same set again changes nothing.
    v.set_down_tracks(|t| t == "a-e2e" || t == "b-e2e", ms(4300));
    assert!(events(&mut v).is_empty() && sent(&mut v).is_empty());
    // Both down: 150 - 260, floor 1.
    v.set_down_tracks(|_| true, ms(4400));
    assert_eq!(v.status()[0].priority, 1);
    v.set_down_tracks(|_| false, ms(4500));
    assert_eq!(
        (v.status()[0].priority, v.status()[0].configured_priority),
        (150, 150)
    );
}

#[test]
fn a_backup_whose_track_recovers_preempts() {
    // Tracked down at 90, it accepts a master at 100; back at 150 it preempts.
    let mut v = started(tracked(), ms(0));
    v.set_down_tracks(|t| t == "a-e2e", ms(0));
    for t in (0..5000).step_by(1000) {
        v.handle_timeout(ms(t));
        v.handle_packet(&advert(PEER, 100, 100), ms(t));
    }
    assert_eq!(state(&v), Backup);
    v.set_down_tracks(|_| false, ms(4500));
    v.handle_packet(&advert(PEER, 100, 100), ms(5000));
    // The timer armed by the last accepted advertisement (at priority 90) runs out.
    let down = ms(4000) + master_down_interval(90, 100);
    v.handle_timeout(before(down));
    assert_eq!(state(&v), Backup);
    v.handle_timeout(down);
    assert_eq!(state(&v), Master);
}

#[test]
fn bad_packets_are_dropped_and_reported() {
    let mut v = started(cfg(100), ms(0));
    events(&mut v);
    let mut ttl = advert(PEER, 200, 100);
    ttl[8] = 254;
    let mut sum = advert(PEER, 200, 100);
    sum[20 + 2] ^= 1; // priority, checksum no longer matches
    let other_vrid = {
        let mut other = advert(PEER, 200, 100);
        let mut p = VrrpPacket::new_unchecked(&mut other[20..]);
        p.set_vrid(52);
        p.fill_checksum(PEER, vrrp::MULTICAST_ADDR);
        other
    };
    let other_addr = {
        let mut other = advert(PEER, 200, 100);
        let mut p = VrrpPacket::new_unchecked(&mut other[20..]);
        p.set_addr(0, Ipv4Addr::new(192, 168, 0, 99));
        p.fill_checksum(PEER, vrrp::MULTICAST_ADDR);
        other
    };
    let zero_interval = advert(PEER, 200, 0);
    for (packet, reason) in [
        (&ttl[..], AdvertDrop::Ttl),
        (&sum[..], AdvertDrop::BadChecksum),
        (&other_vrid[..], AdvertDrop::UnknownVrid),
        (&other_addr[..], AdvertDrop::AddressMismatch),
        (&zero_interval[..], AdvertDrop::Malformed),
        (&ttl[..19], AdvertDrop::Malformed),
    ] {
        v.handle_packet(packet, ms(100));
        assert_eq!(events(&mut v), [VrrpEvent::Dropped(reason)]);
    }
    assert_eq!(v.status()[0].adverts_received, 0);
    assert_eq!(v.status()[0].master, None);
    // Our own advertisement coming back is ignored silently.
    v.handle_packet(&advert(ME, 200, 100), ms(100));
    assert!(events(&mut v).is_empty());
    assert_eq!(v.status()[0].adverts_received, 0);
    // The owner's advertisement is taken whatever addresses it lists.
    let mut owner = advert(PEER, 255, 100);
    let mut p = VrrpPacket::new_unchecked(&mut owner[20..]);
    p.set_addr(0, Ipv4Addr::new(192, 168, 0, 99));
    p.fill_checksum(PEER, vrrp::MULTICAST_ADDR);
    v.handle_packet(&owner, ms(200));
    assert_eq!(v.status()[0].master_priority, Some(255));
}

#[test]
fn log_lines() {
    assert_eq!(
        change(Backup, Master, Cause::MasterDown).log_line(),
        "%VRRP-6-STATECHANGE: Lan Grp 51 state Backup -> Master (master down)"
    );
    assert_eq!(
        change(
            Master,
            Backup,
            Cause::Preempted {
                by: PEER,
                priority: 200
            }
        )
        .log_line(),
        "%VRRP-6-STATECHANGE: Lan Grp 51 state Master -> Backup (preempted by 192.168.0.3 priority 200)"
    );
    assert_eq!(
        VrrpEvent::PriorityChange {
            vrid: 51,
            from: 150,
            to: 90
        }
        .log_line(),
        "%VRRP-6-PRIORITY: Lan Grp 51 priority 150 -> 90"
    );
}

/// Two routers on a simulated LAN: frames are delivered at once; `alive` says who runs.
struct Lan {
    routers: [Vrrp; 2],
    alive: [bool; 2],
    /// (time, router, from, to) of every transition.
    log: Vec<(Instant, usize, VrrpState, VrrpState)>,
}

impl Lan {
    fn new(a: VrrpConfig, b: VrrpConfig) -> Lan {
        Lan {
            routers: [Vrrp::new(vec![a], ME), Vrrp::new(vec![b], PEER)],
            alive: [true, true],
            log: vec![],
        }
    }

    fn deliver(&mut self, now: Instant) {
        for from in 0..2 {
            while let Some(frame) = self.routers[from].poll_transmit() {
                let to = 1 - from;
                let is_ip = EthernetFrame::new_checked(&frame[..])
                    .is_ok_and(|e| e.ethertype() == ethernet::ethertype::IPV4);
                if self.alive[from] && self.alive[to] && is_ip {
                    self.routers[to].handle_packet(&frame[ethernet::HEADER_LEN..], now);
                }
            }
            while let Some(e) = self.routers[from].poll_event() {
                if let VrrpEvent::StateChange { from: f, to, .. } = e {
                    self.log.push((now, from, f, to));
                }
            }
        }
    }

    /// Runs the clock to `until`, from timer to timer.
    fn run(&mut self, until: Instant) {
        loop {
            let next = (0..2)
                .filter(|&i| self.alive[i])
                .filter_map(|i| self.routers[i].poll_timeout())
                .min();
            let Some(now) = next.filter(|&t| t <= until) else {
                return;
            };
            for i in 0..2 {
                if self.alive[i] {
                    self.routers[i].handle_timeout(now);
                }
            }
            self.deliver(now);
        }
    }

    fn states(&self) -> [VrrpState; 2] {
        [state(&self.routers[0]), state(&self.routers[1])]
    }
}

#[test]
fn two_routers_elect_fail_over_and_preempt_back() {
    let fast = |priority| VrrpConfig {
        advert_interval_cs: 10,
        preempt_delay: Duration::from_secs(2),
        ..cfg(priority)
    };
    let mut lan = Lan::new(fast(200), fast(100));
    lan.routers[0].startup(ms(0));
    lan.routers[1].startup(ms(0));
    lan.run(ms(5000));
    assert_eq!(lan.states(), [Master, Backup]);
    // The higher priority's shorter skew wins the first election; the other never was master.
    assert!(lan.log.iter().all(|&(_, r, _, to)| r == 0 || to != Master));

    // Router 0 dies (SIGKILL: no priority-0 goodbye). Its last advert was at or before 5 s.
    lan.alive[0] = false;
    lan.log.clear();
    lan.run(ms(10_000));
    let &(at, who, _, to) = lan.log.last().unwrap();
    assert_eq!((who, to), (1, Master));
    let last_advert = ms(4900);
    let bound = ms(5000) + master_down_interval(100, 10);
    assert!(at > last_advert && at <= bound, "took over at {at:?}");

    // Router 0 comes back with its track down (priority 200 - 150 = 50): stays backup.
    lan.routers[0] = Vrrp::new(
        vec![VrrpConfig {
            tracks: vec![VrrpTrack {
                track: "t".into(),
                decrement: 150,
            }],
            ..fast(200)
        }],
        ME,
    );
    lan.alive[0] = true;
    lan.routers[0].set_down_tracks(|_| true, ms(10_000));
    lan.routers[0].startup(ms(10_000));
    lan.run(ms(20_000));
    assert_eq!(lan.states(), [Backup, Master]);

    // The track recovers at 20 s: preemption 2 s later, plus one master-down interval.
    lan.log.clear();
    lan.routers[0].set_down_tracks(|_| false, ms(20_000));
    lan.run(ms(30_000));
    assert_eq!(lan.states(), [Master, Backup]);
    let &(at, who, _, to) = lan.log.iter().find(|e| e.3 == Master).unwrap();
    assert_eq!(who, 0);
    let earliest = ms(20_000) + Duration::from_secs(2);
    let latest = earliest + master_down_interval(200, 10) + Duration::from_millis(100);
    assert!(at >= earliest && at <= latest, "preempted at {at:?}");
    assert_eq!(to, Master);
}

#[test]
fn preempting_backup_accepts_a_master_of_equal_priority() {
    // RFC 5798 §6.4.2: "greater than or equal to the local Priority" resets the timer, whatever
    // the sender's address (the tie-break is only for masters).
    let mut v = started(cfg(100), ms(0));
    for t in (0..10_000).step_by(1000) {
        v.handle_timeout(ms(t));
        v.handle_packet(&advert(LOW_PEER, 100, 100), ms(t));
    }
    assert_eq!(state(&v), Backup);
    assert_eq!(v.status()[0].master, Some(LOW_PEER));
}
