//! The DHCP server's lease file: bound leases kept across restarts.
//!
//! One lease per line after a version header:
//! `ADDRESS MAC EXPIRES_UNIX CLIENT_ID_HEX HOSTNAME|-`. Expiry is stored as wall-clock Unix
//! seconds (the engine's clock is monotonic and restarts with the router); `to_file` and
//! `from_file` convert with one (monotonic, wall) pair read together by the caller.
//!
//! A file that does not parse is an error naming FILE:LINE, never an empty lease table: the
//! router refuses to start rather than hand out addresses that clients still hold (the
//! operator fixes or removes the file). Writes go to a temporary file in the same directory,
//! are fsynced and renamed over the old one, so a crash leaves the old or the new file whole.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::server::{ClientId, Lease, LeaseState};
use crate::clock::Instant;
use crate::wire::ethernet::MacAddr;

const HEADER: &str = "# mhrouter dhcp leases v1";

#[derive(Debug, thiserror::Error)]
pub enum LeaseFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The wall clock and the monotonic clock read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub mono: Instant,
    pub unix: Duration,
}

impl Clocks {
    pub fn now() -> Clocks {
        Clocks {
            mono: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn to_unix(self, t: Instant) -> u64 {
        (self.unix + t.saturating_since(self.mono)).as_secs()
    }

    /// None when `unix` is already past.
    fn to_mono(self, unix: u64) -> Option<Instant> {
        let left = Duration::from_secs(unix).checked_sub(self.unix)?;
        Some(self.mono + left)
    }
}

/// The file's text for the bound leases among `leases`.
pub fn format(leases: &[Lease], clocks: Clocks) -> String {
    let mut s = format!("{HEADER}\n");
    for l in leases.iter().filter(|l| l.state == LeaseState::Bound) {
        let id: String = l.client.0.iter().map(|b| format!("{b:02x}")).collect();
        let host = l.hostname.as_deref().unwrap_or("-");
        let _ = writeln!(
            s,
            "{} {} {} {id} {host}",
            l.ip,
            l.mac,
            clocks.to_unix(l.expires)
        );
    }
    s
}

/// Parses the file's text; leases already expired are left out. `Err((line, message))`.
pub fn parse(text: &str, clocks: Clocks) -> Result<Vec<Lease>, (usize, String)> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, HEADER)) => {}
        _ => return Err((1, format!("first line is not '{HEADER}'"))),
    }
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [ip, mac, expires, id, host] = f[..] else {
            return Err((n, format!("expected 5 fields, found {}", f.len())));
        };
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| (n, format!("'{ip}' is not an IPv4 address")))?;
        let mac: MacAddr = mac
            .parse()
            .map_err(|_| (n, format!("'{mac}' is not a MAC address")))?;
        let expires: u64 = expires
            .parse()
            .map_err(|_| (n, format!("'{expires}' is not a Unix time")))?;
        let client = hex(id).ok_or_else(|| (n, format!("'{id}' is not a hex client id")))?;
        let hostname = (host != "-").then(|| host.to_string());
        if let Some(expires) = clocks.to_mono(expires) {
            out.push(Lease {
                ip,
                mac,
                client: ClientId(client),
                hostname,
                state: LeaseState::Bound,
                expires,
            });
        }
    }
    Ok(out)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads the lease file; a missing file is an empty table (first start).
pub fn load(path: &Path, clocks: Clocks) -> Result<Vec<Lease>, LeaseFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LeaseFileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse(&text, clocks).map_err(|(line, message)| LeaseFileError::Corrupt {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Replaces the lease file atomically: temporary file, fsync, rename, fsync of the directory.
pub fn save(path: &Path, leases: &[Lease], clocks: Clocks) -> Result<(), LeaseFileError> {
    let io = |source| LeaseFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(format(leases, clocks).as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clocks() -> Clocks {
        Clocks {
            mono: Instant::from_millis(5_000),
            unix: Duration::from_secs(1_800_000_000),
        }
    }

    fn lease(ip: u8, secs_left: u64) -> Lease {
        Lease {
            ip: Ipv4Addr::new(192, 168, 0, ip),
            mac: MacAddr([2, 0, 0, 0, 0, ip]),
            client: ClientId(vec![1, 2, 0, 0, 0, 0, ip]),
            hostname: ip.is_multiple_of(2).then(|| format!("host{ip}")),
            state: LeaseState::Bound,
            expires: clocks().mono + Duration::from_secs(secs_left),
        }
    }

    #[test]
    fn round_trip_keeps_bound_leases_and_drops_expired_ones() {
        let mut offered = lease(7, 30);
        offered.state = LeaseState::Offered;
        let text = format(&[lease(10, 3600), lease(11, 60), offered], clocks());
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(
            parse(&text, clocks()).unwrap(),
            vec![lease(10, 3600), lease(11, 60)]
        );
        // Two minutes later, after a restart (new monotonic origin), one lease is left with
        // its remaining time.
        let later = Clocks {
            mono: Instant::from_millis(1_000),
            unix: clocks().unix + Duration::from_secs(120),
        };
        let back = parse(&text, later).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[0].expires,
            later.mono + Duration::from_secs(3600 - 120)
        );
    }

    #[test]
    fn corrupt_files_are_errors_with_the_line() {
        let good = format(&[lease(10, 3600)], clocks());
        for (text, line, what) in [
            ("garbage\n".to_string(), 1, "first line"),
            (
                format!("{good}192.168.0.300 02:00:00:00:00:01 1 01 -\n"),
                3,
                "IPv4",
            ),
            (
                format!("{good}192.168.0.3 02:00:00:00:00 1 01 -\n"),
                3,
                "MAC",
            ),
            (
                format!("{good}192.168.0.3 02:00:00:00:00:01 x 01 -\n"),
                3,
                "Unix",
            ),
            (
                format!("{good}192.168.0.3 02:00:00:00:00:01 1 0g -\n"),
                3,
                "hex",
            ),
            (format!("{good}\n192.168.0.3\n"), 4, "5 fields"),
        ] {
            let (l, m) = parse(&text, clocks()).unwrap_err();
            assert_eq!(l, line, "{text}: {m}");
            assert!(m.contains(what), "{m}");
        }
    }

    #[test]
    fn save_is_atomic_and_load_reports_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases");
        assert!(
            load(&path, clocks()).unwrap().is_empty(),
            "missing file: no leases"
        );
        save(&path, &[lease(10, 3600)], clocks()).unwrap();
        assert_eq!(load(&path, clocks()).unwrap(), vec![lease(10, 3600)]);
        assert!(!dir.path().join("leases.tmp").exists());
        std::fs::write(&path, format!("{HEADER}\nnot a lease\n")).unwrap();
        let e = load(&path, clocks()).unwrap_err().to_string();
        assert!(e.ends_with("leases:2: expected 5 fields, found 3"), "{e}");
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("not a lease"),
            "a corrupt file is left as it is"
        );
    }
}
