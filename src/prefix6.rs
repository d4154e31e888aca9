//! IPv6 prefixes ("2001:db8:a::/48"): provider prefixes, the LAN /64s carved from them
//! (SPEC 32), and the interface addresses in them.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// An address with a prefix length; `addr` may have host bits set (an interface address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Prefix {
    addr: Ipv6Addr,
    len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Prefix6Error {
    #[error("'{0}' is not an IPv6 prefix (expected like 2001:db8:a::/48)")]
    Syntax(String),
    #[error("prefix length {0} is larger than 128")]
    Length(u8),
}

impl Ipv6Prefix {
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Self, Prefix6Error> {
        if len > 128 {
            return Err(Prefix6Error::Length(len));
        }
        Ok(Ipv6Prefix { addr, len })
    }

    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    fn mask(&self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.len))
            .unwrap_or(0)
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Ipv6Prefix {
        Ipv6Prefix {
            addr: Ipv6Addr::from_bits(self.addr.to_bits() & self.mask()),
            len: self.len,
        }
    }

    pub fn has_host_bits(&self) -> bool {
        self.addr.to_bits() & !self.mask() != 0
    }

    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        (ip.to_bits() ^ self.addr.to_bits()) & self.mask() == 0
    }

    /// True when the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Ipv6Prefix) -> bool {
        let shorter = Ipv6Prefix {
            addr: self.addr,
            len: self.len.min(other.len),
        };
        shorter.contains(other.addr)
    }

    /// The `index`-th subnet of length `len` inside this prefix (a LAN /64 of a delegated
    /// /48: `subnet(64, id)`); None when `len` is shorter than this prefix or `index` does not
    /// fit in the bits between them.
    pub fn subnet(&self, len: u8, index: u128) -> Option<Ipv6Prefix> {
        if len < self.len || len > 128 {
            return None;
        }
        let bits = u32::from(len - self.len);
        if bits < 128 && index >> bits != 0 {
            return None;
        }
        let shifted = index.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Some(Ipv6Prefix {
            addr: Ipv6Addr::from_bits(self.network().addr.to_bits() | shifted),
            len,
        })
    }

    /// The address with interface identifier `iid` in this prefix (the low 128 − len bits).
    pub fn host(&self, iid: u128) -> Ipv6Addr {
        Ipv6Addr::from_bits(self.network().addr.to_bits() | (iid & !self.mask()))
    }
}

impl fmt::Display for Ipv6Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Prefix {
    type Err = Prefix6Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || Prefix6Error::Syntax(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Ipv6Prefix::new(addr, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Ipv6Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(p("2001:db8:a::/48").to_string(), "2001:db8:a::/48");
        assert_eq!(p("2001:db8:a::1/64").network(), p("2001:db8:a::/64"));
        assert!(p("2001:db8:a::1/64").has_host_bits() && !p("::/0").has_host_bits());
        for bad in [
            "2001:db8::",
            "2001:db8::/",
            "2001:db8::/+4",
            "10.0.0.0/8",
            "x/4",
            "::/1234",
        ] {
            assert!(bad.parse::<Ipv6Prefix>().is_err(), "{bad}");
        }
        assert_eq!(
            "::/129".parse::<Ipv6Prefix>(),
            Err(Prefix6Error::Length(129))
        );
    }

    #[test]
    fn contains_and_overlaps() {
        let a = p("2001:db8:a::/48");
        assert!(a.contains("2001:db8:a:ffff::1".parse().unwrap()));
        assert!(!a.contains("2001:db8:b::1".parse().unwrap()));
        assert!(p("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(a.overlaps(&p("2001:db8:a:5::/64")) && p("2001:db8:a:5::/64").overlaps(&a));
        assert!(!a.overlaps(&p("2001:db8:b::/48")));
    }

    #[test]
    fn subnets_and_hosts() {
        let a = p("2001:db8:a::/48");
        assert_eq!(a.subnet(64, 0), Some(p("2001:db8:a::/64")));
        assert_eq!(a.subnet(64, 0x12), Some(p("2001:db8:a:12::/64")));
        assert_eq!(a.subnet(64, 0xffff), Some(p("2001:db8:a:ffff::/64")));
        assert_eq!(a.subnet(64, 0x1_0000), None);
        assert_eq!(a.subnet(40, 0), None);
        assert_eq!(
            p("::/0").subnet(128, u128::MAX),
            Some(p("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
        );
        assert_eq!(
            p("2001:db8:a::/64").host(1),
            "2001:db8:a::1".parse::<Ipv6Addr>().unwrap()
        );
    }

    proptest! {
        #[test]
        fn subnet_is_inside(bits in any::<u128>(), len in 0u8..=128, extra in 0u8..=16, index in any::<u128>()) {
            let outer = Ipv6Prefix::new(Ipv6Addr::from_bits(bits), len).unwrap();
            let inner_len = len.saturating_add(extra).min(128);
            if let Some(inner) = outer.subnet(inner_len, index) {
                prop_assert!(outer.contains(inner.addr()));
                prop_assert!(!inner.has_host_bits());
            }
        }
    }
}
