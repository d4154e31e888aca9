//! IPv4 prefixes ("192.168.0.0/24") and interface addresses ("192.168.0.1/24").

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An address with a prefix length. `addr` may have host bits set (an interface address);
/// `network()` gives the prefix itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    addr: Ipv4Addr,
    len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("'{0}' is not an IPv4 prefix (expected a.b.c.d/len)")]
    Syntax(String),
    #[error("prefix length {0} is larger than 32")]
    Length(u8),
}

impl Ipv4Prefix {
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, PrefixError> {
        if len > 32 {
            return Err(PrefixError::Length(len));
        }
        Ok(Ipv4Prefix { addr, len })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Netmask as a host-order integer.
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Ipv4Prefix {
        Ipv4Prefix {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }

    /// True when `addr` has host bits set beyond the prefix length.
    pub fn has_host_bits(&self) -> bool {
        u32::from(self.addr) & !self.mask() != 0
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }

    /// True when the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Ipv4Prefix) -> bool {
        let len = self.len.min(other.len);
        let shorter = Ipv4Prefix {
            addr: self.addr,
            len,
        };
        shorter.contains(other.addr)
    }

    /// Directed broadcast address of the prefix.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl FromStr for Ipv4Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let syntax = || PrefixError::Syntax(s.to_string());
        let (a, l) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| syntax())?;
        if l.is_empty() || l.len() > 2 || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = l.parse().map_err(|_| syntax())?;
        Ipv4Prefix::new(addr, len)
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let p: Ipv4Prefix = "192.168.0.1/24".parse().unwrap();
        assert_eq!(p.network().to_string(), "192.168.0.0/24");
        assert!(p.has_host_bits());
        assert!(p.contains("192.168.0.200".parse().unwrap()));
        assert!(!p.contains("192.168.1.1".parse().unwrap()));
        assert_eq!(p.broadcast(), Ipv4Addr::new(192, 168, 0, 255));
        let d: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(d.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert!(d.overlaps(&p));
        assert!("1.2.3.4/33".parse::<Ipv4Prefix>().is_err());
        assert!("1.2.3.4".parse::<Ipv4Prefix>().is_err());
        assert!("1.2.3.4/+1".parse::<Ipv4Prefix>().is_err());
        let a: Ipv4Prefix = "172.16.1.1/30".parse().unwrap();
        let b: Ipv4Prefix = "172.16.1.4/30".parse().unwrap();
        assert!(!a.overlaps(&b));
    }
}
