//! TAP device with a virtio_net_hdr on every frame, one fd per queue.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::link::{ctl_socket, ifreq, ifreq_ioctl, link_info, set_link_up, set_mtu};
use super::{VNET_HDR_LEN, retry};

/// The Linux bridge "add interface" ioctl (linux/sockios.h); libc does not export it for Linux.
const SIOCBRADDIF: libc::Ioctl = 0x89a2;

/// A TAP device. Not persistent: it disappears when the last queue fd closes, whether the queues
/// are still held here or were handed out with [`Tap::take_queues`].
#[derive(Debug)]
pub struct Tap {
    name: String,
    ifindex: u32,
    queues: Vec<TapQueue>,
}

impl Tap {
    /// Creates (TUNSETIFF, not persistent: the device disappears when the last queue fd closes)
    /// `name` with `queues` queues (IFF_MULTI_QUEUE when queues > 1), vnet header always on,
    /// offloads on if `offload`. Sets the kernel MTU to `mtu`, brings it up. Fails with
    /// `ErrorKind::AlreadyExists` if an interface of that name exists already.
    pub fn create(name: &str, queues: usize, offload: bool, mtu: u32) -> io::Result<Tap> {
        if queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TAP needs at least one queue",
            ));
        }
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut fds = Vec::with_capacity(queues);
        for i in 0..queues {
            // IFF_TUN_EXCL on the first queue makes TUNSETIFF fail instead of attaching to an
            // existing device; later queues must attach to the one just created.
            let excl = if i == 0 { libc::IFF_TUN_EXCL } else { 0 };
            fds.push(open_queue(name, flags | excl)?);
        }
        let first = fds.first().map(AsRawFd::as_raw_fd).unwrap_or(-1);
        // The header size and the offloads are properties of the device, set through any queue.
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, which is live.
        retry(|| unsafe {
            libc::ioctl(first, libc::TUNSETVNETHDRSZ, &hdr_len as *const libc::c_int)
        })
        .map_err(|err| context(err, name, "TUNSETVNETHDRSZ"))?;
        // Zero when not requested, so the kernel never hands us GSO frames or partial checksums.
        let offloads = if offload {
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
        } else {
            0
        };
        // SAFETY: TUNSETOFFLOAD takes the flag set by value, no pointer.
        retry(|| unsafe { libc::ioctl(first, libc::TUNSETOFFLOAD, libc::c_ulong::from(offloads)) })
            .map_err(|err| context(err, name, "TUNSETOFFLOAD"))?;
        set_mtu(name, mtu)?;
        set_link_up(name)?;
        let ifindex = link_info(name)?.ifindex;
        Ok(Tap {
            name: name.to_owned(),
            ifindex,
            queues: fds.into_iter().map(|fd| TapQueue { fd }).collect(),
        })
    }

    /// Makes the TAP a port of `bridge` (SIOCBRADDIF). `ErrorKind::NotFound` if there is no
    /// interface named `bridge`; the kernel's EOPNOTSUPP if it is not a bridge.
    pub fn enslave(&self, bridge: &str) -> io::Result<()> {
        let sock = ctl_socket()?;
        let mut req = ifreq(bridge)?;
        req.ifr_ifru.ifru_ifindex = libc::c_int::try_from(self.ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifindex out of range"))?;
        ifreq_ioctl(&sock, SIOCBRADDIF, &mut req, bridge)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Hands the queue fds to workers (empty on a second call); the device lives while any
    /// queue fd is open.
    pub fn take_queues(&mut self) -> Vec<TapQueue> {
        std::mem::take(&mut self.queues)
    }
}

/// Opens /dev/net/tun and attaches it to `name` as one queue, non-blocking.
fn open_queue(name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|err| io::Error::new(err.kind(), format!("/dev/net/tun: {err}")))?;
    let fd = OwnedFd::from(file);
    let mut req = ifreq(name)?;
    // ifru_flags is a c_short; every IFF_* TUN flag we pass fits in 16 bits.
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq through the pointer; `req` is live and
    // exclusively borrowed for the call.
    retry(|| unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    })
    .map_err(|err| match err.raw_os_error() {
        Some(libc::EBUSY) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("cannot create TAP {name:?}: an interface of that name exists already"),
        ),
        _ => context(err, name, "TUNSETIFF"),
    })?;
    Ok(fd)
}

fn context(err: io::Error, name: &str, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("TAP {name}: {what}: {err}"))
}

/// One queue of a [`Tap`]: a non-blocking fd; every frame carries the 10-byte vnet header.
/// Reads and writes may happen from different threads (`&self`).
#[derive(Debug)]
pub struct TapQueue {
    fd: OwnedFd,
}

impl TapQueue {
    /// Reads one frame (vnet header included) into `buf`, returning its length.
    /// `Err(WouldBlock)` when no frame is queued. `buf` should hold [`super::MAX_FRAME`] bytes:
    /// a frame that does not fit is an `InvalidData` error.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, exclusively borrowed for the call.
        let n = retry(|| unsafe {
            libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
        })? as usize;
        if n == 0 {
            // A TAP never reports end of file while its fd is open; treat it as "nothing queued"
            // so a caller's drain loop ends.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // The TAP returns the full frame length even when it could copy only part of it.
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TAP frame of {n} bytes truncated to {}", buf.len()),
            ));
        }
        Ok(n)
    }

    /// Reads frames into `bufs` (their lengths into `lens`) until the queue is empty or every
    /// buffer is full: the workers' batch. Returns how many were read and the error that ended
    /// the batch early, if any (the frames before it are good).
    pub fn read_batch(
        &self,
        bufs: &mut [Vec<u8>],
        lens: &mut [usize],
    ) -> (usize, Option<io::Error>) {
        let mut n = 0;
        for (buf, len) in bufs.iter_mut().zip(lens.iter_mut()) {
            match self.read(buf) {
                Ok(got) => {
                    *len = got;
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return (n, Some(e)),
            }
        }
        (n, None)
    }

    /// Writes one frame (vnet header included). The kernel takes or rejects it whole.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `frame`, borrowed for the call; the kernel
        // only reads it.
        let n = retry(|| unsafe {
            libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len())
        })? as usize;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("TAP took {n} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
