//! IPv6 static routes (SPEC 34): prefix, uplink, distance and track as for IPv4 (SPEC 4, 5). A
//! route is eligible while its uplink has carrier and its track (if any) is up; for a
//! destination, the longest prefix with an eligible route wins, then the lowest distance, then
//! the first configured (no load sharing over IPv6 yet). The winner only steers: the egress by
//! source (`source6`) takes it when its uplink can carry the packet's source.

use std::net::Ipv6Addr;

use crate::UplinkId;
use crate::prefix6::Ipv6Prefix;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    /// Index in `Config::routes6`, for the views.
    pub index: usize,
    pub prefix: Ipv6Prefix,
    pub uplink: UplinkId,
    pub distance: u8,
    /// Carrier up and track (if any) up, when the table was built.
    pub eligible: bool,
}

/// The route that decides `dst`, if any route is eligible for it.
pub fn best(routes: &[Route6], dst: Ipv6Addr) -> Option<&Route6> {
    routes
        .iter()
        .filter(|r| r.eligible && r.prefix.contains(dst))
        // Longest prefix, then lowest distance; `min_by_key` keeps the first of equals.
        .min_by_key(|r| (u8::MAX - r.prefix.prefix_len(), r.distance))
}

/// True when `r` is the route `best` gives for its own prefix: the one the views call installed.
pub fn installed(routes: &[Route6], r: &Route6) -> bool {
    r.eligible
        && routes
            .iter()
            .filter(|o| o.eligible && o.prefix == r.prefix)
            .min_by_key(|o| o.distance)
            .is_some_and(|o| o.index == r.index)
}

/// The installed route of each prefix of `routes`, in configuration order.
fn installed_by_prefix(routes: &[Route6]) -> Vec<(Ipv6Prefix, Option<&Route6>)> {
    let mut out: Vec<(Ipv6Prefix, Option<&Route6>)> = Vec::new();
    for r in routes {
        if !out.iter().any(|(p, _)| *p == r.prefix) {
            let best = routes
                .iter()
                .find(|o| o.prefix == r.prefix && installed(routes, o));
            out.push((r.prefix, best));
        }
    }
    out
}

/// One log line per prefix whose installed route changed (SPEC 24), as for IPv4: "route ::/0
/// via isp-a [10] withdrawn; now via isp-b [20]", "installed via", "preempted; now via".
pub fn diff(old: &[Route6], new: &[Route6], name: impl Fn(UplinkId) -> String) -> Vec<String> {
    let before = installed_by_prefix(old);
    let via = |r: &Route6| format!("{} [{}]", name(r.uplink), r.distance);
    installed_by_prefix(new)
        .into_iter()
        .filter_map(|(prefix, b)| {
            let a = before
                .iter()
                .find(|(p, _)| *p == prefix)
                .and_then(|(_, a)| *a);
            match (a, b) {
                (None, Some(b)) => Some(format!("route {prefix} installed via {}", via(b))),
                (Some(a), None) => Some(format!("route {prefix} via {} withdrawn", via(a))),
                (Some(a), Some(b)) if a.index != b.index => {
                    // A lower distance taking over is a preference, not a loss (SPEC 22).
                    let verb = if b.distance < a.distance {
                        "preempted"
                    } else {
                        "withdrawn"
                    };
                    Some(format!(
                        "route {prefix} via {} {verb}; now via {}",
                        via(a),
                        via(b)
                    ))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(index: usize, prefix: &str, uplink: u8, distance: u8, eligible: bool) -> Route6 {
        Route6 {
            index,
            prefix: prefix.parse().unwrap(),
            uplink: UplinkId(uplink),
            distance,
            eligible,
        }
    }

    fn dst() -> Ipv6Addr {
        "2001:db8:18::6".parse().unwrap()
    }

    #[test]
    fn lowest_eligible_distance_then_fallback() {
        let mut routes = vec![route(0, "::/0", 0, 10, true), route(1, "::/0", 1, 20, true)];
        assert_eq!(best(&routes, dst()).map(|r| r.uplink), Some(UplinkId(0)));
        assert!(installed(&routes, &routes[0]) && !installed(&routes, &routes[1]));
        routes[0].eligible = false;
        assert_eq!(best(&routes, dst()).map(|r| r.uplink), Some(UplinkId(1)));
        assert!(installed(&routes, &routes[1]));
        routes[1].eligible = false;
        assert_eq!(best(&routes, dst()), None);
    }

    #[test]
    fn longest_prefix_first_and_a_withdrawn_one_falls_through() {
        let mut routes = vec![
            route(0, "::/0", 0, 10, true),
            route(1, "2001:db8:18::/48", 1, 200, true),
        ];
        assert_eq!(best(&routes, dst()).map(|r| r.index), Some(1));
        let elsewhere: Ipv6Addr = "2001:db8:99::1".parse().unwrap();
        assert_eq!(best(&routes, elsewhere).map(|r| r.index), Some(0));
        routes[1].eligible = false;
        assert_eq!(best(&routes, dst()).map(|r| r.index), Some(0));
    }

    #[test]
    fn changes_are_logged_per_prefix() {
        let name = |u: UplinkId| ["isp-a", "isp-b"][usize::from(u.0)].to_string();
        let both = vec![route(0, "::/0", 0, 10, true), route(1, "::/0", 1, 20, true)];
        let mut a_down = both.clone();
        a_down[0].eligible = false;
        let mut none = a_down.clone();
        none[1].eligible = false;
        assert_eq!(
            diff(&both, &a_down, name),
            vec!["route ::/0 via isp-a [10] withdrawn; now via isp-b [20]"]
        );
        assert_eq!(
            diff(&a_down, &both, name),
            vec!["route ::/0 via isp-b [20] preempted; now via isp-a [10]"]
        );
        assert_eq!(
            diff(&a_down, &none, name),
            vec!["route ::/0 via isp-b [20] withdrawn"]
        );
        assert_eq!(
            diff(&none, &a_down, name),
            vec!["route ::/0 installed via isp-b [20]"]
        );
        assert!(diff(&both, &both, name).is_empty());
    }

    #[test]
    fn equal_distances_take_the_first_configured() {
        let routes = vec![route(0, "::/0", 1, 10, true), route(1, "::/0", 0, 10, true)];
        assert_eq!(best(&routes, dst()).map(|r| r.index), Some(0));
    }
}
