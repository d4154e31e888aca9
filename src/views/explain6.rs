//! `explain` of an IPv6 flow from a LAN host (SPEC 34): what the fast path would do with it now
//! (`route::egress6`): the policy, route or source prefix that chose the uplink, the eligible
//! route for the destination, the next hop and whether the uplink translates.

use std::fmt;
use std::net::Ipv6Addr;

use serde::Serialize;

use super::{State, iface_name, proto_name, to_json};
use crate::route::egress6::{self, Chooser6, FlowTuple6};
use crate::route::source6::SourceRoute;
use crate::route::table6::{self, Route6};
use crate::{Iface, UplinkId};

/// `explain` of one IPv6 flow: the keys of the IPv4 one, and the route considered.
#[derive(Serialize)]
struct Explanation6 {
    egress: String,
    next_hop: Option<Ipv6Addr>,
    decided_by: String,
    /// The eligible IPv6 route for the destination, whether or not it decided.
    route: Option<String>,
    nat: String,
}

impl fmt::Display for Explanation6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  decided by: {}", self.decided_by)?;
        write!(f, "  egress: {}", self.egress)?;
        if let Some(nh) = self.next_hop {
            write!(f, " via {nh}")?;
        }
        writeln!(f)?;
        if let Some(r) = &self.route {
            writeln!(f, "  route: {r}")?;
        }
        writeln!(f, "  nat: {}", self.nat)
    }
}

/// A route as `explain` names it: "a6-default (::/0 via isp-a, distance 10, track a6 up)".
fn describe(st: &State, r: &Route6) -> String {
    let Some(c) = st.cfg.routes6.get(r.index) else {
        return "?".to_string();
    };
    let track = c.track.as_deref().map_or(String::new(), |t| {
        let state = st
            .cfg
            .track_index(t)
            .map_or("?".to_string(), |i| st.tracks.state(i).to_string());
        format!(", track {t} {state}")
    });
    format!(
        "{} ({} via {}, distance {}{track})",
        c.name, c.prefix, c.uplink, c.distance
    )
}

/// Which route, rule and uplink an IPv6 flow from a LAN host would take now.
pub fn explain6(st: &State, flow: FlowTuple6, json: bool) -> String {
    let e = decide(st, &flow);
    if json {
        return to_json(&e);
    }
    format!(
        "flow {} [{}]:{} -> [{}]:{}\n{e}",
        proto_name(flow.proto),
        flow.src,
        flow.src_port,
        flow.dst,
        flow.dst_port
    )
}

fn decide(st: &State, flow: &FlowTuple6) -> Explanation6 {
    let none = |why: &str| Explanation6 {
        egress: "none".to_string(),
        next_hop: None,
        decided_by: why.to_string(),
        route: None,
        nat: "not translated".to_string(),
    };
    let Some(v6) = st.snap.ipv6.as_ref() else {
        return none("IPv6 is off ([lan] ipv6)");
    };
    let here = |egress: &str, why: &str| Explanation6 {
        egress: egress.to_string(),
        ..none(why)
    };
    if v6.is_local(flow.dst) {
        return here("router", "local address");
    }
    if v6.is_lan(flow.dst) {
        return here("lan", "connected LAN prefix");
    }
    if v6.uplinks.iter().any(|u| u.prefix.contains(flow.dst)) {
        return none("inside a provider prefix but in no LAN /64: unreachable");
    }
    if !v6.is_lan(flow.src) {
        return none("source in no LAN prefix: dropped as spoofed");
    }
    let best = table6::best(&v6.routes, flow.dst);
    let route = best.map(|r| describe(st, r));
    let name = |u: UplinkId| iface_name(st.cfg, Iface::Uplink(u));
    let policy = |i: usize| st.cfg.policies6.get(i).map_or("?", |p| p.name.as_str());
    let (egress, by) = egress6::decide(flow, &v6.uplinks, &v6.routes, &v6.policies);
    match egress {
        Some(SourceRoute::Via(u)) => {
            let decided_by = match by {
                Chooser6::Policy(i) => format!("policy {}", policy(i)),
                Chooser6::Route(i) => v6.routes.iter().find(|r| r.index == i).map_or_else(
                    || "route ?".to_string(),
                    |r| format!("route {}", describe(st, r)),
                ),
                Chooser6::Source => match v6.uplinks.iter().find(|p| p.prefix.contains(flow.src)) {
                    Some(o) if o.uplink == u => {
                        format!("source prefix {} of {}", o.prefix, name(u))
                    }
                    _ => format!("{}, the first up uplink that translates", name(u)),
                },
            };
            let translates = v6.uplinks.iter().any(|p| p.uplink == u && p.translates);
            Explanation6 {
                egress: name(u),
                next_hop: v6.next_hop(u),
                decided_by,
                route,
                nat: if translates {
                    format!("NPTv6 on {}", name(u))
                } else {
                    "not translated (IPv6 is routed as is)".to_string()
                },
            }
        }
        None => Explanation6 {
            route,
            // Only a policy makes a flow unreachable.
            ..none(&format!(
                "policy {}: none of its uplinks can carry the source: ICMPv6 unreachable",
                match by {
                    Chooser6::Policy(i) => policy(i),
                    Chooser6::Route(_) | Chooser6::Source => "?",
                }
            ))
        },
        Some(SourceRoute::SourcePolicyFailed(u)) => Explanation6 {
            route,
            ..none(&format!(
                "source in the prefix of {}, which is down: ICMPv6 unreachable code 5",
                name(u)
            ))
        },
        Some(SourceRoute::Foreign) => Explanation6 {
            route,
            ..none("source in no up uplink's prefix: dropped")
        },
    }
}
