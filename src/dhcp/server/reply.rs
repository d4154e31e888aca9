//! Building the server's replies (RFC 2131 4.1): the message, the options a client asked for,
//! and where it goes (broadcast, the relay, or the client's MAC and address).

use super::*;

impl Server {
    /// Builds a reply to `req` and queues it with its destination (RFC 2131 4.1).
    pub(super) fn send(
        &mut self,
        req: &Message,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        lease: Option<Duration>,
    ) {
        let mut m = Message::new_with_id(
            req.xid(),
            if kind == MessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                req.ciaddr()
            },
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            req.chaddr(),
        );
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_flags(req.flags());
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ServerIdentifier(self.lan.addr()));
        if let Some(DhcpOption::ClientIdentifier(id)) = req.opts().get(OptionCode::ClientIdentifier)
        {
            // RFC 6842: echo the client identifier.
            opts.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if kind != MessageType::Nak {
            self.insert_parameters(req, opts);
        }
        if let Some(lease) = lease {
            let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
            opts.insert(DhcpOption::AddressLeaseTime(secs));
            opts.insert(DhcpOption::Renewal(secs / 2));
            opts.insert(DhcpOption::Rebinding(secs / 8 * 7));
        }
        let Ok(payload) = m.to_vec() else {
            return self.drop_request(Drop::Malformed);
        };
        let mac = MacAddr(req.chaddr().try_into().unwrap_or([0xff; 6]));
        let (dst_mac, dst_ip) = if kind == MessageType::Nak {
            (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
        } else if !req.ciaddr().is_unspecified() {
            (mac, req.ciaddr())
        } else if req.flags().broadcast() {
            (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
        } else {
            (mac, yiaddr)
        };
        self.out.push_back(Output::Reply(Reply {
            payload,
            dst_mac,
            dst_ip,
        }));
    }

    pub(super) fn insert_parameters(&self, req: &Message, opts: &mut dhcproto::v4::DhcpOptions) {
        opts.insert(DhcpOption::SubnetMask(netmask(self.lan.prefix_len())));
        opts.insert(DhcpOption::Router(vec![self.cfg.router]));
        if !self.cfg.dns_servers.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(self.cfg.dns_servers.clone()));
        }
        if let Some(d) = &self.cfg.domain {
            opts.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(mtu) = self.cfg.mtu {
            opts.insert(DhcpOption::InterfaceMtu(mtu));
        }
        let asked_routes = matches!(
            req.opts().get(OptionCode::ParameterRequestList),
            Some(DhcpOption::ParameterRequestList(l)) if l.contains(&OptionCode::ClasslessStaticRoute)
        );
        if asked_routes && !self.cfg.routes.is_empty() {
            let mut routes: Vec<_> = self
                .cfg
                .routes
                .iter()
                .filter_map(|r| {
                    let net = ipnet::Ipv4Net::new(r.prefix.addr(), r.prefix.prefix_len()).ok()?;
                    Some((net, r.next_hop))
                })
                .collect();
            // RFC 3442: a client that takes option 121 ignores option 3, so the default route
            // goes into 121 as well.
            if !self.cfg.routes.iter().any(|r| r.prefix.prefix_len() == 0) {
                let default = ipnet::Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0");
                routes.push((default, self.cfg.router));
            }
            opts.insert(DhcpOption::ClasslessStaticRoute(routes));
        }
    }
}
