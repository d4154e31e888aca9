//! Interface state: lookups and settings by name (ioctl), carrier events (rtnetlink).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{retry, socket};

/// What the kernel says about one interface right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// Operationally up (IFF_RUNNING): administratively up and the lower layer has carrier.
    pub carrier: bool,
    /// Administratively up (IFF_UP).
    pub up: bool,
}

/// Reads index, MAC address, MTU and flags of `name` (in the calling thread's namespace).
pub fn link_info(name: &str) -> io::Result<LinkInfo> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    ifreq_ioctl(&sock, libc::SIOCGIFINDEX, &mut req, name)?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote `ifru_ifindex`; every member of the
    // union is plain data, so reading it cannot produce an invalid value.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };

    ifreq_ioctl(&sock, libc::SIOCGIFHWADDR, &mut req, name)?;
    // SAFETY: as above, SIOCGIFHWADDR wrote `ifru_hwaddr`.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        // sa_data is c_char; the cast reinterprets the byte, it does not convert a number.
        *dst = *src as u8;
    }

    ifreq_ioctl(&sock, libc::SIOCGIFMTU, &mut req, name)?;
    // SAFETY: as above, SIOCGIFMTU wrote `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };

    let flags = get_flags(&sock, &mut req, name)?;
    Ok(LinkInfo {
        ifindex: u32::try_from(ifindex).unwrap_or(0),
        mac,
        mtu: u32::try_from(mtu).unwrap_or(0),
        // SIOCGIFFLAGS only carries the low 16 flag bits, so IFF_LOWER_UP is not visible here;
        // IFF_RUNNING is the kernel's "operationally up", which requires carrier.
        carrier: flags & libc::IFF_RUNNING != 0,
        up: flags & libc::IFF_UP != 0,
    })
}

/// Sets IFF_UP on `name`.
pub fn set_link_up(name: &str) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    let flags = get_flags(&sock, &mut req, name)?;
    if flags & libc::IFF_UP != 0 {
        return Ok(());
    }
    // ifru_flags is a c_short holding the low 16 bits; IFF_UP is bit 0, so the truncation is exact.
    req.ifr_ifru.ifru_flags = (flags | libc::IFF_UP) as libc::c_short;
    ifreq_ioctl(&sock, libc::SIOCSIFFLAGS, &mut req, name)
}

/// Sets the MTU of `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("MTU {mtu} too large")))?;
    ifreq_ioctl(&sock, libc::SIOCSIFMTU, &mut req, name)
}

fn get_flags(sock: &OwnedFd, req: &mut libc::ifreq, name: &str) -> io::Result<libc::c_int> {
    ifreq_ioctl(sock, libc::SIOCGIFFLAGS, req, name)?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote `ifru_flags` (plain data).
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    // Zero-extend: the flags are a bit set, not a signed number.
    Ok(libc::c_int::from(flags as u16))
}

/// A datagram socket to carry interface ioctls; any socket in the namespace would do.
pub(super) fn ctl_socket() -> io::Result<OwnedFd> {
    socket(libc::AF_INET, libc::SOCK_DGRAM, 0)
}

/// An `ifreq` naming `name`, validated to fit IFNAMSIZ with its terminating NUL.
pub(super) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?} (1 to {} bytes, no NUL)",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is plain data (arrays, integers, a union of those and a pointer that the
    // requests we issue never dereference); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Issues an interface ioctl; errors name the interface, and ENODEV reads as NotFound.
pub(super) fn ifreq_ioctl(
    sock: &OwnedFd,
    request: libc::Ioctl,
    req: &mut libc::ifreq,
    name: &str,
) -> io::Result<()> {
    // SAFETY: `req` is a valid, exclusively borrowed ifreq for the duration of the call, which is
    // the argument type every SIOC*IF* request we issue expects.
    retry(|| unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) })
        .map(drop)
        .map_err(|err| {
            if err.raw_os_error() == Some(libc::ENODEV) {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no interface named {name:?}"),
                )
            } else {
                io::Error::new(err.kind(), format!("{name}: ioctl {request:#x}: {err}"))
            }
        })
}

/// A link changed state (RTM_NEWLINK), or went away (RTM_DELLINK: reported down, no carrier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEvent {
    pub ifindex: u32,
    /// Operationally up (IFF_RUNNING), as in [`LinkInfo::carrier`].
    pub carrier: bool,
    pub up: bool,
}

/// Receive buffer for netlink datagrams: one RTM_NEWLINK is a few KiB at most.
const NETLINK_BUF: usize = 64 * 1024;

/// rtnetlink socket subscribed to RTNLGRP_LINK: carrier changes arrive as events (no polling).
pub struct LinkWatcher {
    fd: OwnedFd,
    buf: Vec<u8>,
    overrun: bool,
}

impl LinkWatcher {
    /// Subscribes to link events of the calling thread's namespace; the socket is non-blocking.
    pub fn new() -> io::Result<LinkWatcher> {
        let fd = socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )?;
        // SAFETY: sockaddr_nl is plain integers; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = libc::RTMGRP_LINK as u32;
        // SAFETY: `addr` is a valid sockaddr_nl and the length passed is its size.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkWatcher {
            fd,
            buf: vec![0; NETLINK_BUF],
            overrun: false,
        })
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending notification without blocking and returns the link events, oldest
    /// first (empty when nothing is pending).
    pub fn read_events(&mut self) -> io::Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        loop {
            // SAFETY: sockaddr_nl is plain integers; all-zero is valid.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let buf = &mut self.buf;
            // SAFETY: the buffer pointer and length describe `buf`, exclusively borrowed; `from`
            // and `from_len` are valid for writes and `from_len` holds the size of `from`.
            let received = retry(|| unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            });
            let n = match received {
                Ok(n) => n as usize,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(events),
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The kernel dropped notifications because we read too slowly.
                    self.overrun = true;
                    continue;
                }
                Err(err) => return Err(err),
            };
            // Only the kernel (port 0) speaks for link state.
            if from.nl_pid != 0 {
                continue;
            }
            parse_link_events(self.buf.get(..n).unwrap_or_default(), &mut events);
        }
    }

    /// True (once) if notifications were lost since the last call: the socket's buffer
    /// overflowed. The caller should then re-read the links it cares about with [`link_info`].
    pub fn take_overrun(&mut self) -> bool {
        std::mem::take(&mut self.overrun)
    }
}

const NLMSG_HDRLEN: usize = 16;
/// struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32.
const IFINFOMSG_LEN: usize = 16;

/// Appends the link events found in one netlink datagram. Stops at the first malformed header;
/// ignores every other message type.
pub(crate) fn parse_link_events(datagram: &[u8], out: &mut Vec<LinkEvent>) {
    let mut rest = datagram;
    while let (Some(len), Some(kind)) = (read_u32(rest, 0), read_u16(rest, 4)) {
        let len = len as usize;
        let Some(payload) = rest.get(NLMSG_HDRLEN..len) else {
            return;
        };
        let deleted = kind == libc::RTM_DELLINK;
        if (kind == libc::RTM_NEWLINK || deleted)
            && payload.len() >= IFINFOMSG_LEN
            && let (Some(index), Some(flags)) = (read_u32(payload, 4), read_u32(payload, 8))
        {
            out.push(LinkEvent {
                ifindex: index,
                carrier: !deleted && flags & libc::IFF_RUNNING as u32 != 0,
                up: !deleted && flags & libc::IFF_UP as u32 != 0,
            });
        }
        // Messages are padded to 4 bytes (NLMSG_ALIGN).
        let next = len.saturating_add(3) & !3;
        rest = rest.get(next..).unwrap_or_default();
    }
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One netlink message: header, ifinfomsg, then `attrs` bytes, padded to 4.
    fn message(kind: u16, index: u32, flags: u32, attrs: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // nlmsg flags, seq, pid
        m.extend_from_slice(&[0, 0, 1, 0]); // family, pad, type
        m.extend_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(attrs);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    const UP: u32 = libc::IFF_UP as u32;
    const RUNNING: u32 = libc::IFF_RUNNING as u32;

    #[test]
    fn parses_several_messages_in_one_datagram() {
        let mut d = message(libc::RTM_NEWLINK, 3, UP | RUNNING, &[1, 2, 3]);
        d.extend(message(libc::RTM_NEWLINK, 4, UP, &[]));
        d.extend(message(libc::RTM_NEWADDR, 5, UP | RUNNING, &[]));
        d.extend(message(libc::RTM_DELLINK, 6, UP | RUNNING, &[]));
        let mut out = Vec::new();
        parse_link_events(&d, &mut out);
        assert_eq!(
            out,
            vec![
                LinkEvent {
                    ifindex: 3,
                    carrier: true,
                    up: true
                },
                LinkEvent {
                    ifindex: 4,
                    carrier: false,
                    up: true
                },
                LinkEvent {
                    ifindex: 6,
                    carrier: false,
                    up: false
                },
            ]
        );
    }

    #[test]
    fn stops_at_a_length_that_overruns_the_datagram() {
        let mut d = message(libc::RTM_NEWLINK, 3, UP, &[]);
        let mut bad = message(libc::RTM_NEWLINK, 4, UP, &[]);
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        d.extend(bad);
        let mut out = Vec::new();
        parse_link_events(&d, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].ifindex, 3);
    }

    #[test]
    fn ignores_a_newlink_too_short_for_ifinfomsg() {
        let mut d = message(libc::RTM_NEWLINK, 3, UP, &[]);
        let short = (NLMSG_HDRLEN + 8) as u32;
        d[0..4].copy_from_slice(&short.to_ne_bytes());
        let mut out = Vec::new();
        parse_link_events(&d[..short as usize], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn rejects_bad_interface_names() {
        assert!(ifreq("").is_err());
        assert!(ifreq("a\0b").is_err());
        assert!(ifreq("0123456789abcdef").is_err());
        assert!(ifreq("0123456789abcde").is_ok());
    }

    proptest! {
        #[test]
        fn never_panics_and_never_invents_events(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            parse_link_events(&bytes, &mut out);
            prop_assert!(out.len() <= bytes.len() / (NLMSG_HDRLEN + IFINFOMSG_LEN));
        }

        #[test]
        fn round_trips_well_formed_messages(links in proptest::collection::vec((any::<u32>(), any::<u32>(), 0usize..9), 0..8)) {
            let mut d = Vec::new();
            for (index, flags, attrs) in &links {
                d.extend(message(libc::RTM_NEWLINK, *index, *flags, &vec![7; *attrs]));
            }
            let mut out = Vec::new();
            parse_link_events(&d, &mut out);
            let expected: Vec<LinkEvent> = links.iter().map(|(index, flags, _)| LinkEvent {
                ifindex: *index,
                carrier: flags & RUNNING != 0,
                up: flags & UP != 0,
            }).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
