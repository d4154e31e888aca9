//! The lab's IPv6 as the fast path's tests and fuzz targets see it: two provider prefixes with
//! a /64 of each on the LAN, the PEs as next hops, a resolved host in each prefix.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use super::{A_MAC, B_MAC, HOST_MAC, LAN_MAC, PE_A};
use crate::route::source6::UplinkPrefix;
use crate::snapshot::Ipv6State;
use crate::wire::ethernet::MacAddr;
use crate::wire::ndisc;
use crate::{Iface, UplinkId};

pub const A: Iface = Iface::Uplink(UplinkId(0));
pub const B: Iface = Iface::Uplink(UplinkId(1));
pub const PE_B: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xb]);

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The lab's host in each LAN prefix.
pub fn host_a() -> Ipv6Addr {
    a6("2001:db8:a:1::10")
}
pub fn host_b() -> Ipv6Addr {
    a6("2001:db8:b:1::10")
}
pub fn pe_a() -> Ipv6Addr {
    a6("2001:db8:ffa::2")
}
pub fn pe_b() -> Ipv6Addr {
    a6("2001:db8:ffb::2")
}

/// The lab's IPv6: ISP A 2001:db8:a::/48 and B 2001:db8:b::/48, subnet 1 of each on the LAN.
pub fn state() -> Ipv6State {
    Ipv6State {
        lan_prefixes: vec![
            "2001:db8:a:1::/64".parse().unwrap(),
            "2001:db8:b:1::/64".parse().unwrap(),
        ],
        uplinks: vec![
            UplinkPrefix {
                uplink: UplinkId(0),
                prefix: "2001:db8:a::/48".parse().unwrap(),
                up: true,
                translates: false,
            },
            UplinkPrefix {
                uplink: UplinkId(1),
                prefix: "2001:db8:b::/48".parse().unwrap(),
                up: true,
                translates: false,
            },
        ],
        next_hops: vec![Some(pe_a()), Some(pe_b())],
        local: vec![
            (Iface::Lan, ndisc::link_local(LAN_MAC)),
            (A, ndisc::link_local(A_MAC)),
            (A, a6("2001:db8:ffa::1")),
            (B, ndisc::link_local(B_MAC)),
            (B, a6("2001:db8:ffb::1")),
            (Iface::Lan, a6("2001:db8:a:1::1")),
            (Iface::Lan, a6("2001:db8:b:1::1")),
        ],
        npt6: vec![None, None],
        routes: vec![],
        policies: vec![],
    }
}

pub fn neighbours() -> HashMap<(Iface, Ipv6Addr), MacAddr> {
    HashMap::from([
        ((Iface::Lan, host_a()), HOST_MAC),
        ((Iface::Lan, host_b()), HOST_MAC),
        ((A, pe_a()), PE_A),
        ((B, pe_b()), PE_B),
    ])
}
