//! Entry points for the coverage-guided fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing` (cargo-fuzz sets it): thin wrappers over parsers that stay private to their
//! modules in a normal build, and for the fast-path targets the shared valid-frame generator
//! (`valid_frames`), a decoder of its cases from the fuzzer's bytes (`Bytes`) and the driver
//! of one frame (`fastpath_frame`).

use std::cell::RefCell;

use crate::io::link::{LinkEvent, parse_link_events};
use crate::metrics::http::{head_end, parse_head};
use crate::{Iface, UplinkId};

pub use crate::fastpath::valid_frames;
use valid_frames::{
    Case, Ends, FLOWS, Frag, HOST, HOST2, LAN_ROUTER, OUTSIDE, OUTSIDE_B, PE_A_IP, PROBE_ID,
    SERVER, Transport,
};

/// The link events that one rtnetlink datagram yields.
pub fn netlink_link_events(datagram: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    parse_link_events(datagram, &mut events);
    events
}

/// Frames a metrics request head the way the listener does and checks its request line;
/// `Some(true)` for a scrape, `Some(false)` for a refusal, `None` while the head is incomplete.
pub fn metrics_request(bytes: &[u8]) -> Option<bool> {
    let end = head_end(bytes)?;
    Some(parse_head(&bytes[..end]).is_ok())
}

/// Reads fields off the fuzzer's bytes, front to back; zeros once they run out, so every input
/// decodes to something and a longer input refines a shorter one.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// One of `from` (not empty).
    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.u8()) % from.len()]
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// What is left.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An address the tables and routes know, or any.
    pub fn addr(&mut self) -> [u8; 4] {
        const KNOWN: [[u8; 4]; 7] = [HOST, HOST2, SERVER, OUTSIDE, OUTSIDE_B, PE_A_IP, LAN_ROUTER];
        match usize::from(self.u8()) % 8 {
            7 => [self.u8(), self.u8(), self.u8(), self.u8()],
            i => KNOWN[i],
        }
    }

    /// A port the sessions, forwards and probes use, or any.
    pub fn port(&mut self) -> u16 {
        match self.u8() % 5 {
            0 => 80,
            1 => 53,
            2 => 40000,
            3 => PROBE_ID,
            _ => self.u16(),
        }
    }

    /// A transport with the weights of the property tests' generator.
    pub fn transport(&mut self) -> Transport {
        match self.u8() % 10 {
            0..=2 => Transport::Tcp {
                flags: self.u8() & 0x3f,
                mss: self.bool(),
            },
            3 | 4 => Transport::Udp,
            5 => Transport::EchoRequest,
            6 => Transport::EchoReply,
            7 | 8 => self.error(),
            _ => Transport::Other,
        }
    }

    /// An ICMP error: the ones the router meets most, or any type and code.
    pub fn error(&mut self) -> Transport {
        let (msg_type, code) = match self.u8() % 5 {
            0 => (3, 3),
            1 => (3, 4),
            2 => (3, 1),
            3 => (11, 0),
            _ => (self.pick(&[3, 4, 5, 11, 12]), self.u8()),
        };
        Transport::Error { msg_type, code }
    }

    /// A frame case of the fast path's generator (`valid_frames`) arriving on `side` (0 = LAN,
    /// 1 and 2 = uplinks A and B).
    pub fn case(&mut self, side: u8) -> Case {
        let flow = (self.u8() < 154).then(|| usize::from(self.u8()) % FLOWS.len());
        let transport = self.transport();
        let ends = Ends {
            src: self.addr(),
            sport: self.port(),
            dst: self.addr(),
            dport: self.port(),
        };
        let ttl = match self.u8() % 4 {
            0 => 1,
            1 => 2,
            2 => 64,
            _ => self.u8(),
        };
        let df = self.bool();
        let frag = match self.u8() % 8 {
            6 => Frag::First,
            7 => Frag::Later {
                seeded: self.bool(),
                offset: 1 + self.u16() % 199,
            },
            _ => Frag::Whole,
        };
        let ident = self.u16();
        let payload = if self.u8().is_multiple_of(4) {
            // Large enough to need fragmenting (or "fragmentation needed") on uplink A.
            vec![self.u8(); 1300 + usize::from(self.u8() % 180)]
        } else {
            let n = usize::from(self.u8() % 64);
            self.take(n).to_vec()
        };
        let partial = self.bool();
        let gso = match self.u8() % 5 {
            3 => (crate::wire::vnet::gso::TCPV4, self.u16() % 2000),
            4 => (crate::wire::vnet::gso::UDP, self.u16() % 2000),
            _ => (crate::wire::vnet::gso::NONE, 0),
        };
        let our_mac = self.u8() >= 13;
        Case {
            side,
            flow,
            transport,
            ends,
            ttl,
            df,
            frag,
            ident,
            payload,
            partial,
            gso,
            our_mac,
        }
    }
}

/// One frame through the fast path on the LAN (`uplink` false) or an uplink, against the
/// seeded tables of `valid_frames`: seven inputs in eight a structurally valid frame decoded
/// from `data`, the rest raw bytes (behind a valid virtio_net_hdr and Ethernet header to the
/// router, or entirely raw). Panics if the outcome breaks `valid_frames::check`.
pub fn fastpath_frame(data: &[u8], uplink: bool) {
    let mut b = Bytes(data);
    let mode = b.u8();
    let side = if uplink { 1 + (mode >> 7) } else { 0 };
    with_seeded(|s| fastpath_case(s, b, mode, side));
}

/// Runs `f` on the seeded world of `valid_frames`, built once per thread and reset before each
/// use.
pub fn with_seeded<R>(f: impl FnOnce(&valid_frames::Seeded) -> R) -> R {
    thread_local! {
        static SEEDED: RefCell<Option<valid_frames::Seeded>> = const { RefCell::new(None) };
    }
    SEEDED.with_borrow_mut(|s| {
        let s = match s {
            Some(s) => {
                s.reset();
                s
            }
            None => s.insert(valid_frames::seeded()),
        };
        f(s)
    })
}

fn fastpath_case(s: &valid_frames::Seeded, mut b: Bytes, mode: u8, side: u8) {
    use crate::wire::frame::IP_OFFSET;
    let (ingress, before) = match mode & 7 {
        0 => {
            let ingress = match side {
                0 => Iface::Lan,
                n => Iface::Uplink(UplinkId(n - 1)),
            };
            let raw = b.rest();
            let frame = if mode & 8 == 0 {
                raw.to_vec()
            } else {
                let (dst, src) = match ingress {
                    Iface::Lan => (valid_frames::LAN_MAC, valid_frames::HOST_MAC),
                    Iface::Uplink(UplinkId(0)) => (valid_frames::A_MAC, valid_frames::PE_A),
                    Iface::Uplink(_) => (valid_frames::B_MAC, valid_frames::PE_A),
                };
                let mut f = valid_frames::eth(dst, src, raw);
                f.truncate(IP_OFFSET.max(IP_OFFSET + raw.len()));
                f
            };
            (ingress, frame)
        }
        _ => {
            let case = b.case(side);
            let (ingress, frame) = valid_frames::build(&case, s);
            if let Err(e) = valid_frames::frame_valid(&frame) {
                panic!("the generator built an invalid frame ({e}): {case:?}");
            }
            (ingress, frame)
        }
    };
    let mut after = before.clone();
    let (verdict, scratch) = valid_frames::run(&s.world, &mut after, ingress);
    if let Err(e) = valid_frames::check(s, ingress, &before, &after, verdict, &scratch) {
        panic!("{verdict:?} on {ingress:?}: {e}");
    }
}
