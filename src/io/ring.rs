//! A TPACKET_V3 receive ring on an AF_PACKET socket: the kernel writes frames straight into a
//! memory map shared with us, in blocks it hands over whole, so receiving costs no system call
//! and no copy per frame (`RecvBatch` pays one recvmmsg per batch and copies every frame).
//!
//! Layout (Documentation/networking/packet_mmap.rst): `blocks` blocks of `block_size` bytes
//! back to back. Each block starts with a `tpacket_block_desc` whose `block_status` says who owns
//! it: TP_STATUS_KERNEL while the kernel fills it, TP_STATUS_USER once it is retired (full, or
//! `retire_ms` after its first frame). Its frames follow, each a `tpacket3_hdr` whose `tp_mac`
//! is the offset of the Ethernet header and `tp_next_offset` the offset of the next frame; with
//! PACKET_VNET_HDR the kernel writes the virtio_net_hdr just before `tp_mac`. We hand the block
//! back by writing TP_STATUS_KERNEL, in order, once every frame in it has been used.
//!
//! A frame longer than a block can hold is cut by the kernel (`tp_snaplen < tp_len`): it is
//! dropped here and counted in [`RxRing::truncated`], as `RecvBatch` does with MSG_TRUNC. When
//! every block is ours the kernel drops what arrives and counts it in PACKET_STATISTICS, which
//! [`PacketSocket::take_drops`] reads for the ring as for the socket's queue.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::packet::PacketSocket;
use super::{VNET_HDR_LEN, set_int_opt};

/// Shape of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    /// Bytes per block: a multiple of the page size. A frame must fit in one block with its
    /// headers, so a ring that receives GSO super-frames needs more than [`super::MAX_FRAME`].
    pub block_size: usize,
    pub blocks: usize,
    /// The kernel hands a block over this long after its first frame even if it is not full:
    /// the most a frame can wait when traffic is light.
    pub retire_ms: u32,
}

impl Default for RingOptions {
    /// 16 MiB, as the uplink sockets' receive buffer, in 256 KiB blocks: four 54 KB GRO frames
    /// fill one, so at 10 Gbit/s a block is handed over every ~0.2 ms.
    fn default() -> RingOptions {
        RingOptions {
            block_size: 256 << 10,
            blocks: 64,
            retire_ms: 1,
        }
    }
}

/// Offsets in `tpacket_block_desc`: version, offset_to_priv, then `tpacket_hdr_v1`.
const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
/// Offsets in `tpacket3_hdr`.
const HDR_NEXT: usize = 0;
const HDR_SEC: usize = 4;
const HDR_NSEC: usize = 8;
const HDR_SNAPLEN: usize = 12;
const HDR_LEN: usize = 16;
const HDR_MAC: usize = 24;
const HDR_SIZE: usize = size_of::<libc::tpacket3_hdr>();

/// Where reading stopped inside a block that still has frames.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    block: usize,
    left: u32,
    offset: usize,
}

/// A mapped TPACKET_V3 receive ring; frames are read in place (see the module doc).
pub struct RxRing {
    map: *mut u8,
    map_len: usize,
    block_size: usize,
    blocks: usize,
    vnet: usize,
    capacity: usize,
    /// The next block to look at once the cursor's is used up.
    next_block: usize,
    cursor: Option<Cursor>,
    /// Blocks whose every frame the last `recv` handed out: given back at the next one.
    used: Vec<usize>,
    /// (offset in the map, length, kernel receive time) of the frames of the last `recv`.
    frames: Vec<(usize, usize, Duration)>,
    truncated: u64,
}

// SAFETY: the map belongs to this value alone (nothing else holds its address), and the kernel's
// side of it is synchronised through the block status words, whoever the owning thread is.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Switches `sock` to TPACKET_V3 and maps a receive ring on it; from then on frames arrive
    /// here, not through `recv`/`RecvBatch`. One `recv` returns at most `capacity` frames. Fails
    /// with the kernel's error for a bad shape (EINVAL) or a socket that has a ring already.
    pub fn attach(sock: &PacketSocket, opts: RingOptions, capacity: usize) -> io::Result<RxRing> {
        let fd = sock.as_raw_fd();
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        let block_nr = u32::try_from(opts.blocks).map_err(|_| invalid("too many blocks"))?;
        let block_size =
            u32::try_from(opts.block_size).map_err(|_| invalid("block size too large"))?;
        let map_len = opts
            .block_size
            .checked_mul(opts.blocks)
            .ok_or_else(|| invalid("ring too large"))?;
        set_int_opt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V3 as libc::c_int,
        )?;
        // Frames are of any size in V3: one nominal "frame" per block satisfies the checks.
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: block_nr,
            tp_frame_size: block_size,
            tp_frame_nr: block_nr,
            tp_retire_blk_tov: opts.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        // SAFETY: `req` is a live tpacket_req3 and the length passed is its size.
        let ret = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                (&req as *const libc::tpacket_req3).cast(),
                size_of::<libc::tpacket_req3>() as libc::socklen_t,
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(err.kind(), format!("PACKET_RX_RING: {err}")));
        }
        // SAFETY: maps the ring the kernel just allocated for `fd`, shared, at an address of the
        // kernel's choosing; the result is checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("mmap of the ring: {err}"),
            ));
        }
        let capacity = capacity.max(1);
        Ok(RxRing {
            map: map.cast(),
            map_len,
            block_size: opts.block_size,
            blocks: opts.blocks,
            vnet: if sock.vnet_hdr() { VNET_HDR_LEN } else { 0 },
            capacity,
            next_block: 0,
            cursor: None,
            used: Vec::with_capacity(opts.blocks),
            frames: Vec::with_capacity(capacity),
            truncated: 0,
        })
    }

    /// How many frames one `recv` can return.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Gives back the blocks the previous call used up, then collects up to `capacity` frames
    /// from the blocks the kernel has handed over, oldest first; returns how many (0 when none).
    /// Frames of the previous call are gone.
    pub fn recv(&mut self) -> usize {
        self.frames.clear();
        for &block in &self.used {
            // Release: our reads (and writes) of the block happen before the kernel reuses it.
            self.status(block)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
        self.used.clear();
        while self.frames.len() < self.capacity {
            let mut cursor = match self.cursor {
                Some(c) => c,
                None => {
                    let block = self.next_block;
                    // Every block is ours: the ring wrapped onto one this call used up.
                    if self.used.contains(&block) {
                        break;
                    }
                    // Acquire: the kernel's writes of the block's frames are visible after this.
                    let st = self.status(block).load(Ordering::Acquire);
                    if st & libc::TP_STATUS_USER == 0 {
                        break;
                    }
                    self.next_block = (block + 1) % self.blocks;
                    Cursor {
                        block,
                        left: self.read_u32_at(block, BLOCK_NUM_PKTS),
                        offset: self.read_u32_at(block, BLOCK_FIRST_PKT) as usize,
                    }
                }
            };
            if cursor.left == 0 {
                self.used.push(cursor.block);
                self.cursor = None;
                continue;
            }
            self.take_frame(&cursor);
            cursor.left -= 1;
            cursor.offset += self.read_u32_at(cursor.block, cursor.offset + HDR_NEXT) as usize;
            self.cursor = Some(cursor);
        }
        // A block whose last frame was just taken is used up: give it back with the next call.
        if let Some(c) = self.cursor
            && c.left == 0
        {
            self.used.push(c.block);
            self.cursor = None;
        }
        self.frames.len()
    }

    /// Records the frame at the cursor, or counts it if the kernel cut it or its header does not
    /// fit in the block (which the kernel never writes; checked so a slice never leaves the map).
    fn take_frame(&mut self, c: &Cursor) {
        if c.offset + HDR_SIZE > self.block_size {
            self.truncated += 1;
            return;
        }
        let snaplen = self.read_u32_at(c.block, c.offset + HDR_SNAPLEN) as usize;
        let len = self.read_u32_at(c.block, c.offset + HDR_LEN) as usize;
        let mac = usize::from(self.read_u16_at(c.block, c.offset + HDR_MAC));
        let start = c.offset + mac;
        if snaplen < len || mac < self.vnet || start + snaplen > self.block_size {
            self.truncated += 1;
            return;
        }
        let stamp = Duration::new(
            u64::from(self.read_u32_at(c.block, c.offset + HDR_SEC)),
            self.read_u32_at(c.block, c.offset + HDR_NSEC),
        );
        let at = c.block * self.block_size + start - self.vnet;
        self.frames.push((at, self.vnet + snaplen, stamp));
    }

    /// The status word of `block`, shared with the kernel.
    fn status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: the word is inside the map (block < blocks), 4-byte aligned (blocks are
        // page-aligned) and lives as long as the map, which `&self` keeps alive.
        unsafe { AtomicU32::from_ptr(self.map.add(block * self.block_size + BLOCK_STATUS).cast()) }
    }

    /// A u32 at offset `at` of `block`; 0 past the block's end (offsets come from the kernel,
    /// so a slip never reads outside the map).
    fn read_u32_at(&self, block: usize, at: usize) -> u32 {
        if at + 4 > self.block_size {
            return 0;
        }
        // SAFETY: the offset is inside the map (block < blocks, at + 4 <= block_size) and the
        // block is ours (TP_STATUS_USER seen with Acquire), so the kernel does not write it.
        unsafe { std::ptr::read_unaligned(self.map.add(block * self.block_size + at).cast()) }
    }

    fn read_u16_at(&self, block: usize, at: usize) -> u16 {
        if at + 2 > self.block_size {
            return 0;
        }
        // SAFETY: as for `read_u32_at`.
        unsafe { std::ptr::read_unaligned(self.map.add(block * self.block_size + at).cast()) }
    }

    /// Number of frames returned by the last `recv`.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The i-th frame of the last `recv` (vnet header included when the socket has it); empty
    /// when `i` is out of range.
    pub fn frame(&self, i: usize) -> &[u8] {
        match self.frames.get(i) {
            // SAFETY: `take_frame` checked the frame lies inside its block, which stays ours
            // until the next `recv` (which needs `&mut self`, so this borrow has ended).
            Some(&(at, len, _)) => unsafe { std::slice::from_raw_parts(self.map.add(at), len) },
            None => &[],
        }
    }

    /// The i-th frame, mutable so it can be rewritten in place.
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        match self.frames.get(i) {
            // SAFETY: as in `frame`; `&mut self` makes this the only borrow of the map, and the
            // frames of one `recv` never overlap.
            Some(&(at, len, _)) => unsafe { std::slice::from_raw_parts_mut(self.map.add(at), len) },
            None => &mut [],
        }
    }

    /// When the kernel received the i-th frame (since the epoch).
    pub fn received(&self, i: usize) -> Option<Duration> {
        self.frames.get(i).map(|f| f.2)
    }

    /// Frames dropped so far because they did not fit in a block.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `attach` made; no slice into it outlives `self`.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}
