//! IPv6 (SPEC 32): `[lan] ipv6` and each uplink's provider prefix (`prefix6`), the LAN /64
//! carved from it (`subnet_id` or `lan_prefix6`), and the router's address and next hop on the
//! uplink's link (`address6`, `next_hop6`). A prefix is static, or `"dhcpv6-pd"`: delegated by
//! DHCPv6 on the uplink, the LAN's /64 then numbered by `subnet_id` alone (what the prefix
//! will be is not known here). NPTv6's internal prefix is checked in `npt6.rs`.

use std::net::Ipv6Addr;

use super::super::raw::{RawLan, RawUplink};
use super::super::{Ipv6Config, PdConfig, ProviderPrefix, Uplink6Config, UplinkConfig};
use super::{Ctx, Result, S};
use crate::prefix6::Ipv6Prefix;

/// The LAN gets a /64 of each provider prefix: SLAAC needs exactly 64 bits of interface id.
pub(super) const LAN_PREFIX_LEN: u8 = 64;
/// `prefix6` for a prefix delegated by DHCPv6 (SPEC 32).
const PD: &str = "dhcpv6-pd";

pub(super) fn ipv6(
    cx: &Ctx,
    lan: &RawLan,
    raw: &[RawUplink],
    uplinks: &[UplinkConfig],
) -> Result<Option<Ipv6Config>> {
    let enabled = lan.ipv6.as_ref().is_some_and(|e| *e.get_ref());
    if let Some(v) = lan.npt6_prefix.as_ref().filter(|_| !enabled) {
        return Err(cx.err(v.span(), "npt6_prefix needs ipv6 = true"));
    }
    let mut out: Vec<Option<Uplink6Config>> = Vec::with_capacity(raw.len());
    for (u, named) in raw.iter().zip(uplinks) {
        let Some(p) = &u.prefix6 else {
            let stray = [&u.address6, &u.next_hop6, &u.lan_prefix6]
                .into_iter()
                .flatten()
                .next();
            if let Some(v) = stray {
                return Err(cx.err(v.span(), "address6, next_hop6 and lan_prefix6 need prefix6"));
            }
            if let Some(id) = &u.subnet_id {
                return Err(cx.err(id.span(), "subnet_id needs prefix6"));
            }
            out.push(None);
            continue;
        };
        if !enabled {
            return Err(cx.err(p.span(), "prefix6 needs [lan] ipv6 = true"));
        }
        let (provider, pd) = if p.get_ref() == PD {
            (None, Some(pd(cx, u)?))
        } else {
            let prefix = provider_prefix(cx, p)?;
            if let Some((other, name)) = out.iter().zip(uplinks).find_map(|(o, n)| {
                o.as_ref()
                    .and_then(|o| o.provider)
                    .filter(|o| o.prefix.overlaps(&prefix))
                    .map(|o| (o, n))
            }) {
                return Err(cx.err(
                    p.span(),
                    format!(
                        "prefix6 {prefix} overlaps prefix6 {} of uplink '{}'",
                        other.prefix, name.name
                    ),
                ));
            }
            let lan_prefix = lan_prefix(cx, u, &prefix)?;
            (Some(ProviderPrefix { prefix, lan_prefix }), None)
        };
        let address = match &u.address6 {
            Some(a) => Some(address(cx, a)?),
            None => None,
        };
        let Some(hop) = &u.next_hop6 else {
            return Err(cx.err(
                p.span(),
                format!("uplink '{}' has prefix6 but no next_hop6", named.name),
            ));
        };
        let next_hop = next_hop(cx, hop, address)?;
        out.push(Some(Uplink6Config {
            provider,
            pd,
            address,
            next_hop,
        }));
    }
    if !enabled {
        return Ok(None);
    }
    // The link addresses are the ISPs', outside what they delegate: one inside a provider
    // prefix would make source-based routing send its own packets the wrong way.
    for (u, cfg) in raw.iter().zip(&out) {
        let (Some(v), Some(a)) = (&u.address6, cfg.as_ref().and_then(|c| c.address)) else {
            continue;
        };
        if let Some(p) = out
            .iter()
            .flatten()
            .filter_map(|o| o.provider)
            .find(|o| o.prefix.contains(a.addr()))
        {
            return Err(cx.err(
                v.span(),
                format!("address6 {} is inside prefix6 {}", a.addr(), p.prefix),
            ));
        }
    }
    if out.iter().all(Option::is_none) {
        let span = lan.ipv6.as_ref().map_or(0..0, |e| e.span());
        return Err(cx.err(span, "ipv6 = true needs at least one uplink with prefix6"));
    }
    let npt6_prefix = super::npt6::npt6_prefix(cx, lan, raw, &out)?;
    Ok(Some(Ipv6Config {
        uplinks: out,
        npt6_prefix,
    }))
}

pub(super) fn parse(cx: &Ctx, v: &S<String>, key: &str) -> Result<Ipv6Prefix> {
    v.get_ref()
        .parse()
        .map_err(|e| cx.err(v.span(), format!("{key}: {e}")))
}

/// Not a prefix anyone could route to this site: link-local, multicast, loopback, unspecified.
pub(super) fn is_unroutable(p: &Ipv6Prefix) -> bool {
    let a = p.addr();
    a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local()
}

/// `prefix6 = "dhcpv6-pd"`: only `subnet_id` numbers the LAN's /64; whether the delegated
/// prefix has that /64 is checked when it comes.
fn pd(cx: &Ctx, u: &RawUplink) -> Result<PdConfig> {
    if let Some(v) = &u.lan_prefix6 {
        return Err(cx.err(
            v.span(),
            format!("lan_prefix6 cannot be used with prefix6 = \"{PD}\": give subnet_id"),
        ));
    }
    let subnet_id = match &u.subnet_id {
        None => 0,
        Some(id) => u128::try_from(*id.get_ref())
            .map_err(|_| cx.err(id.span(), format!("subnet_id {} is negative", id.get_ref())))?,
    };
    Ok(PdConfig { subnet_id })
}

fn provider_prefix(cx: &Ctx, v: &S<String>) -> Result<Ipv6Prefix> {
    let p: Ipv6Prefix = v
        .get_ref()
        .parse()
        .map_err(|e| cx.err(v.span(), format!("prefix6: {e}, or \"{PD}\"")))?;
    if p.has_host_bits() {
        return Err(cx.err(
            v.span(),
            format!(
                "prefix6 {p} has host bits set (did you mean {}?)",
                p.network()
            ),
        ));
    }
    if p.prefix_len() > LAN_PREFIX_LEN {
        return Err(cx.err(
            v.span(),
            format!("prefix6 {p} is longer than /64: the LAN needs a /64 of it"),
        ));
    }
    if is_unroutable(&p) || p.prefix_len() == 0 {
        return Err(cx.err(
            v.span(),
            format!("prefix6 {p} is not a routable unicast prefix"),
        ));
    }
    Ok(p)
}

/// The LAN /64: `lan_prefix6` inside the provider prefix, else subnet `subnet_id` (default 0,
/// the first /64).
fn lan_prefix(cx: &Ctx, u: &RawUplink, provider: &Ipv6Prefix) -> Result<Ipv6Prefix> {
    let bits = LAN_PREFIX_LEN - provider.prefix_len();
    match (&u.lan_prefix6, &u.subnet_id) {
        (Some(_), Some(id)) => Err(cx.err(id.span(), "give lan_prefix6 or subnet_id, not both")),
        (Some(v), None) => {
            let p = parse(cx, v, "lan_prefix6")?;
            if p.prefix_len() != LAN_PREFIX_LEN || p.has_host_bits() {
                return Err(cx.err(v.span(), format!("lan_prefix6 {p} is not a /64 prefix")));
            }
            if !provider.contains(p.addr()) {
                return Err(cx.err(
                    v.span(),
                    format!("lan_prefix6 {p} is outside prefix6 {provider}"),
                ));
            }
            Ok(p)
        }
        (None, Some(id)) => {
            let max = (1u128 << bits) - 1;
            let n = *id.get_ref();
            u128::try_from(n)
                .ok()
                .and_then(|n| provider.subnet(LAN_PREFIX_LEN, n))
                .ok_or_else(|| {
                    cx.err(
                        id.span(),
                        format!("subnet_id {n} is out of range 0..={max} for prefix6 {provider}"),
                    )
                })
        }
        (None, None) => provider
            .subnet(LAN_PREFIX_LEN, 0)
            .ok_or_else(|| cx.err(0..0, "prefix6 has no /64")),
    }
}

/// The router's address on the uplink's link, with the link's prefix length.
fn address(cx: &Ctx, v: &S<String>) -> Result<Ipv6Prefix> {
    let a = parse(cx, v, "address6")?;
    if is_unroutable(&a) {
        return Err(cx.err(
            v.span(),
            format!("address6 {} is not a global unicast address", a.addr()),
        ));
    }
    if a.prefix_len() < 127 && !a.has_host_bits() {
        return Err(cx.err(
            v.span(),
            format!(
                "address6 {} is the subnet-router anycast address of {}",
                a.addr(),
                a.network()
            ),
        ));
    }
    Ok(a)
}

/// The next hop: the PE's link-local address, or an address in `address6`'s prefix.
fn next_hop(cx: &Ctx, v: &S<String>, address: Option<Ipv6Prefix>) -> Result<Ipv6Addr> {
    let hop: Ipv6Addr = v.get_ref().parse().map_err(|_| {
        let s = v.get_ref().escape_debug();
        cx.err(v.span(), format!("next_hop6: '{s}' is not an IPv6 address"))
    })?;
    if hop.is_unicast_link_local() {
        return Ok(hop);
    }
    match address {
        Some(a) if a.addr() == hop => Err(cx.err(
            v.span(),
            format!("next_hop6 {hop} is the uplink's own address6"),
        )),
        Some(a) if a.contains(hop) && !hop.is_multicast() => Ok(hop),
        Some(a) => Err(cx.err(
            v.span(),
            format!(
                "next_hop6 {hop} is outside the uplink's prefix {}",
                a.network()
            ),
        )),
        None => Err(cx.err(
            v.span(),
            format!("next_hop6 {hop} is not link-local (fe80::/10) and the uplink has no address6"),
        )),
    }
}
