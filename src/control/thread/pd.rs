//! The control thread's part in DHCPv6 prefix delegation (SPEC 32): the running configuration
//! takes each delegated prefix as the uplink's provider prefix, the RAs advertise its LAN /64,
//! and a renumbered or lost delegation withdraws the old /64 (lifetimes 0 in the RAs, code 5
//! for flows from it in the fast path), as a dead uplink's prefix is.

use super::*;
use crate::config::ProviderPrefix;
use crate::control::inputs::{unusable_delegations, with_delegations, with_leases};
use crate::dhcp::pd::Event;

impl Control {
    /// The configuration the router runs: `base` (the file's) with the uplinks' DHCP leases
    /// and delegated prefixes applied.
    pub(super) fn running(&self, base: &Config) -> Config {
        let delegated = self
            .ipv6
            .as_ref()
            .map(ipv6::Ipv6Plane::delegated)
            .unwrap_or_default();
        with_delegations(with_leases(base, &self.uplink_leases), &delegated)
    }

    /// Acts on the prefix delegation clients' events: log lines, then the running
    /// configuration, the RAs and the snapshot follow the delegations.
    pub(super) fn pd_events(&mut self, now: Instant) {
        let Some(v6) = &mut self.ipv6 else {
            return;
        };
        let events: Vec<(usize, Event)> = std::iter::from_fn(|| v6.poll_pd_event()).collect();
        if events.is_empty() {
            return;
        }
        for (u, ev) in &events {
            let iface = &self.cfg.uplinks[*u].interface;
            match ev {
                Event::Delegated(d) => log::warn!(
                    "%DHCPV6-6-PREFIX_DELEGATED: Interface {iface} delegated {}, valid {} s, preferred {} s (T1 {} s, T2 {} s) from {} (DUID {})",
                    d.prefix,
                    d.valid.as_secs(),
                    d.preferred.as_secs(),
                    d.t1.as_secs(),
                    d.t2.as_secs(),
                    d.server_addr,
                    hex(&d.server_id)
                ),
                Event::Renewed(d) => log::info!(
                    "dhcpv6: {iface} renewed {} from {} for {} s (T1 {} s, T2 {} s)",
                    d.prefix,
                    d.server_addr,
                    d.valid.as_secs(),
                    d.t1.as_secs(),
                    d.t2.as_secs()
                ),
                Event::Rebinding { prefix } => log::warn!(
                    "dhcpv6: {iface} rebinding {prefix}: the server did not answer the renewal; asking any server until the prefix expires"
                ),
                Event::Lost { prefix } => log::warn!(
                    "%DHCPV6-4-PREFIX_LOST: Interface {iface} lost delegated prefix {prefix}"
                ),
            }
        }
        let new = self.running(&self.base_cfg);
        let delegated = self
            .ipv6
            .as_ref()
            .map(ipv6::Ipv6Plane::delegated)
            .unwrap_or_default();
        for (u, prefix) in unusable_delegations(&new, &delegated) {
            log::error!(
                "%DHCPV6-3-PREFIX_UNUSABLE: Interface {} delegated {prefix}: it has no /64 number subnet_id, or overlaps another uplink's prefix; not used",
                self.cfg.uplinks[u].interface
            );
        }
        let lan = |c: &Config, u: usize| -> Option<ProviderPrefix> {
            c.ipv6.as_ref()?.uplinks.get(u)?.as_ref()?.provider
        };
        for u in 0..new.uplinks.len() {
            let (old, now_p) = (lan(&self.cfg, u), lan(&new, u));
            if old == now_p {
                continue;
            }
            let iface = &new.uplinks[u].interface;
            match (old, now_p) {
                (Some(o), Some(n)) => log::warn!(
                    "%DHCPV6-4-PREFIX_RENUMBERED: Interface {iface} LAN prefix {} -> {}; {} withdrawn from the LAN",
                    o.lan_prefix,
                    n.lan_prefix,
                    o.lan_prefix
                ),
                (Some(o), None) => log::warn!(
                    "dhcpv6: {iface} LAN prefix {} withdrawn from the LAN",
                    o.lan_prefix
                ),
                (None, Some(n)) => {
                    log::info!("dhcpv6: {iface} LAN prefix {} advertised", n.lan_prefix)
                }
                (None, None) => {}
            }
            if let Some(v6) = &mut self.ipv6 {
                v6.set_lan_prefix(UplinkId(u as u8), now_p, now);
            }
        }
        self.cfg = new;
        self.ipv6_health(now);
        self.dirty = true;
    }
}

/// A DUID as the logs show it: hex bytes joined by ':'.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
