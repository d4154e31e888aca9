//! The control thread's part in addressing: DHCP leases of the LAN server and of the uplinks,
//! the addresses they give the uplinks, and which resolvers the DNS forwarder uses.

use super::*;

impl Control {
    /// Points the DNS forwarder at the resolvers of the uplink that carries the default route
    /// (SPEC 30); a failover moves it at once.
    pub(super) fn dns_upstream(&mut self, now: Instant) {
        let Some(d) = &mut self.dns else {
            return;
        };
        let gateway = self.shared.snapshot.load().routes.gateway_of_last_resort();
        // Only an uplink's resolvers: a default route via a LAN peer (SPEC 29) has none.
        let gateway = gateway.and_then(|(next_hop, egress)| match egress {
            Iface::Uplink(u) => Some((u, next_hop)),
            Iface::Lan => None,
        });
        if gateway == d.gateway() {
            return;
        }
        // Configured resolvers first, else those of the uplink's DHCP lease.
        let resolvers = gateway
            .map(|(u, _)| usize::from(u.0))
            .map(
                |u| match (&self.cfg.uplinks[u].dns_servers, &self.uplink_leases[u]) {
                    (configured, Some(l)) if configured.is_empty() => l.dns_servers.clone(),
                    (configured, _) => configured.clone(),
                },
            )
            .unwrap_or_default();
        match gateway {
            Some((u, _)) => log::info!(
                "dns: forwarding to {resolvers:?} through uplink {}",
                self.cfg.uplinks[usize::from(u.0)].name
            ),
            None => log::warn!("dns: no uplink carries the default route; answering SERVFAIL"),
        }
        d.set_upstream(gateway, resolvers, now);
    }

    /// Acts on the uplinks' DHCP clients' lease events: the uplink takes the leased address,
    /// its routes the lease's router (SPEC 28); a new or lost address removes its flows with
    /// resets to the LAN (SPEC 21).
    pub(super) fn lease_events(&mut self, now: Instant) {
        let mut changed = false;
        for u in 0..self.uplink_dhcp.len() {
            while let Some(ev) = self.uplink_dhcp[u]
                .as_mut()
                .and_then(UplinkDhcp::poll_event)
            {
                let iface = self.cfg.uplinks[u].interface.clone();
                match ev {
                    client::Event::Bound(l) => {
                        log::warn!(
                            "%DHCP-6-ADDRESS_ASSIGN: Interface {iface} assigned DHCP address {}, mask {}, router {}, lease {} s (T1 {} s, T2 {} s) from {}",
                            l.address.addr(),
                            crate::dhcp::netmask(l.address.prefix_len()),
                            l.router.map_or("none".to_string(), |r| r.to_string()),
                            l.lease_time.as_secs(),
                            l.t1.as_secs(),
                            l.t2.as_secs(),
                            l.server
                        );
                        self.uplink_leases[u] = Some(l);
                    }
                    client::Event::Renewed(l) => {
                        log::info!(
                            "dhcp: {iface} renewed {} from {} for {} s",
                            l.address,
                            l.server,
                            l.lease_time.as_secs()
                        );
                        self.uplink_leases[u] = Some(l);
                    }
                    client::Event::Rebinding { address, server } => {
                        log::warn!(
                            "dhcp: {iface} rebinding {address}: {server} did not answer the renewal; asking any server until the lease expires"
                        );
                        continue;
                    }
                    client::Event::Lost { address } => {
                        log::warn!(
                            "%DHCP-4-ADDRESS_LOST: Interface {iface} lost DHCP address {}",
                            address.addr()
                        );
                        self.uplink_leases[u] = None;
                    }
                }
                changed = true;
            }
        }
        if changed {
            let new = self.running(&self.base_cfg);
            self.apply_addresses(&new);
            self.cfg = new;
            self.readdress(now);
        }
    }

    /// Flows of an uplink whose address changes cannot continue: removed, with resets.
    pub(super) fn apply_addresses(&mut self, new: &Config) {
        let renumbered: Vec<(usize, String)> = self
            .cfg
            .uplinks
            .iter()
            .zip(&new.uplinks)
            .enumerate()
            .filter(|(_, (old, new))| {
                old.address != new.address && !old.address.addr().is_unspecified()
            })
            .map(|(u, (old, new))| {
                let why = if new.address.addr().is_unspecified() {
                    format!("address {} lost", old.address)
                } else {
                    format!("address {} -> {}", old.address, new.address)
                };
                (u, why)
            })
            .collect();
        for (u, why) in renumbered {
            let reset = self.cfg.failover.reset_tcp;
            // The old address is gone: forwarded sessions cannot survive it either.
            self.flush_uplink(UplinkId(u as u8), reset, true, &why);
        }
        for (u, (old, new)) in self.cfg.uplinks.iter().zip(&new.uplinks).enumerate() {
            if old.address != new.address || old.nat != new.nat {
                let addr =
                    (new.nat && !new.address.addr().is_unspecified()).then(|| new.address.addr());
                self.shared.nat.set_uplink_addr(UplinkId(u as u8), addr);
            }
        }
    }

    /// The engines that know the router's addresses learn the new ones; the snapshot follows.
    pub(super) fn readdress(&mut self, now: Instant) {
        let addressing = self.addressing();
        self.arp
            .reconfigure(addressing.clone(), next_hops(&self.cfg, &self.carrier));
        if let Some(d) = &mut self.dns {
            d.reconfigure(addressing.clone(), now);
        }
        self.echo.reconfigure(addressing);
        self.publish_neighbours();
        self.publish(now);
    }

    /// Rewrites the lease file when bound leases changed. A failed write is logged and retried
    /// at the next change; the leases stay in memory.
    pub(super) fn save_leases(&mut self) {
        let (Some(d), Some(path)) = (
            &mut self.dhcp,
            self.cfg
                .dhcp_server
                .as_ref()
                .and_then(|c| c.lease_file.as_ref()),
        ) else {
            return;
        };
        if !d.server_mut().take_changed() {
            return;
        }
        if let Err(e) = leases::save(path, &d.server().leases(), Clocks::now()) {
            log::error!("dhcp: leases not saved: {e}");
        }
    }
}
