//! `explain SRC DST PROTO [SPORT DPORT]`: which rule, route and uplink a flow would take now,
//! whether a session already pins it, and how it would be translated.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::{State, forwards, iface_name, proto_name, to_json};
use crate::Iface;
use crate::route::{self, FlowTuple};

/// `explain` of one flow.
#[derive(Serialize)]
struct Explanation {
    egress: String,
    next_hop: Option<Ipv4Addr>,
    decided_by: String,
    nat: String,
    session_uplink: Option<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  decided by: {}\n  egress: {}",
            self.decided_by, self.egress
        )?;
        if let Some(nh) = self.next_hop {
            write!(f, " via {nh}")?;
        }
        writeln!(f, "\n  nat: {}", self.nat)?;
        if let Some(u) = &self.session_uplink {
            writeln!(f, "  (an existing flow stays on {u} for its life)")?;
        }
        Ok(())
    }
}

/// What decided a route lookup, as `explain` says it.
fn route_rule(st: &State, r: route::RouteRef) -> String {
    match r {
        route::RouteRef::Connected => "connected uplink prefix".to_string(),
        route::RouteRef::Static(i) => format!(
            "route {}",
            st.cfg.routes.get(i).map_or("?", |r| r.name.as_str())
        ),
        route::RouteRef::Policy { policy, .. } => format!(
            "policy {}",
            st.cfg.policies.get(policy).map_or("?", |p| p.name.as_str())
        ),
    }
}

/// Which rule, route and uplink a flow would take now, and its NAT entry.
pub fn explain(st: &State, flow: FlowTuple, json: bool) -> String {
    let snap = &st.snap;
    let decision = snap.routes.lookup(&flow);
    let key = crate::nat::FlowKey {
        proto: flow.proto,
        inside: flow.src,
        inside_port: flow.src_port,
        remote: flow.dst,
        remote_port: flow.dst_port,
    };
    let existing = st.nat.peek_outbound(&key);
    // To an uplink's address and a forwarded port: the forward decides (SPEC 13, 31).
    let forward = match (existing, decision) {
        (None, route::Decision::Local) => forwards::explain(st, &flow),
        _ => None,
    };
    let (egress, via, rule) = match decision {
        route::Decision::Local if forward.is_some() => {
            ("lan".to_string(), None, "port forward".to_string())
        }
        route::Decision::Local => ("router".to_string(), None, "local address".to_string()),
        route::Decision::Lan => ("lan".to_string(), None, "connected LAN".to_string()),
        route::Decision::Unreachable => (
            "none".to_string(),
            None,
            "no eligible route: ICMP unreachable".to_string(),
        ),
        route::Decision::Peer { next_hop, route: r } => {
            ("lan".to_string(), Some(next_hop), route_rule(st, r))
        }
        route::Decision::Uplink {
            uplink,
            next_hop,
            route: r,
        } => (
            iface_name(st.cfg, Iface::Uplink(uplink)),
            Some(next_hop),
            route_rule(st, r),
        ),
    };
    let nat = match (existing, decision) {
        (Some(t), _) => format!(
            "existing session on {}: {}:{} -> {}:{}",
            iface_name(st.cfg, Iface::Uplink(t.uplink)),
            flow.src,
            flow.src_port,
            t.outside,
            t.outside_port
        ),
        (None, route::Decision::Uplink { uplink, .. }) => match snap.uplink(uplink) {
            Some(u) if u.nat => format!(
                "new session: source {} translated to {} (port from the NAT range)",
                flow.src,
                u.address.addr()
            ),
            _ => "not translated (uplink without NAT)".to_string(),
        },
        (None, route::Decision::Peer { .. }) => {
            "not translated here: the router on the LAN translates".to_string()
        }
        _ => forward.unwrap_or_else(|| "not translated".to_string()),
    };
    let e = Explanation {
        egress,
        next_hop: via,
        decided_by: rule,
        nat,
        session_uplink: existing.map(|t| iface_name(st.cfg, Iface::Uplink(t.uplink))),
    };
    if json {
        return to_json(&e);
    }
    format!(
        "flow {} {}:{} -> {}:{}\n{e}",
        proto_name(flow.proto),
        flow.src,
        flow.src_port,
        flow.dst,
        flow.dst_port
    )
}
