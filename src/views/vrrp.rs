//! `show vrrp`: each group's engine status with its tracks (SPEC 29), as IOS shows it.

use std::fmt;

use serde::Serialize;

use super::State;
use crate::control::vrrp::GroupStatus;
use crate::track::TrackState;
use crate::wire::vrrp::virtual_mac;

/// `show vrrp`: the engine's status of each group with its tracks (SPEC 29).
pub(super) fn rows(st: &State) -> Vec<VrrpRow> {
    st.vrrp
        .iter()
        .map(|g| VrrpRow {
            virtual_mac: virtual_mac(g.vrid).to_string(),
            local: g.master == Some(st.cfg.lan.address.addr()),
            tracks: st
                .cfg
                .vrrp
                .iter()
                .find(|c| c.vrid == g.vrid)
                .map(|c| {
                    c.tracks
                        .iter()
                        .map(|t| VrrpTrackRow {
                            track: t.track.clone(),
                            state: st
                                .cfg
                                .track_index(&t.track)
                                .map_or(TrackState::Down, |i| st.tracks.state(i)),
                            decrement: t.decrement,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            group: g.clone(),
        })
        .collect()
}

#[derive(Serialize)]
pub(super) struct VrrpRow {
    #[serde(flatten)]
    group: GroupStatus,
    virtual_mac: String,
    /// The master is this router.
    local: bool,
    tracks: Vec<VrrpTrackRow>,
}

#[derive(Serialize)]
struct VrrpTrackRow {
    track: String,
    state: TrackState,
    decrement: u8,
}

/// IOS `show vrrp`.
impl fmt::Display for VrrpRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.group;
        let secs = |cs: u16| f64::from(cs) / 100.0;
        writeln!(f, "Lan - Group {}\n  State is {}", g.vrid, g.state)?;
        for a in &g.addresses {
            writeln!(f, "  Virtual IP address is {a}")?;
        }
        writeln!(f, "  Virtual MAC address is {}", self.virtual_mac)?;
        writeln!(
            f,
            "  Advertisement interval is {:.3} sec",
            secs(g.advert_interval_cs)
        )?;
        if g.preempt {
            writeln!(
                f,
                "  Preemption enabled, delay {:.3} sec",
                g.preempt_delay_ms as f64 / 1000.0
            )?;
        } else {
            writeln!(f, "  Preemption disabled")?;
        }
        writeln!(
            f,
            "  Priority is {} (configured {})",
            g.priority, g.configured_priority
        )?;
        for t in &self.tracks {
            writeln!(
                f,
                "    Track {} state {} decrement {}",
                t.track, t.state, t.decrement
            )?;
        }
        match (g.master, g.master_priority) {
            (Some(m), Some(p)) => {
                let local = if self.local { " (local)" } else { "" };
                writeln!(f, "  Master Router is {m}{local}, priority is {p}")?;
            }
            _ => writeln!(f, "  Master Router is unknown")?,
        }
        writeln!(
            f,
            "  Master Advertisement interval is {:.3} sec\n  Master Down interval is {:.3} sec",
            secs(g.master_adver_interval_cs),
            g.master_down_interval_ms as f64 / 1000.0
        )?;
        writeln!(
            f,
            "  {} state changes, {} advertisements sent, {} received",
            g.transitions, g.adverts_sent, g.adverts_received
        )
    }
}
