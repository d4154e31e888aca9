//! New TCP connections per second through a router (issue 16): the load `bench/run.sh` puts on
//! the session-creation path. Each connection is what a short web request costs a NAT: connect,
//! one byte each way, close (the client closes first, so the TIME_WAIT stays on the client).
//!
//!     cps server ADDR:PORT                          answers until killed
//!     cps client ADDR:PORT SECONDS CONCURRENCY      prints one JSON line
//!
//! The client keeps CONCURRENCY connections in flight (one thread each) for a warm-up second
//! (not counted: ARP, the router's first sessions, thread start) and then SECONDS, and prints
//! {"connections": N, "failed": F, "seconds": S, "cps": N/S} for the counted part. Built with
//! the benches (`cargo bench --bench cps --no-run`), so it is optimised and never part of the
//! router.
//!
//! The client's TIME_WAITs are its limit unless its namespace reuses them: at ~8 k/s the 28 k
//! default ephemeral ports are all in TIME_WAIT within 4 s, and every later connect() searches
//! the range (measured: 7.5 k/s in a fresh lab, 0.6 k/s in the next run). `bench/run.sh` sets
//! `net.ipv4.tcp_tw_reuse=1` and ports 1024-65535 in the LAN host's namespace first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const SERVER_THREADS: usize = 4;
const WARM_UP: Duration = Duration::from_secs(1);

fn usage() -> ! {
    eprintln!("usage: cps server ADDR:PORT | cps client ADDR:PORT SECONDS CONCURRENCY");
    std::process::exit(2)
}

fn main() {
    // `cargo bench` passes --bench to harness-less targets.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let addr = |s: &str| -> SocketAddr { s.parse().unwrap_or_else(|_| usage()) };
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", a] => server(addr(a)),
        ["client", a, seconds, concurrency] => {
            let seconds: u64 = seconds.parse().unwrap_or_else(|_| usage());
            let concurrency: usize = concurrency.parse().unwrap_or_else(|_| usage());
            client(addr(a), Duration::from_secs(seconds), concurrency.max(1))
        }
        // Without arguments (`cargo bench` running every bench) there is nothing to measure.
        [] => {}
        _ => usage(),
    }
}

fn server(addr: SocketAddr) {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("cps: cannot listen on {addr}: {e}");
            std::process::exit(1)
        }
    };
    let workers: Vec<_> = (0..SERVER_THREADS)
        .map(|_| {
            let listener = Arc::clone(&listener);
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let _ = answer(conn);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn answer(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte)?;
    conn.write_all(&byte)?;
    // Wait for the client's close, so the server never holds the TIME_WAIT.
    let _ = conn.read(&mut byte);
    Ok(())
}

fn one_connection(addr: SocketAddr) -> std::io::Result<()> {
    let mut conn = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_nodelay(true)?;
    conn.write_all(b"x")?;
    let mut byte = [0u8; 1];
    conn.read_exact(&mut byte)?;
    Ok(())
}

fn client(addr: SocketAddr, duration: Duration, concurrency: usize) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (done, failed, stop) = (done.clone(), failed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let counter = match one_connection(addr) {
                        Ok(()) => &done,
                        Err(_) => &failed,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(WARM_UP);
    let (done0, failed0) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let start = Instant::now();
    std::thread::sleep(duration);
    let n = done.load(Ordering::Relaxed) - done0;
    let nfailed = failed.load(Ordering::Relaxed) - failed0;
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    println!(
        "{{\"connections\": {n}, \"failed\": {nfailed}, \"seconds\": {seconds:.3}, \"cps\": {:.1}}}",
        n as f64 / seconds
    );
}
