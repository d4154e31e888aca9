//! Fills a NAT table with idle UDP sessions (issue 16): `bench/run.sh --nat-sweep` runs it on
//! the LAN host before measuring, so iperf3 crosses a table of 1 k, 100 k or 1 M sessions.
//!
//!     fill_sessions COUNT RATE_PPS
//!
//! Sends COUNT UDP datagrams with distinct 5-tuples from the host's own address: session `i`
//! goes from source port `BASE_PORT + i / DESTINATIONS` to 198.18.(i % DESTINATIONS) port 9,
//! so the first n sessions of a larger fill are the sessions of a smaller one and a sweep only
//! adds what is missing. 198.18.0.0/15 is the benchmarking range (RFC 2544): the lab's PE
//! blackholes it, so nothing answers and the sessions stay idle (unreplied). A session count
//! needs few inside endpoints (one source port per 4096 sessions), so NAT port mappings never
//! run out (the router maps one outside port per inside endpoint, RFC 4787).
//!
//! Paced at RATE_PPS with `sendmmsg` batches, since the router's LAN queue drops what it cannot
//! take; sending again is harmless (an existing session is only refreshed), so the caller
//! checks the router's count and runs it again if some were lost. Prints one JSON line:
//! {"sent": N, "seconds": S}.

use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Distinct destinations per source port (198.18.0.0 .. 198.18.15.255).
const DESTINATIONS: u32 = 4096;
const FIRST_DESTINATION: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const DESTINATION_PORT: u16 = 9;
/// Source ports BASE_PORT.. : 1 M sessions take 245 of them, well inside the ephemeral range's
/// lower neighbours that nothing in the lab binds.
const BASE_PORT: u16 = 20000;
const BATCH: usize = 64;

fn usage() -> ! {
    eprintln!("usage: fill_sessions COUNT RATE_PPS");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [count, rate] = &args[..] else { usage() };
    let count: u32 = count.parse().unwrap_or_else(|_| usage());
    let rate: u32 = rate.parse().unwrap_or_else(|_| usage());
    if rate == 0 {
        usage()
    }
    let start = Instant::now();
    match fill(count, rate) {
        Ok(sent) => println!(
            "{{\"sent\": {sent}, \"seconds\": {:.3}}}",
            start.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("fill_sessions: {e}");
            std::process::exit(1)
        }
    }
}

fn sockaddr(dst: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: DESTINATION_PORT.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn fill(count: u32, rate: u32) -> std::io::Result<u64> {
    let ports = count.div_ceil(DESTINATIONS);
    let payload = *b"mhrouter-fill";
    let mut sent = 0u64;
    let start = Instant::now();
    for p in 0..ports {
        let port = u16::try_from(u32::from(BASE_PORT) + p)
            .map_err(|_| std::io::Error::other("COUNT too large for the source port range"))?;
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))?;
        let in_port = (count - p * DESTINATIONS).min(DESTINATIONS);
        let mut d = 0;
        while d < in_port {
            let n = (in_port - d).min(BATCH as u32);
            let mut addrs: Vec<libc::sockaddr_in> = (d..d + n)
                .map(|i| sockaddr(Ipv4Addr::from(FIRST_DESTINATION + i)))
                .collect();
            let mut iov = libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            };
            let mut msgs: Vec<libc::mmsghdr> = addrs
                .iter_mut()
                .map(|a| {
                    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
                    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    m.msg_hdr.msg_name = (a as *mut libc::sockaddr_in).cast();
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    m.msg_hdr.msg_iov = &mut iov;
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            // SAFETY: msgs points at n headers whose names and iovec outlive the call.
            let r = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n, libc::MSG_DONTWAIT)
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    // The device queue is full: let it drain.
                    Some(libc::EAGAIN | libc::ENOBUFS) => {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            d += r as u32;
            sent += r as u64;
            // Pace: never ahead of RATE_PPS since the start.
            let due = Duration::from_secs_f64(sent as f64 / f64::from(rate));
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    Ok(sent)
}
