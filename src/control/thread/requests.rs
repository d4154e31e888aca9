//! The control thread's answers to the control socket and the metrics listener: the views,
//! `explain`, `clear` and `reload` requests.

use super::*;

impl Control {
    /// Answers a control-socket request.
    pub(super) fn answer(&mut self, req: Request, now: Instant) -> Result<String, String> {
        match req {
            Request::Show {
                view: View::Nat {
                    uplink: Some(name), ..
                },
                ..
            }
            | Request::ClearNat { uplink: Some(name) }
                if self.cfg.uplink_index(&name).is_none() =>
            {
                Err(format!("no uplink named '{name}'"))
            }
            Request::Show { view, json } => Ok(views::show(&self.view_state(now), view, json)),
            Request::ClearCounters => {
                self.counters_cleared = self.totals();
                log::info!("counters cleared");
                Ok("counters cleared\n".into())
            }
            Request::ClearNat { uplink } => {
                let uplinks = match uplink.and_then(|n| self.cfg.uplink_index(&n)) {
                    Some(u) => u..u + 1,
                    None => 0..self.cfg.uplinks.len(),
                };
                let reset_tcp = self.cfg.failover.reset_tcp;
                let removed: usize = uplinks
                    .map(|u| {
                        let why = "NAT cleared by the operator";
                        self.flush_uplink(UplinkId(u as u8), reset_tcp, true, why)
                    })
                    .sum();
                Ok(format!("{removed} NAT flows removed\n"))
            }
            Request::Explain {
                src,
                dst,
                proto,
                sport,
                dport,
                json,
            } => Ok(match (src, dst) {
                (IpAddr::V4(src), IpAddr::V4(dst)) => views::explain(
                    &self.view_state(now),
                    FlowTuple {
                        src,
                        dst,
                        proto,
                        src_port: sport,
                        dst_port: dport,
                    },
                    json,
                ),
                (IpAddr::V6(src), IpAddr::V6(dst)) => views::explain6(
                    &self.view_state(now),
                    crate::route::egress6::FlowTuple6 {
                        src,
                        dst,
                        proto,
                        src_port: sport,
                        dst_port: dport,
                    },
                    json,
                ),
                _ => return Err("SRC and DST must both be IPv4 or both IPv6".to_string()),
            }),
            Request::Reload => self.reload(),
            Request::Metrics => Ok(metrics::render(&metrics::collect(metrics::Sources {
                probes: &self.shared.probe_health.load(),
                cfg: &self.cfg,
                totals: self.totals(),
                carrier: &self.carrier,
                routes: &self.shared.snapshot.load().routes,
                routes6: self
                    .shared
                    .snapshot
                    .load()
                    .ipv6
                    .as_ref()
                    .map_or(&[], |v6| &v6.routes),
                nat: &self.shared.nat,
                tracks: &self.tracks,
                last_load: self.last_load,
                vrrp: self.vrrp.status(),
                dhcp: self.dhcp.as_ref().map(DhcpService::server),
                dns: self
                    .dns
                    .as_ref()
                    .map(|d| (d.forwarder(), d.relay().counters())),
                ipv6_prefixes: self
                    .ipv6_info()
                    .map(|i| i.prefix_metrics(&self.cfg))
                    .unwrap_or_default(),
                ipv6_neighbours: self.ipv6_info().map_or(0, |i| i.neighbours.len()),
                ipv6_pd: self
                    .ipv6_info()
                    .map(|i| i.pd_metrics(&self.cfg))
                    .unwrap_or_default(),
            }))),
        }
    }

    pub(super) fn view_state(&self, now: Instant) -> views::State<'_> {
        views::State {
            cfg: &self.cfg,
            snap: self.shared.snapshot.load_full(),
            carrier: &self.carrier,
            totals: self.totals().since(&self.counters_cleared),
            nat: &self.shared.nat,
            probes: self.shared.probe_health.load_full(),
            tracks: &self.tracks,
            neigh: self.arp.table(),
            vrrp: self.vrrp.status(),
            dhcp: self.dhcp.as_ref().map(DhcpService::server),
            uplink_dhcp: self
                .uplink_dhcp
                .iter()
                .map(|d| d.as_ref().map(UplinkDhcp::client))
                .collect(),
            ipv6: self.ipv6_info(),
            now,
        }
    }

    fn ipv6_info(&self) -> Option<views::Ipv6Info> {
        let v6 = self.ipv6.as_ref()?;
        let (ra, prefixes) = v6.advert();
        Some(views::Ipv6Info {
            router_lifetime: ra.router_lifetime,
            prefixes,
            lan_addresses: v6.lan_addresses(),
            rdnss: v6.rdnss().to_vec(),
            advertising: v6.advertising(),
            neighbours: self.shared.neighbours.load().v6().collect(),
            pd: self.ipv6.as_ref()?.pd_info(Instant::now()),
        })
    }

    pub(super) fn totals(&self) -> Totals {
        Totals::sum(
            self.workers
                .iter()
                .map(|c| &**c)
                .chain(std::iter::once(&*self.counters)),
        )
    }

    /// Reads the configuration file again and applies it (SIGHUP, `mhrouter reload`). A config
    /// that does not validate, or that changes what only a restart can change, is rejected and
    /// the running one stays. NAT flows are kept: routes, policies, probes, tracks, failover and
    /// per-uplink forwarding settings change live.
    pub fn reload(&mut self) -> Result<String, String> {
        systemd::notify(&systemd::reloading());
        let result = self.apply_config_file();
        self.last_load = match result {
            Ok(_) => (true, SystemTime::now()),
            Err(_) => (false, self.last_load.1),
        };
        systemd::notify(systemd::READY);
        result
    }

    pub(super) fn apply_config_file(&mut self) -> Result<String, String> {
        let now = Instant::now();
        let result = Config::from_file(&self.config_path)
            .map_err(|e| e.to_string())
            .and_then(|new| restart_needed(&self.base_cfg, &new).map_or(Ok(new), Err));
        let new = match result {
            Ok(new) => new,
            Err(e) => {
                let msg = format!("reload rejected, running configuration kept: {e}");
                log::error!("{msg}");
                return Err(msg);
            }
        };
        self.base_cfg = new.clone();
        let new = self.running(&new);
        self.apply_addresses(&new);
        self.tracks.reconfigure(track_defs(&new), now);
        let _ = self.probe_configs.send(new.probes.clone());
        self.shared.probe_waker.wake();
        self.failover.reconfigure(new.failover.clone());
        self.cfg = new;
        let addressing = self.addressing();
        self.arp
            .reconfigure(addressing.clone(), next_hops(&self.cfg, &self.carrier));
        self.echo.reconfigure(addressing);
        self.publish_neighbours();
        for u in 0..self.carrier.len() {
            let events = self.tracks.on_carrier(u, self.carrier[u], now);
            self.track_events(events);
        }
        let events = self.tracks.poll(now);
        self.track_events(events);
        self.publish(now);
        let msg = format!(
            "reload: {} applied ({} routes, {} policies, {} probes, {} tracks)",
            self.config_path.display(),
            self.cfg.routes.len(),
            self.cfg.policies.len(),
            self.cfg.probes.len(),
            self.cfg.tracks.len()
        );
        log::warn!("{msg}");
        Ok(msg + "\n")
    }
}
