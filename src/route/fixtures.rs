//! The reference site (SPEC "reference site") for unit tests of the route table and of what
//! reads it: LAN 192.168.0.1/24, uplink A 172.16.1.1/30 and B 172.17.3.1/30, next hops .2.

use std::net::Ipv4Addr;

use super::{Interfaces, StaticRoute, UplinkIf};
use crate::prefix::Ipv4Prefix;
use crate::{Iface, UplinkId};

pub const A: UplinkId = UplinkId(0);
pub const B: UplinkId = UplinkId(1);
pub const NH_A: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);
pub const NH_B: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 2);

pub fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

pub fn ifaces() -> Interfaces {
    Interfaces {
        lan: p("192.168.0.1/24"),
        uplinks: vec![
            UplinkIf {
                name: "isp-a".into(),
                address: p("172.16.1.1/30"),
                next_hop: NH_A,
            },
            UplinkIf {
                name: "isp-b".into(),
                address: p("172.17.3.1/30"),
                next_hop: NH_B,
            },
        ],
    }
}

/// A static route via A or B (next hop NH_A or NH_B), weight 1.
pub fn route(
    name: &str,
    prefix: &str,
    uplink: UplinkId,
    distance: u8,
    track: Option<usize>,
) -> StaticRoute {
    StaticRoute {
        name: name.into(),
        prefix: p(prefix),
        egress: Iface::Uplink(uplink),
        next_hop: if uplink == A { NH_A } else { NH_B },
        distance,
        weight: 1,
        track,
    }
}
