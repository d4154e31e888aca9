use super::*;
use crate::route::fixtures::{A, B, ifaces, route};
use crate::route::{Health, StaticRoute};

const GRACE: Duration = Duration::from_secs(30);

/// The reference site: default via A (distance 10, track 0), backup via B (20, track 1), and
/// optionally extra routes.
fn table_with(extra: Vec<StaticRoute>, carrier: [bool; 2], tracks: [bool; 2]) -> RouteTable {
    let mut routes = vec![
        route("via-a", "0.0.0.0/0", A, 10, Some(0)),
        route("via-b", "0.0.0.0/0", B, 20, Some(1)),
    ];
    routes.extend(extra);
    let health = Health {
        carrier: carrier.to_vec(),
        tracks: tracks.to_vec(),
    };
    RouteTable::build(ifaces(), routes, Vec::new(), &health)
}

fn table(tracks: [bool; 2]) -> RouteTable {
    table_with(Vec::new(), [true, true], tracks)
}

fn failover(reset_tcp: bool, failback: Failback) -> Failover {
    Failover::new(FailoverConfig {
        reset_tcp,
        failback,
    })
}

/// The flush of an uplink whose link still works: port forwards' connections stay.
fn flush(uplink: UplinkId, reset_tcp: bool, reason: FlushReason) -> Action {
    Action::Flush {
        uplink,
        reset_tcp,
        forwarded: false,
        reason,
    }
}

const T0: Instant = Instant::ZERO;

#[test]
fn withdrawn_uplink_is_flushed_with_resets() {
    let mut f = failover(true, Failback::Stay);
    let actions = f.on_routes_changed(&table([true, true]), &table([false, true]), T0);
    assert_eq!(actions, vec![flush(A, true, FlushReason::Withdrawn)]);
}

#[test]
fn reset_tcp_false_flushes_without_resets() {
    let mut f = failover(false, Failback::Stay);
    let actions = f.on_routes_changed(&table([true, true]), &table([false, true]), T0);
    assert_eq!(actions, vec![flush(A, false, FlushReason::Withdrawn)]);
}

#[test]
fn carrier_loss_withdraws_like_a_track() {
    let mut f = failover(true, Failback::Stay);
    let old = table_with(Vec::new(), [true, true], [true, true]);
    let new = table_with(Vec::new(), [false, true], [true, true]);
    // Without a link, the connections in through its port forwards go too.
    assert_eq!(
        f.on_routes_changed(&old, &new, T0),
        vec![Action::Flush {
            uplink: A,
            reset_tcp: true,
            forwarded: true,
            reason: FlushReason::Withdrawn,
        }]
    );
}

#[test]
fn nothing_is_flushed_while_no_route_is_installed() {
    let mut f = failover(true, Failback::Stay);
    // B carried the site while A was down; now B dies too.
    let actions = f.on_routes_changed(&table([false, true]), &table([false, false]), T0);
    assert_eq!(actions, vec![]);
}

#[test]
fn an_uplink_with_another_installed_route_keeps_its_flows() {
    let mut f = failover(true, Failback::Stay);
    let extra = || vec![route("a-office", "10.0.0.0/8", A, 10, None)];
    let old = table_with(extra(), [true, true], [true, true]);
    let new = table_with(extra(), [true, true], [false, true]);
    assert_eq!(f.on_routes_changed(&old, &new, T0), vec![]);
}

#[test]
fn failback_stay_keeps_flows_on_the_displaced_backup() {
    let mut f = failover(true, Failback::Stay);
    // A comes back: B is displaced, still eligible, so its flows stay (SPEC 22).
    let actions = f.on_routes_changed(&table([false, true]), &table([true, true]), T0);
    assert_eq!(actions, vec![]);
    assert_eq!(f.poll_timeout(), None);
    let later = T0 + Duration::from_secs(3600);
    assert_eq!(
        f.handle_timeout(later, &table([true, true]), &[0, 5]),
        vec![]
    );
}

#[test]
fn failback_move_flushes_the_backup_after_grace() {
    let mut f = failover(true, Failback::Move { grace: GRACE });
    let now = Instant::from_millis(5_000);
    let actions = f.on_routes_changed(&table([false, true]), &table([true, true]), now);
    assert_eq!(actions, vec![Action::FailbackScheduled { grace: GRACE }]);
    assert_eq!(f.poll_timeout(), Some(now + GRACE));

    let current = table([true, true]);
    let early = now + (GRACE - Duration::from_millis(1));
    assert_eq!(f.handle_timeout(early, &current, &[3, 5]), vec![]);
    assert_eq!(f.poll_timeout(), Some(now + GRACE));

    assert_eq!(
        f.handle_timeout(now + GRACE, &current, &[3, 5]),
        vec![flush(B, true, FlushReason::FailbackGrace)]
    );
    assert_eq!(f.poll_timeout(), None);
    // Fired once.
    assert_eq!(f.handle_timeout(now + GRACE * 2, &current, &[3, 5]), vec![]);
}

#[test]
fn failback_move_skips_uplinks_without_flows() {
    let mut f = failover(false, Failback::Move { grace: GRACE });
    f.on_routes_changed(&table([false, true]), &table([true, true]), T0);
    assert_eq!(
        f.handle_timeout(T0 + GRACE, &table([true, true]), &[3, 0]),
        vec![]
    );
}

#[test]
fn failback_move_does_nothing_when_no_route_is_left_at_the_deadline() {
    let mut f = failover(true, Failback::Move { grace: GRACE });
    f.on_routes_changed(&table([false, true]), &table([true, true]), T0);
    let dead = table([false, false]);
    assert_eq!(f.handle_timeout(T0 + GRACE, &dead, &[3, 5]), vec![]);
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn failover_with_move_starts_the_timer_but_moves_nothing_off_the_carrying_uplink() {
    let mut f = failover(true, Failback::Move { grace: GRACE });
    // A fails: B becomes installed. That is a failover, not a failback, but B newly carries
    // routes, so the timer starts; when it fires, A (dead, 0 flows after its flush) is skipped.
    let actions = f.on_routes_changed(&table([true, true]), &table([false, true]), T0);
    assert_eq!(
        actions,
        vec![
            Action::FailbackScheduled { grace: GRACE },
            flush(A, true, FlushReason::Withdrawn)
        ]
    );
    assert_eq!(
        f.handle_timeout(T0 + GRACE, &table([false, true]), &[0, 7]),
        vec![]
    );
}
