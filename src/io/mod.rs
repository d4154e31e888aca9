//! Thin platform I/O layer: TAP queues, AF_PACKET sockets (and their TPACKET_V3 receive ring),
//! link state, epoll.
//!
//! No policy lives here: these types open, read and write, and report errors; what to do with
//! frames and errors is decided by the data and control planes. Everything is Linux-only and
//! talks to libc directly.
//!
//! Network namespaces are per thread: sockets and TAP devices belong to the namespace of the
//! thread that creates them, and name-based calls ([`link::link_info`], [`tap::Tap::enslave`])
//! look names up in the calling thread's namespace.

pub mod link;
pub mod packet;
pub mod poll;
pub mod ring;
pub mod tap;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Length of the `virtio_net_hdr` prefix on every frame read from or written to a TAP queue or a
/// packet socket with the vnet header enabled.
pub const VNET_HDR_LEN: usize = 10;

/// Largest frame we read: 64 KiB GSO super-frame + Ethernet header + vnet header, rounded up.
pub const MAX_FRAME: usize = 65536 + 14 + VNET_HDR_LEN + 64;

/// Converts a libc return value into `io::Result`, retrying the call while it fails with EINTR.
fn retry<T: PartialOrd + Default>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let ret = call();
        if ret >= T::default() {
            return Ok(ret);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sets an integer socket option.
fn set_int_opt(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed matches its size; the kernel only
    // reads from the pointer.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a socket with close-on-exec set (and whatever flags `ty` carries, e.g. SOCK_NONBLOCK).
fn socket(domain: libc::c_int, ty: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
