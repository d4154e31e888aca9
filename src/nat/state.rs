//! Session states and their timeouts (SPEC 12): TCP follows the flags it sees, UDP distinguishes
//! flows that were never answered (short timeout, so scans and DNS lookups leave quickly).

use std::time::Duration;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits as in the header's flags byte, the form the `tcp_flags` arguments take.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Idle timeout per session state; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP: SYN seen, no answer from the remote yet.
    pub tcp_syn: Duration,
    pub tcp_established: Duration,
    /// TCP after a FIN or RST in either direction.
    pub tcp_closing: Duration,
    /// UDP once the remote has answered.
    pub udp: Duration,
    /// UDP until the remote answers.
    pub udp_unreplied: Duration,
    /// ICMP query ids (and any other protocol the fast path chooses to translate).
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_syn: Duration::from_secs(30),
            tcp_established: Duration::from_secs(2 * 60 * 60),
            tcp_closing: Duration::from_secs(10),
            udp: Duration::from_secs(5 * 60),
            udp_unreplied: Duration::from_secs(30),
            icmp: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// Every timeout at most `max`.
    pub(super) fn capped(self, max: Duration) -> Timeouts {
        Timeouts {
            tcp_syn: self.tcp_syn.min(max),
            tcp_established: self.tcp_established.min(max),
            tcp_closing: self.tcp_closing.min(max),
            udp: self.udp.min(max),
            udp_unreplied: self.udp_unreplied.min(max),
            icmp: self.icmp.min(max),
        }
    }

    pub(super) fn for_state(&self, state: State) -> Duration {
        match state {
            State::TcpSyn => self.tcp_syn,
            State::TcpEstablished => self.tcp_established,
            State::TcpClosing => self.tcp_closing,
            State::Udp => self.udp,
            State::UdpUnreplied => self.udp_unreplied,
            State::Icmp | State::Other => self.icmp,
        }
    }
}

/// Which way a packet crosses the NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Inside host to the outside.
    Outbound,
    /// Outside to an inside host (a reply).
    Inbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    TcpSyn,
    TcpEstablished,
    TcpClosing,
    UdpUnreplied,
    Udp,
    Icmp,
    /// A protocol without ports that the fast path still chose to translate.
    Other,
}

impl State {
    /// State of a session created by an outbound packet.
    pub(super) fn initial(proto: u8, tcp_flags: u8) -> State {
        match proto {
            PROTO_TCP => State::TcpSyn.next(Direction::Outbound, tcp_flags),
            PROTO_UDP => State::UdpUnreplied,
            PROTO_ICMP => State::Icmp,
            _ => State::Other,
        }
    }

    /// State after a packet in `dir` with `tcp_flags` (0 for non-TCP).
    pub(super) fn next(self, dir: Direction, tcp_flags: u8) -> State {
        match self {
            State::TcpSyn | State::TcpEstablished | State::TcpClosing => {
                if tcp_flags & (TCP_RST | TCP_FIN) != 0 {
                    State::TcpClosing
                } else if dir == Direction::Outbound && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                    // A fresh SYN: the inside host reuses the 4-tuple for a new connection.
                    State::TcpSyn
                } else if self == State::TcpSyn
                    && dir == Direction::Inbound
                    && tcp_flags & TCP_ACK != 0
                {
                    // SYN-ACK, or any ACK from the remote for a session picked up mid-stream.
                    State::TcpEstablished
                } else {
                    self
                }
            }
            State::UdpUnreplied if dir == Direction::Inbound => State::Udp,
            other => other,
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            State::TcpSyn => "syn",
            State::TcpEstablished => "established",
            State::TcpClosing => "closing",
            State::Udp => "udp",
            State::UdpUnreplied => "udp-unreplied",
            State::Icmp => "icmp",
            State::Other => "other",
        }
    }
}
