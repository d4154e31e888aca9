//! The control socket: a Unix stream socket carrying one request line and one reply per
//! connection. The server thread only frames requests; the control thread answers them, so a
//! slow or garbage client can never stall the router.
//!
//! Reply format: a first line `ok` or `error: <message>`, then the body (text or JSON).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::io::poll::Waker;

/// Longest request accepted, in bytes.
pub const MAX_REQUEST: usize = 4096;

/// Rows `show nat` prints unless given `limit N`: a full table (262144 flows by default) would
/// hold the control thread for long.
pub const NAT_ROWS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Route,
    Uplinks,
    Probes,
    Tracks,
    Nat {
        uplink: Option<String>,
        address: Option<Ipv4Addr>,
        /// At most this many rows; the reply also says how many matched.
        limit: usize,
    },
    Arp,
    /// IPv6 prefixes (as advertised) and neighbours.
    Ipv6,
    Counters,
    Vrrp,
    DhcpLeases,
    Forwards,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Show {
        view: View,
        json: bool,
    },
    /// IPv4 or IPv6 (both ends of one family).
    Explain {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
        json: bool,
    },
    Reload,
    /// `clear counters`: `show counters` and `show uplinks` count from now on.
    ClearCounters,
    /// `clear nat [uplink NAME]`: remove the NAT flows (of one uplink).
    ClearNat {
        uplink: Option<String>,
    },
    /// The Prometheus text, for the metrics listener; not part of the socket's text protocol.
    Metrics,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("empty request")]
    Empty,
    #[error("unknown command '{0}' (expected show, explain, reload or clear)")]
    UnknownCommand(String),
    #[error(
        "unknown view '{0}' (expected route, uplinks, probes, tracks, nat, arp, ipv6, counters, vrrp, forwards or dhcp leases)"
    )]
    UnknownView(String),
    #[error("{0}")]
    Syntax(String),
}

impl Request {
    /// Parses one request line, e.g. `show nat uplink isp-a --json` or
    /// `explain 192.168.0.10 172.18.0.6 tcp 40000 80`.
    pub fn parse(line: &str) -> Result<Request, RequestError> {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let json = words.iter().any(|w| *w == "--json" || *w == "json");
        words.retain(|w| *w != "--json" && *w != "json");
        let (&cmd, rest) = words.split_first().ok_or(RequestError::Empty)?;
        match cmd {
            "show" => {
                let (&what, args) = rest.split_first().ok_or_else(|| {
                    RequestError::Syntax(
                        "show what? (route, uplinks, probes, tracks, nat, arp, ipv6, counters, vrrp, forwards, dhcp leases)"
                            .into(),
                    )
                })?;
                let view = match what {
                    "route" | "routes" => View::Route,
                    "uplinks" | "interfaces" => View::Uplinks,
                    "probes" | "sla" => View::Probes,
                    "tracks" | "track" => View::Tracks,
                    "arp" => View::Arp,
                    "ipv6" | "ndp" => View::Ipv6,
                    "counters" => View::Counters,
                    "vrrp" => View::Vrrp,
                    "dhcp" => match args {
                        ["leases"] => {
                            return Ok(Request::Show {
                                view: View::DhcpLeases,
                                json,
                            });
                        }
                        _ => return Err(RequestError::Syntax("usage: show dhcp leases".into())),
                    },
                    "forwards" | "forward" => View::Forwards,
                    "nat" => {
                        let mut uplink = None;
                        let mut address = None;
                        let mut limit = NAT_ROWS;
                        let mut it = args.iter();
                        while let Some(&k) = it.next() {
                            let v = it.next().ok_or_else(|| {
                                RequestError::Syntax(format!("'{k}' needs a value"))
                            })?;
                            match k {
                                "uplink" => uplink = Some(v.to_string()),
                                "address" => {
                                    address = Some(v.parse().map_err(|_| {
                                        RequestError::Syntax(format!(
                                            "'{v}' is not an IPv4 address"
                                        ))
                                    })?)
                                }
                                "limit" => {
                                    limit = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                                        RequestError::Syntax(format!(
                                            "limit '{v}' is not a positive number"
                                        ))
                                    })?
                                }
                                _ => {
                                    return Err(RequestError::Syntax(format!(
                                        "unknown nat filter '{k}' (uplink NAME, address IP, limit N)"
                                    )));
                                }
                            }
                        }
                        return Ok(Request::Show {
                            view: View::Nat {
                                uplink,
                                address,
                                limit,
                            },
                            json,
                        });
                    }
                    other => return Err(RequestError::UnknownView(other.to_string())),
                };
                if !args.is_empty() {
                    return Err(RequestError::Syntax(format!(
                        "unexpected '{}'",
                        args.join(" ")
                    )));
                }
                Ok(Request::Show { view, json })
            }
            "explain" => {
                let usage =
                    || RequestError::Syntax("usage: explain SRC DST PROTO [SPORT DPORT]".into());
                if rest.len() != 3 && rest.len() != 5 {
                    return Err(usage());
                }
                let ip = |s: &str| {
                    s.parse::<IpAddr>()
                        .map_err(|_| RequestError::Syntax(format!("'{s}' is not an IP address")))
                };
                let (src, dst) = (ip(rest[0])?, ip(rest[1])?);
                if src.is_ipv4() != dst.is_ipv4() {
                    return Err(RequestError::Syntax(
                        "SRC and DST must both be IPv4 or both IPv6".into(),
                    ));
                }
                let port = |s: &str| {
                    s.parse::<u16>()
                        .map_err(|_| RequestError::Syntax(format!("'{s}' is not a port")))
                };
                let proto = match rest[2] {
                    "tcp" => 6,
                    "udp" => 17,
                    "icmp" if src.is_ipv6() => 58,
                    "icmp" => 1,
                    n => n.parse().map_err(|_| {
                        RequestError::Syntax(format!(
                            "'{n}' is not a protocol (tcp, udp, icmp or a number)"
                        ))
                    })?,
                };
                let (sport, dport) = if rest.len() == 5 {
                    (port(rest[3])?, port(rest[4])?)
                } else {
                    (0, 0)
                };
                Ok(Request::Explain {
                    src,
                    dst,
                    proto,
                    sport,
                    dport,
                    json,
                })
            }
            "reload" if rest.is_empty() => Ok(Request::Reload),
            "reload" => Err(RequestError::Syntax("reload takes no arguments".into())),
            "clear" => match rest {
                ["counters"] => Ok(Request::ClearCounters),
                ["nat"] => Ok(Request::ClearNat { uplink: None }),
                ["nat", "uplink", name] => Ok(Request::ClearNat {
                    uplink: Some(name.to_string()),
                }),
                _ => Err(RequestError::Syntax(
                    "usage: clear counters | clear nat [uplink NAME]".into(),
                )),
            },
            other => Err(RequestError::UnknownCommand(other.to_string())),
        }
    }
    /// Whether the request changes the router; only root and the router's own user may send
    /// those, members of the control group only look.
    pub fn changes_router(&self) -> bool {
        matches!(
            self,
            Request::Reload | Request::ClearCounters | Request::ClearNat { .. }
        )
    }
}

/// A request handed to the control thread, with where to send the answer.
pub struct Pending {
    pub request: Request,
    pub reply: Sender<Result<String, String>>,
}

/// Binds the socket (replacing a stale one) and serves it on a thread of its own. The socket
/// is the router user's alone (0600), or with `group` also that group's (0660, read-only
/// requests only).
pub fn serve(
    path: &Path,
    group: Option<&str>,
    to_control: Sender<Pending>,
    waker: Arc<Waker>,
) -> io::Result<()> {
    let gid = group.map(group_id).transpose()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Only a socket is ours to replace: anything else at the path (a file given by
        // mistake, a symlink) is left alone and named.
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        // A live router would answer; a dead one left its socket behind.
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another router", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    // Created owner-only, so no one else can connect before the group is set: no chmod window.
    // SAFETY: umask only swaps the process's file-creation mask; restored right after bind.
    let old_mask = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old_mask) };
    let listener = bound?;
    if let Some(gid) = gid {
        // SAFETY: getegid has no preconditions.
        if gid != unsafe { libc::getegid() } {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    }
    std::thread::Builder::new()
        .name("ctl".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => handle(s, &to_control, &waker),
                    Err(e) => log::warn!("control socket: accept failed: {e}"),
                }
            }
        })?;
    Ok(())
}

/// The gid of a group name, from the system's group database.
fn group_id(name: &str) -> io::Result<libc::gid_t> {
    let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
    let mut grp = std::mem::MaybeUninit::<libc::group>::zeroed();
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live buffer of the stated size; the result points
    // into `grp` or is null.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            grp.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if found.is_null() {
        return Err(if rc != 0 {
            io::Error::from_raw_os_error(rc)
        } else {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("control_group '{name}' is not a group on this host"),
            )
        });
    }
    // SAFETY: getgrnam_r found the group and filled `grp`.
    Ok(unsafe { grp.assume_init() }.gr_gid)
}

/// The uid of the process at the other end of a Unix socket (SO_PEERCRED).
fn peer_uid(stream: &UnixStream) -> io::Result<libc::uid_t> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cred`, which we own.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Root and the router's own user may change the router; the control group only looks.
fn may_change_router(stream: &UnixStream) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    match peer_uid(stream) {
        Ok(uid) if uid == 0 || uid == own => Ok(()),
        Ok(uid) => Err(format!(
            "permission denied: only root or the router's user may do that (you are uid {uid})"
        )),
        Err(e) => Err(format!(
            "permission denied: cannot tell who is asking ({e})"
        )),
    }
}

/// A connection with one deadline for the whole request and one for the whole reply: the
/// socket's own timeouts bound each read or write, so a client sending (or reading) one byte
/// at a time would otherwise hold the serial server for hours.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: std::time::Instant,
}

impl Deadline<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self
            .until
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("not complete within {}s", CLIENT_DEADLINE.as_secs()),
            ));
        }
        Ok(left)
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How long a client has to send its request, and again to read the reply.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

fn handle(stream: UnixStream, to_control: &Sender<Pending>, waker: &Waker) {
    let mut line = String::new();
    let request = Deadline {
        stream: &stream,
        until: std::time::Instant::now() + CLIENT_DEADLINE,
    };
    let read = BufReader::new(request.take(MAX_REQUEST as u64 + 1)).read_line(&mut line);
    let answer = match read {
        Err(e) => Err(format!("bad request: {e}")),
        Ok(_) if line.len() > MAX_REQUEST => {
            Err(format!("request longer than {MAX_REQUEST} bytes"))
        }
        Ok(_) => Request::parse(&line)
            .map_err(|e| e.to_string())
            .and_then(|request| {
                if request.changes_router() {
                    may_change_router(&stream)?;
                }
                ask_control(request, to_control, waker)
            }),
    };
    let reply = match answer {
        Ok(body) => format!("ok\n{body}"),
        Err(e) => format!("error: {e}\n"),
    };
    let mut out = Deadline {
        stream: &stream,
        until: std::time::Instant::now() + CLIENT_DEADLINE,
    };
    let _ = out.write_all(reply.as_bytes());
}

/// Hands a request to the control thread and waits for its answer.
fn ask_control(
    request: Request,
    to_control: &Sender<Pending>,
    waker: &Waker,
) -> Result<String, String> {
    let (tx, rx) = bounded(1);
    if to_control.try_send(Pending { request, reply: tx }).is_err() {
        return Err("router busy".to_string());
    }
    waker.wake();
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| Err("router did not answer".to_string()))
}

/// Client side: sends `request` and returns the body, or the router's error message.
pub fn call(path: &Path, request: &str) -> Result<String, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is the router running? see --socket)",
            path.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    writeln!(s, "{request}").map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match reply.split_once('\n') {
        Some(("ok", body)) => Ok(body.to_string()),
        _ => Err(reply.trim().trim_start_matches("error: ").to_string()),
    }
}

/// Where the CLI looks for the socket: --socket, else the config's, else MHROUTER_SOCKET, else
/// the default.
pub fn socket_path(explicit: Option<PathBuf>, from_config: Option<PathBuf>) -> PathBuf {
    explicit
        .or(from_config)
        .or_else(|| std::env::var_os("MHROUTER_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

pub const DEFAULT_SOCKET: &str = "/run/mhrouter/mhrouter.sock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_views_and_filters() {
        assert_eq!(
            Request::parse("show route\n"),
            Ok(Request::Show {
                view: View::Route,
                json: false
            })
        );
        assert_eq!(
            Request::parse("show nat uplink isp-a address 192.168.0.10 --json"),
            Ok(Request::Show {
                view: View::Nat {
                    uplink: Some("isp-a".into()),
                    address: Some(Ipv4Addr::new(192, 168, 0, 10)),
                    limit: NAT_ROWS,
                },
                json: true
            })
        );
        assert_eq!(
            Request::parse("explain 192.168.0.10 172.18.0.6 tcp 40000 80"),
            Ok(Request::Explain {
                src: Ipv4Addr::new(192, 168, 0, 10).into(),
                dst: Ipv4Addr::new(172, 18, 0, 6).into(),
                proto: 6,
                sport: 40000,
                dport: 80,
                json: false
            })
        );
        assert_eq!(
            Request::parse("show forwards --json"),
            Ok(Request::Show {
                view: View::Forwards,
                json: true
            })
        );
        assert_eq!(Request::parse("reload"), Ok(Request::Reload));
        assert_eq!(
            Request::parse("show nat limit 5"),
            Ok(Request::Show {
                view: View::Nat {
                    uplink: None,
                    address: None,
                    limit: 5
                },
                json: false
            })
        );
        assert_eq!(Request::parse("clear counters"), Ok(Request::ClearCounters));
        assert_eq!(
            Request::parse("clear nat uplink isp-b"),
            Ok(Request::ClearNat {
                uplink: Some("isp-b".into())
            })
        );
        assert!(Request::parse("clear nat").unwrap().changes_router());
        assert!(!Request::parse("show route").unwrap().changes_router());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Request::parse("  "), Err(RequestError::Empty));
        assert!(matches!(
            Request::parse("rm -rf /"),
            Err(RequestError::UnknownCommand(_))
        ));
        assert!(matches!(
            Request::parse("show everything"),
            Err(RequestError::UnknownView(_))
        ));
        assert!(Request::parse("show route extra").is_err());
        assert!(Request::parse("show nat uplink").is_err());
        assert!(Request::parse("explain 1.2.3.4 5.6.7.8 tcp 1").is_err());
        assert!(Request::parse("explain 1.2.3.4 5.6.7.999 tcp").is_err());
        assert_eq!(
            Request::parse("explain 2001:db8:a:1::10 2001:db8:18::6 icmp"),
            Ok(Request::Explain {
                src: "2001:db8:a:1::10".parse().unwrap(),
                dst: "2001:db8:18::6".parse().unwrap(),
                proto: 58,
                sport: 0,
                dport: 0,
                json: false
            }),
            "icmp between IPv6 addresses is ICMPv6"
        );
        assert_eq!(
            Request::parse("explain 2001:db8:a:1::10 172.18.0.6 tcp"),
            Err(RequestError::Syntax(
                "SRC and DST must both be IPv4 or both IPv6".into()
            ))
        );
        assert!(Request::parse("reload now").is_err());
        assert!(Request::parse("show nat limit 0").is_err());
        assert!(Request::parse("show nat limit many").is_err());
        assert!(Request::parse("clear everything").is_err());
        assert!(Request::parse("clear nat isp-a").is_err());
    }

    fn served(path: &Path) -> io::Result<crossbeam_channel::Receiver<Pending>> {
        let (tx, rx) = bounded(4);
        serve(path, None, tx, Arc::new(Waker::new()?))?;
        Ok(rx)
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mhrouter.sock");
        std::fs::write(&path, "precious").unwrap();
        let err = served(&path).expect_err("refused");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    /// A client sending one byte at a time (each within the socket's per-read timeout) is cut
    /// off at the request deadline, long before its request would be complete.
    #[test]
    fn a_dribbling_client_is_cut_off_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let _requests = served(&path).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut reply = String::new();
        let mut sent = 0;
        // 40 bytes at 100 ms: twice the deadline, and a request never ending in a newline.
        while sent < 40 {
            if s.write_all(b"s").is_err() {
                break;
            }
            sent += 1;
            match s.read_to_string(&mut reply) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(sent < 40, "still connected after {sent} bytes");
        assert!(reply.starts_with("error: bad request"), "{reply:?}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = Request::parse(&s);
        }
    }
}
