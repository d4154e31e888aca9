//! `[[vrrp]]`: the VRRP groups on the LAN (SPEC 29).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

use super::super::raw::RawVrrp;
use super::super::{LanConfig, VRRP_OWNER_PRIORITY, VrrpConfig, VrrpTrack};
use super::{Ctx, Names, Result};

/// VRRP advertisement intervals are whole centiseconds, 12 bits (RFC 5798 §5.2.7); below 100 ms
/// a scheduling hiccup would already look like a dead master.
const VRRP_INTERVAL_CS: RangeInclusive<u64> = 10..=4095;

pub(super) fn groups(
    cx: &Ctx,
    raw: &[RawVrrp],
    lan: &LanConfig,
    tracks: &Names,
) -> Result<Vec<VrrpConfig>> {
    let mut out: Vec<VrrpConfig> = Vec::with_capacity(raw.len());
    // vrid -> line of its definition
    let mut vrids: HashMap<u8, usize> = HashMap::new();
    for g in raw {
        let vrid: u8 = cx.int(&g.vrid, "vrid", 1..=255)?;
        if let Some(first) = vrids.insert(vrid, cx.line(g.vrid.span().start)) {
            return Err(cx.err(
                g.vrid.span(),
                format!("vrrp vrid {vrid} is defined twice (first at line {first})"),
            ));
        }
        let addresses = addresses(cx, g, lan, &out)?;
        let owner = addresses.contains(&lan.address.addr());
        let priority = match (&g.priority, owner) {
            (None, true) => VRRP_OWNER_PRIORITY,
            (None, false) => 100,
            (Some(p), true) if *p.get_ref() != i64::from(VRRP_OWNER_PRIORITY) => {
                return Err(cx.err(
                    p.span(),
                    format!(
                        "priority must be 255: the LAN address {} is a virtual address (owner)",
                        lan.address.addr()
                    ),
                ));
            }
            (Some(_), true) => VRRP_OWNER_PRIORITY,
            (Some(p), false) if *p.get_ref() == i64::from(VRRP_OWNER_PRIORITY) => {
                return Err(cx.err(
                    p.span(),
                    "priority 255 is for the owner of the virtual addresses (the LAN address is not one of them)",
                ));
            }
            (Some(p), false) => cx.int(p, "priority", 1..=254)?,
        };
        let advert_interval_cs = match &g.advert_interval {
            Some(v) => {
                let d = cx.duration(v, "advert_interval")?;
                let cs = d.as_millis() / 10;
                if d.as_nanos() % 10_000_000 != 0
                    || !VRRP_INTERVAL_CS.contains(&u64::try_from(cs).unwrap_or(u64::MAX))
                {
                    return Err(cx.err(
                        v.span(),
                        format!(
                            "advert_interval {d:?} is not a whole number of centiseconds from 100ms to 40.95s"
                        ),
                    ));
                }
                cs as u16
            }
            None => 100,
        };
        let preempt_delay = match &g.preempt_delay {
            Some(v) => cx.duration(v, "preempt_delay")?,
            None => Duration::ZERO,
        };
        let mut group_tracks: Vec<VrrpTrack> = Vec::with_capacity(g.track.len());
        for t in &g.track {
            if owner {
                return Err(cx.err(
                    t.track.span(),
                    "track cannot lower the owner's priority 255",
                ));
            }
            let track = tracks.resolve(cx, &t.track)?;
            if group_tracks.iter().any(|o| o.track == track) {
                return Err(cx.err(
                    t.track.span(),
                    format!("track '{track}' appears twice in vrrp {vrid}"),
                ));
            }
            let decrement = cx.int(&t.decrement, "decrement", 1..=254)?;
            group_tracks.push(VrrpTrack { track, decrement });
        }
        out.push(VrrpConfig {
            vrid,
            addresses,
            priority,
            advert_interval_cs,
            preempt: g.preempt.unwrap_or(true),
            preempt_delay,
            tracks: group_tracks,
        });
    }
    Ok(out)
}

/// A group's virtual addresses: on the LAN, usable as hosts, each in one group only.
fn addresses(
    cx: &Ctx,
    g: &RawVrrp,
    lan: &LanConfig,
    earlier: &[VrrpConfig],
) -> Result<Vec<Ipv4Addr>> {
    let list = g.addresses.get_ref();
    if list.is_empty() {
        return Err(cx.err(g.addresses.span(), "addresses is empty"));
    }
    if list.len() > 255 {
        return Err(cx.err(g.addresses.span(), "more than 255 addresses"));
    }
    let net = lan.address.network();
    let mut out: Vec<Ipv4Addr> = Vec::with_capacity(list.len());
    for a in list {
        let addr = cx.addr(a, "addresses")?;
        if !lan.address.contains(addr) {
            return Err(cx.err(
                a.span(),
                format!("address {addr} is outside the LAN prefix {net}"),
            ));
        }
        if addr == net.addr() || addr == lan.address.broadcast() {
            return Err(cx.err(
                a.span(),
                format!("address {addr} is the network or broadcast address of {net}"),
            ));
        }
        if out.contains(&addr) {
            return Err(cx.err(a.span(), format!("address {addr} appears twice")));
        }
        if let Some(other) = earlier.iter().find(|o| o.addresses.contains(&addr)) {
            return Err(cx.err(
                a.span(),
                format!("address {addr} is already in vrrp {}", other.vrid),
            ));
        }
        out.push(addr);
    }
    Ok(out)
}
