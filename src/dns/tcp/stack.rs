//! One smoltcp interface with its sockets, driven by packets handed in and out: the relay has
//! one on the LAN addresses (IPv4, and IPv6 in each LAN prefix) and one on the active uplink's
//! address.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::prefix6::Ipv6Prefix;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpCidr};

use crate::clock::Instant;

/// IP MTU of both sides; segments carry at most this less 40 bytes.
const MTU: usize = 1500;

/// Holds the one packet being handed in and collects what smoltcp sends.
#[derive(Default)]
struct Queue {
    rx: Option<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

struct RxToken(Vec<u8>);
struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}

impl Device for Queue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.take()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        caps
    }
}

fn smol(now: Instant) -> SmolInstant {
    SmolInstant::from_micros((now.as_nanos() / 1000) as i64)
}

fn ours(t: SmolInstant) -> Instant {
    Instant::from_nanos(u64::try_from(t.total_micros()).unwrap_or(0) * 1000)
}

pub(super) struct Stack {
    addr: Ipv4Addr,
    iface: Interface,
    dev: Queue,
    pub(super) sockets: SocketSet<'static>,
}

impl Stack {
    /// An interface with `addr/prefix_len` and the IPv6 addresses `v6` (with their on-link
    /// prefix lengths); off-link destinations are reached only when `default_route` (the uplink
    /// side: everything leaves through it).
    pub(super) fn new(
        addr: Ipv4Addr,
        prefix_len: u8,
        v6: &[Ipv6Prefix],
        default_route: bool,
        seed: u64,
        now: Instant,
    ) -> Stack {
        let mut dev = Queue::default();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, smol(now));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(addr.into(), prefix_len));
            for p in v6 {
                // Beyond smoltcp's room (8 addresses) a prefix's address is not served.
                let _ = a.push(IpCidr::new(p.addr().into(), p.prefix_len()));
            }
        });
        if default_route {
            // Medium::Ip has no neighbours: the gateway only has to exist.
            let _ = iface.routes_mut().add_default_ipv4_route(addr);
        }
        Stack {
            addr,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    pub(super) fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Hands in one IPv4 packet addressed to this interface and runs the stack.
    pub(super) fn input(&mut self, packet: &[u8], now: Instant) {
        self.dev.rx = Some(packet.to_vec());
        self.poll(now);
    }

    /// Runs the stack: timers, and what the sockets have to send.
    pub(super) fn poll(&mut self, now: Instant) {
        self.iface.poll(smol(now), &mut self.dev, &mut self.sockets);
    }

    pub(super) fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(smol(now), &self.sockets).map(ours)
    }

    pub(super) fn pop_packet(&mut self) -> Option<Vec<u8>> {
        self.dev.tx.pop_front()
    }

    pub(super) fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    pub(super) fn add(&mut self, socket: tcp::Socket<'static>) -> SocketHandle {
        self.sockets.add(socket)
    }

    pub(super) fn remove(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
    }

    /// Opens a connection from `(addr, port)` to `(server, port 53)`.
    pub(super) fn connect(
        &mut self,
        socket: tcp::Socket<'static>,
        port: u16,
        server: Ipv4Addr,
    ) -> Option<SocketHandle> {
        let h = self.sockets.add(socket);
        let local = (smoltcp::wire::IpAddress::from(self.addr), port);
        let remote = (smoltcp::wire::IpAddress::from(server), super::super::PORT);
        let s = self.sockets.get_mut::<tcp::Socket>(h);
        if s.connect(self.iface.context(), remote, local).is_err() {
            self.sockets.remove(h);
            return None;
        }
        Some(h)
    }
}
