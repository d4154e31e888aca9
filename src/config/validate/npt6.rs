//! NPTv6 (SPEC 33): `[lan] npt6_prefix`, the one internal /64 the LAN uses instead of the
//! providers' /64s. It must be a /64 (SLAAC, and each uplink's LAN /64 it is mapped to), and
//! must not overlap anything routed outside: a provider prefix or an uplink's link address.

use super::super::Uplink6Config;
use super::super::raw::{RawLan, RawUplink};
use super::ipv6::{LAN_PREFIX_LEN, is_unroutable, parse};
use super::{Ctx, Result};
use crate::prefix6::Ipv6Prefix;

/// The internal prefix, if NPTv6 is on; `uplinks` are the validated IPv6 uplinks.
pub(super) fn npt6_prefix(
    cx: &Ctx,
    lan: &RawLan,
    raw: &[RawUplink],
    uplinks: &[Option<Uplink6Config>],
) -> Result<Option<Ipv6Prefix>> {
    let Some(v) = &lan.npt6_prefix else {
        return Ok(None);
    };
    let p = parse(cx, v, "npt6_prefix")?;
    if p.prefix_len() != LAN_PREFIX_LEN || p.has_host_bits() {
        return Err(cx.err(
            v.span(),
            format!(
                "npt6_prefix {p} is not a /64 prefix (each uplink's LAN /64 is its translation)"
            ),
        ));
    }
    if is_unroutable(&p) {
        return Err(cx.err(
            v.span(),
            format!("npt6_prefix {p} is not a unicast prefix (use a ULA, fd00::/8)"),
        ));
    }
    for (u, c) in raw.iter().zip(uplinks) {
        let Some(c) = c else { continue };
        let name = u.name.get_ref();
        // A delegated prefix is checked against it when it comes.
        if let Some(pp) = c.provider.filter(|pp| pp.prefix.overlaps(&p)) {
            return Err(cx.err(
                v.span(),
                format!(
                    "npt6_prefix {p} overlaps prefix6 {} of uplink '{name}'",
                    pp.prefix
                ),
            ));
        }
        if let Some(a) = c.address.filter(|a| a.network().overlaps(&p)) {
            return Err(cx.err(
                v.span(),
                format!(
                    "npt6_prefix {p} overlaps address6 {} of uplink '{name}'",
                    a.network()
                ),
            ));
        }
    }
    Ok(Some(p))
}
