//! AF_PACKET raw sockets bound to one interface, with batched receive (recvmmsg) and send
//! (sendmmsg).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{MAX_FRAME, retry, set_int_opt, socket};

/// How to open a [`PacketSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOptions {
    /// Every frame sent and received starts with the 10-byte virtio_net_hdr (PACKET_VNET_HDR).
    pub vnet_hdr: bool,
    /// false => protocol 0: a send-only socket that receives nothing.
    pub receive: bool,
    /// Join this PACKET_FANOUT_HASH group (flow hash; fragments are not reassembled). Only with
    /// `receive`.
    pub fanout_group: Option<u16>,
    /// SO_RCVBUF in bytes; 0 keeps the kernel default. Root may exceed rmem_max.
    pub rcvbuf: usize,
    /// SO_SNDBUF in bytes; 0 keeps the kernel default. Root may exceed wmem_max.
    pub sndbuf: usize,
}

/// A non-blocking AF_PACKET SOCK_RAW socket bound to one interface. Our own sends are never read
/// back (PACKET_IGNORE_OUTGOING).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
    vnet_hdr: bool,
}

impl PacketSocket {
    /// Binds to the interface by ifindex with ETH_P_ALL when receiving; PACKET_IGNORE_OUTGOING
    /// so our own sends are not read back; non-blocking.
    pub fn open(ifindex: u32, opts: &PacketOptions) -> io::Result<PacketSocket> {
        if opts.fanout_group.is_some() && !opts.receive {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a fanout group needs a receiving socket",
            ));
        }
        let ifindex_c = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        // Protocol 0 until bind: a socket created with ETH_P_ALL would already receive from every
        // interface of the namespace before the options and the bind below take effect.
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0)?;
        let raw = fd.as_raw_fd();
        if opts.vnet_hdr {
            set_int_opt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        }
        set_int_opt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        set_buf(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, opts.rcvbuf)?;
        set_buf(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, opts.sndbuf)?;
        if opts.receive {
            // The kernel's receive time of each frame (`RecvBatch::received`): probe round
            // trips end there, not when a busy worker gets to the frame.
            set_int_opt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
        }

        let protocol = if opts.receive {
            (libc::ETH_P_ALL as u16).to_be()
        } else {
            0
        };
        // SAFETY: sockaddr_ll is plain integers and arrays; all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = protocol;
        addr.sll_ifindex = ifindex_c;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let ret = unsafe {
            libc::bind(
                raw,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("bind AF_PACKET to ifindex {ifindex}: {err}"),
            ));
        }
        if let Some(group) = opts.fanout_group {
            // Fanout is joined after bind: the kernel requires a bound, running socket. A fanout
            // group has its own hook that ignores PACKET_IGNORE_OUTGOING: without the flag every
            // frame the router sends would be read back (kernels before 6.2 lack it: join without).
            let join = |flags: u32| {
                let arg = u32::from(group) | ((libc::PACKET_FANOUT_HASH | flags) << 16);
                set_int_opt(
                    raw,
                    libc::SOL_PACKET,
                    libc::PACKET_FANOUT,
                    arg as libc::c_int,
                )
            };
            match join(libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => join(0)?,
                other => other?,
            }
        }
        Ok(PacketSocket {
            fd,
            ifindex,
            vnet_hdr: opts.vnet_hdr,
        })
    }

    /// Sends one frame (starting with the vnet header when `vnet_hdr` is on) out of the bound
    /// interface. `Err(WouldBlock)` when the send buffer is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `frame`, borrowed for the call; the kernel
        // only reads it.
        let n = retry(|| unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
        })? as usize;
        if n != frame.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("packet socket took {n} of {} bytes", frame.len()),
            ));
        }
        Ok(())
    }

    /// Frames the kernel dropped for this socket since the last call (its receive buffer, or its
    /// [`super::ring::RxRing`], was full); reading `PACKET_STATISTICS` resets the kernel's counts.
    pub fn take_drops(&self) -> io::Result<u32> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: the pointer and length describe `stats`, which the kernel fills.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&raw mut stats).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stats.tp_drops)
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames carry the virtio_net_hdr ([`PacketOptions::vnet_hdr`]).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sets a buffer size, using the FORCE variant (root may exceed the sysctl cap) when permitted.
fn set_buf(fd: RawFd, force: libc::c_int, plain: libc::c_int, bytes: usize) -> io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    match set_int_opt(fd, libc::SOL_SOCKET, force, value) {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) => {
            set_int_opt(fd, libc::SOL_SOCKET, plain, value)
        }
        other => other,
    }
}

/// Room for one SCM_TIMESTAMPNS control message (a header and a timespec: 32 bytes on 64-bit)
/// and then some.
const CONTROL_WORDS: usize = 8;

/// The SCM_TIMESTAMPNS time (since the epoch) among the control messages recvmmsg wrote to `msg`.
fn timestamp(msg: &libc::msghdr) -> Option<Duration> {
    // SAFETY: `msg` was filled by recvmmsg: msg_control points to our buffer and msg_controllen
    // says how much of it the kernel wrote, which is all the CMSG macros read.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                return Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// Preallocated recvmmsg batch: `n` buffers of MAX_FRAME bytes, allocated once.
pub struct RecvBatch {
    /// `n` slots of MAX_FRAME bytes, back to back.
    buf: Vec<u8>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Control-message room per slot (the receive timestamp), 8-byte aligned.
    control: Vec<[u64; CONTROL_WORDS]>,
    /// (slot, length, kernel receive time since the epoch) of each frame kept by the last
    /// `recv`, in arrival order.
    frames: Vec<(usize, usize, Option<Duration>)>,
    truncated: u64,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` only ever point into `buf`, `iovecs` and
// `control`,
// heap allocations owned by this same value (moving the value does not move them), and they are
// rewritten before every syscall. Nothing is shared with another owner, so moving a RecvBatch to
// another thread is as safe as moving the Vecs themselves.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(n: usize) -> RecvBatch {
        let n = n.max(1);
        RecvBatch {
            buf: vec![0; n * MAX_FRAME],
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                };
                n
            ],
            // SAFETY: mmsghdr is plain integers and raw pointers; all-zero (null) is valid.
            headers: vec![unsafe { std::mem::zeroed() }; n],
            control: vec![[0; CONTROL_WORDS]; n],
            frames: Vec::with_capacity(n),
            truncated: 0,
        }
    }

    /// How many frames one `recv` can return.
    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// recvmmsg(MSG_DONTWAIT); returns how many frames arrived (0 when none). Frames with
    /// MSG_TRUNC are dropped and counted in `truncated`. Frames of the previous call are gone.
    pub fn recv(&mut self, sock: &PacketSocket) -> io::Result<usize> {
        self.frames.clear();
        for (((iov, hdr), slot), control) in self
            .iovecs
            .iter_mut()
            .zip(self.headers.iter_mut())
            .zip(self.buf.chunks_exact_mut(MAX_FRAME))
            .zip(self.control.iter_mut())
        {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            hdr.msg_hdr.msg_name = std::ptr::null_mut();
            hdr.msg_hdr.msg_namelen = 0;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = control.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let vlen = libc::c_uint::try_from(self.headers.len()).unwrap_or(libc::c_uint::MAX);
        let headers = self.headers.as_mut_ptr();
        // SAFETY: `headers` points to `vlen` initialised mmsghdr, each with one iovec that
        // describes a distinct MAX_FRAME slot of `self.buf` and a control buffer of its own in
        // `self.control`; all of them are exclusively borrowed through `&mut self` for the
        // call. No timeout pointer is passed.
        let got = match retry(|| unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                headers,
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        }) {
            Ok(got) => got as usize,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(err) => return Err(err),
        };
        for (slot, hdr) in self.headers.iter().take(got).enumerate() {
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
            } else {
                let len = (hdr.msg_len as usize).min(MAX_FRAME);
                self.frames.push((slot, len, timestamp(&hdr.msg_hdr)));
            }
        }
        Ok(self.frames.len())
    }

    /// Number of frames kept by the last `recv`.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The i-th received frame (exact length, vnet header included when enabled); empty when
    /// `i` is not below the count the last `recv` returned.
    pub fn frame(&self, i: usize) -> &[u8] {
        self.frames
            .get(i)
            .and_then(|&(slot, len, _)| self.buf.get(slot * MAX_FRAME..slot * MAX_FRAME + len))
            .unwrap_or_default()
    }

    /// When the kernel received the i-th frame (since the epoch), if it said.
    pub fn received(&self, i: usize) -> Option<Duration> {
        self.frames.get(i).and_then(|f| f.2)
    }

    /// The i-th received frame (exact length), mutable so it can be rewritten in place.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        match self.frames.get(i) {
            Some(&(slot, len, _)) => self
                .buf
                .get_mut(slot * MAX_FRAME..slot * MAX_FRAME + len)
                .unwrap_or_default(),
            None => &mut [],
        }
    }

    /// Frames dropped so far because they did not fit in MAX_FRAME.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

/// Messages per sendmmsg call; the headers live on the stack so sending allocates nothing.
const SEND_CHUNK: usize = 64;

/// Sends `frames` with sendmmsg, in as few calls as possible, and returns how many were sent.
///
/// Accepts `&[&[u8]]`, `&Vec<&[u8]>` or any iterator of borrowed frames (e.g.
/// `(0..n).map(|i| batch.frame(i))`). EAGAIN/ENOBUFS (queue full) drop the rest: the count says
/// how many went out. A frame the kernel rejects on its own (EMSGSIZE, EINVAL: e.g. a bad vnet
/// header) is skipped and not counted, so one bad frame does not cost the batch. Any other error
/// is returned; frames before it may have been sent.
pub fn send_all<'a, I, T>(sock: &PacketSocket, frames: I) -> io::Result<usize>
where
    I: IntoIterator<Item = &'a T>,
    T: AsRef<[u8]> + ?Sized + 'a,
{
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_CHUNK];
    // SAFETY: mmsghdr is plain integers and raw pointers; all-zero (null) is valid.
    let mut headers: [libc::mmsghdr; SEND_CHUNK] = unsafe { std::mem::zeroed() };
    let mut frames = frames.into_iter().peekable();
    let mut sent = 0;
    while frames.peek().is_some() {
        let mut filled = 0;
        for (iov, frame) in iovecs.iter_mut().zip(frames.by_ref()) {
            let bytes: &'a [u8] = frame.as_ref();
            // The kernel only reads through this pointer; the cast to *mut is what iovec wants.
            iov.iov_base = bytes.as_ptr().cast_mut().cast();
            iov.iov_len = bytes.len();
            filled += 1;
        }
        for (hdr, iov) in headers.iter_mut().zip(iovecs.iter_mut()).take(filled) {
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_len = 0;
        }
        let mut start = 0;
        while start < filled {
            let (sent_now, stop) =
                send_chunk(sock, headers.get_mut(start..filled).unwrap_or_default())?;
            sent += sent_now;
            if stop {
                return Ok(sent);
            }
            // Skip past the sent frames and, if the kernel refused one, that frame too.
            start += sent_now.max(1);
        }
    }
    Ok(sent)
}

/// One sendmmsg over `headers`. Returns (frames sent, whether to stop because the queue is full).
/// A frame the kernel refuses on its own is reported as 0 sent, not stopping.
fn send_chunk(sock: &PacketSocket, headers: &mut [libc::mmsghdr]) -> io::Result<(usize, bool)> {
    let vlen = libc::c_uint::try_from(headers.len()).unwrap_or(libc::c_uint::MAX);
    let ptr = headers.as_mut_ptr();
    // SAFETY: `ptr` points to `vlen` initialised mmsghdr, each with one iovec describing a frame
    // the caller borrows for at least this call; the kernel only reads the frames and writes
    // `msg_len`.
    match retry(|| unsafe { libc::sendmmsg(sock.as_raw_fd(), ptr, vlen, 0) }) {
        // sendmmsg reports the error of the first message only when none was sent.
        Ok(n) => Ok((n as usize, false)),
        Err(err) => match err.raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS) => Ok((0, true)),
            Some(libc::EMSGSIZE | libc::EINVAL) => Ok((0, false)),
            _ => Err(err),
        },
    }
}
