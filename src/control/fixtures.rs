//! The reference site for the engines' unit tests: LAN 192.168.0.1/24, uplink A 172.16.1.1/30
//! (next hop .2), uplink B 172.17.3.1/30 (next hop .2).

use std::net::Ipv4Addr;

use super::{Addressing, IfAddr};
use crate::clock::Instant;
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::frame::{ETH_OFFSET, IP_OFFSET};
use crate::{Iface, UplinkId};

pub const LAN: Iface = Iface::Lan;
pub const A: Iface = Iface::Uplink(UplinkId(0));
pub const B: Iface = Iface::Uplink(UplinkId(1));
pub const LAN_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub const A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
pub const B_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);
pub const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x10]);
pub const PE_A_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0xa]);
pub const LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
pub const HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 10);
pub const A_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 1);
pub const NH_A: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 2);
pub const NH_B: Ipv4Addr = Ipv4Addr::new(172, 17, 3, 2);

pub fn addressing() -> Addressing {
    Addressing {
        lan: IfAddr {
            prefix: "192.168.0.1/24".parse().unwrap(),
            mac: LAN_MAC,
        },
        uplinks: vec![
            IfAddr {
                prefix: "172.16.1.1/30".parse().unwrap(),
                mac: A_MAC,
            },
            IfAddr {
                prefix: "172.17.3.1/30".parse().unwrap(),
                mac: B_MAC,
            },
        ],
    }
}

pub fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A received frame: zeroed vnet header, Ethernet header, then `l3` (IPv4 or ARP).
pub fn frame(dst: MacAddr, src: MacAddr, ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; IP_OFFSET + l3.len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f[ETH_OFFSET..]);
    eth.set_dst(dst);
    eth.set_src(src);
    eth.set_ethertype(ethertype);
    f[IP_OFFSET..].copy_from_slice(l3);
    f
}

/// An IPv4 frame from `src` to `dst` MACs.
pub fn ipv4_frame(dst: MacAddr, src: MacAddr, packet: &[u8]) -> Vec<u8> {
    frame(dst, src, ethernet::ethertype::IPV4, packet)
}
