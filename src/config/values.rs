//! Parsers for the scalar value syntaxes of the configuration (durations, interface and object
//! names, MAC addresses, protocols, port ranges, DNS names). Each returns the message that
//! validation prefixes with the key and places at the value's line.

use std::time::Duration;

use super::PortRange;
use super::raw::Scalar;

/// Longest duration accepted anywhere: keeps `Instant + Duration` and the delay defaults
/// (3 x interval, 2 x delay_down) far from overflowing.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// "200ms", "3s", "5m", "2h", or an integer number of seconds.
pub(super) fn duration(v: &Scalar) -> Result<Duration, String> {
    let d = match v {
        Scalar::Int(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| format!("duration {n} is negative"))?,
        Scalar::Text(s) => {
            let bad = || {
                format!(
                    "'{s}' is not a duration (expected e.g. \"200ms\", \"3s\", \"5m\", \"2h\" or an integer number of seconds)"
                )
            };
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            if digits.is_empty() {
                return Err(bad());
            }
            let n: u64 = digits.parse().map_err(|_| bad())?;
            let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs);
            match unit {
                "ms" => Some(Duration::from_millis(n)),
                "s" => secs(1),
                "m" => secs(60),
                "h" => secs(3600),
                _ => return Err(bad()),
            }
            .ok_or_else(|| format!("duration '{s}' is too long"))?
        }
    };
    if d > MAX_DURATION {
        return Err(format!("duration {d:?} is too long (at most 8760h)"));
    }
    Ok(d)
}

/// A Linux interface name as the kernel accepts it (dev_valid_name): 1..=15 bytes, not "." or
/// "..", no '/', ':' or whitespace; control characters are refused too since a NUL would
/// silently truncate the name.
pub(super) fn ifname(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "'{s}' is not a valid interface name (1 to 15 characters)"
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("'{s}' is not a valid interface name"));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "'{}' is not a valid interface name (contains {:?})",
            s.escape_debug(),
            c
        ));
    }
    Ok(())
}

/// Object names (uplinks, routes, policies, probes, tracks): [A-Za-z0-9_.-]{1,32}, so they
/// are safe in logs, the control socket and hook environment variables.
pub(super) fn name(s: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a valid name (1 to 32 of A-Z a-z 0-9 _ . -)",
            s.escape_debug()
        ))
    }
}

/// "02:00:00:00:00:01" (also '-' separated); must be a unicast, non-zero address.
pub(super) fn mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("'{s}' is not a MAC address (expected xx:xx:xx:xx:xx:xx)");
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in out.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if out[0] & 1 != 0 {
        return Err(format!("MAC address {s} is a multicast address"));
    }
    if out == [0; 6] {
        return Err("MAC address 00:00:00:00:00:00 is not usable".to_string());
    }
    Ok(out)
}

pub(super) const PROTO_ICMP: u8 = 1;
pub(super) const PROTO_TCP: u8 = 6;
pub(super) const PROTO_UDP: u8 = 17;

/// "tcp" | "udp" | "icmp" | an IP protocol number 0..=255 (as integer or string).
pub(super) fn protocol(v: &Scalar) -> Result<u8, String> {
    let bad = |what: &str| {
        format!("protocol {what} is not \"tcp\", \"udp\", \"icmp\" or a number 0..=255")
    };
    match v {
        Scalar::Int(n) => u8::try_from(*n).map_err(|_| bad(&n.to_string())),
        Scalar::Text(s) => match s.as_str() {
            "tcp" => Ok(PROTO_TCP),
            "udp" => Ok(PROTO_UDP),
            "icmp" => Ok(PROTO_ICMP),
            _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().map_err(|_| bad(&format!("'{s}'")))
            }
            _ => Err(bad(&format!("'{s}'"))),
        },
    }
}

/// A destination port "5060" (or 5060) or a range "10000-20000"; ports are 1..=65535.
pub(super) fn port_range(v: &Scalar) -> Result<PortRange, String> {
    let port = |s: &str| -> Result<u16, String> {
        match s.parse::<u16>() {
            Ok(p) if p >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
            _ => Err(format!("port '{s}' is not a number 1..=65535")),
        }
    };
    let (first, last) = match v {
        Scalar::Int(n) => {
            let p = port(&n.to_string())?;
            (p, p)
        }
        Scalar::Text(s) => match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        },
    };
    if first > last {
        return Err(format!("port range {first}-{last} is empty (low > high)"));
    }
    Ok(PortRange { first, last })
}

/// A DNS name to query: "." (the root) or dot-separated labels of 1..=63 bytes, at most 253
/// bytes in all, printable ASCII without spaces.
pub(super) fn dns_name(s: &str) -> Result<(), String> {
    if s == "." {
        return Ok(());
    }
    let trimmed = s.strip_suffix('.').unwrap_or(s);
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 253
        && trimmed
            .split('.')
            .all(|l| (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_graphic()));
    if ok {
        Ok(())
    } else {
        Err(format!("'{}' is not a valid DNS name", s.escape_debug()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Scalar {
        Scalar::Text(s.to_string())
    }

    #[test]
    fn durations() {
        assert_eq!(duration(&text("200ms")), Ok(Duration::from_millis(200)));
        assert_eq!(duration(&text("3s")), Ok(Duration::from_secs(3)));
        assert_eq!(duration(&text("5m")), Ok(Duration::from_secs(300)));
        assert_eq!(duration(&text("2h")), Ok(Duration::from_secs(7200)));
        assert_eq!(duration(&Scalar::Int(7)), Ok(Duration::from_secs(7)));
        for bad in ["", "s", "3", "3 s", "1.5s", "-3s", "3d", "3S"] {
            assert!(duration(&text(bad)).is_err(), "{bad}");
        }
        assert!(duration(&Scalar::Int(-1)).is_err());
        assert!(duration(&text("99999999999999999999h")).is_err());
        assert!(duration(&text("8761h")).is_err());
        assert!(duration(&text("8760h")).is_ok());
    }

    #[test]
    fn interface_names() {
        assert!(ifname("wan-a").is_ok());
        assert!(ifname("fifteen-chars-x").is_ok());
        for bad in [
            "",
            "sixteen-chars-xx",
            "a/b",
            "a:b",
            "a b",
            ".",
            "..",
            "a\0b",
        ] {
            assert!(ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn object_names() {
        assert!(name("isp-a_1.x").is_ok());
        assert!(name(&"a".repeat(32)).is_ok());
        for bad in ["", "a b", "ä", "a/b", &"a".repeat(33)] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs() {
        assert_eq!(mac("02:00:00:00:00:01"), Ok([2, 0, 0, 0, 0, 1]));
        assert_eq!(mac("02-AA-bb-00-00-01"), Ok([2, 0xaa, 0xbb, 0, 0, 1]));
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
        ] {
            assert!(mac(bad).is_err(), "{bad}");
        }
        assert!(mac("01:00:5e:00:00:01").unwrap_err().contains("multicast"));
        assert!(mac("00:00:00:00:00:00").is_err());
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol(&text("tcp")), Ok(PROTO_TCP));
        assert_eq!(protocol(&text("udp")), Ok(PROTO_UDP));
        assert_eq!(protocol(&text("icmp")), Ok(PROTO_ICMP));
        assert_eq!(protocol(&text("47")), Ok(47));
        assert_eq!(protocol(&Scalar::Int(255)), Ok(255));
        assert!(protocol(&Scalar::Int(256)).is_err());
        assert!(protocol(&text("sctp")).is_err());
        assert!(protocol(&text("+6")).is_err());
    }

    #[test]
    fn ports() {
        let r = |first, last| Ok(PortRange { first, last });
        assert_eq!(port_range(&text("5060")), r(5060, 5060));
        assert_eq!(port_range(&Scalar::Int(53)), r(53, 53));
        assert_eq!(port_range(&text("10000-20000")), r(10000, 20000));
        for bad in ["0", "65536", "20-10", "a", "1-", "-5", "+5", ""] {
            assert!(port_range(&text(bad)).is_err(), "{bad}");
        }
        assert!(port_range(&Scalar::Int(-1)).is_err());
    }

    #[test]
    fn dns_names() {
        for ok in [".", "probe.lab", "probe.lab.", "a"] {
            assert!(dns_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a..b", "a b", &"a".repeat(64)] {
            assert!(dns_name(bad).is_err(), "{bad}");
        }
    }
}
