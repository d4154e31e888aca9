//! The metrics listener: just enough HTTP/1.x for a Prometheus scrape, one request per
//! connection. Each connection gets a thread of its own (at most [`MAX_CLIENTS`] at once), so a
//! slow scraper never delays another. Those threads only frame requests and ask the control
//! thread over the control socket's channel (never blocking on it), so a slow or hostile client
//! costs at most its own time budget and never stalls the router.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};

use crate::control::socket::{Pending, Request};
use crate::io::poll::Waker;

/// Connections served at once; more are closed unanswered (a scraper retries at its next
/// interval), which bounds the threads a connection flood can cost.
pub const MAX_CLIENTS: usize = 8;
/// Longest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its whole head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Time the control thread has to answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After answering, unread input is drained for this long (at most `LINGER_BYTES`) before the
/// socket closes: closing with unread data sends a RST that can destroy the answer in flight.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a request gets no metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Malformed, too large or too slow.
    BadRequest,
    NotFound,
    MethodNotAllowed,
    /// The control thread is busy or did not answer in time.
    Unavailable,
    /// The control thread answered with an error.
    Internal,
}

impl Refusal {
    fn status(self) -> &'static str {
        match self {
            Refusal::BadRequest => "400 Bad Request",
            Refusal::NotFound => "404 Not Found",
            Refusal::MethodNotAllowed => "405 Method Not Allowed",
            Refusal::Unavailable => "503 Service Unavailable",
            Refusal::Internal => "500 Internal Server Error",
        }
    }
}

/// A valid scrape request; `head_only` for HEAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scrape {
    head_only: bool,
}

/// Binds `addr` and serves it on a thread of its own; returns the bound address (`addr` may
/// ask for port 0).
pub fn serve(
    addr: SocketAddr,
    to_control: Sender<Pending>,
    waker: Arc<Waker>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => serve_one(s, &active, &to_control, &waker),
                    Err(e) => {
                        log::warn!("metrics listener: accept failed: {e}");
                        // E.g. out of file descriptors: do not spin on it.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(bound)
}

/// Counts a connection thread for as long as it lives.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands the connection to a thread of its own, unless [`MAX_CLIENTS`] are busy.
fn serve_one(
    stream: TcpStream,
    active: &Arc<AtomicUsize>,
    to_control: &Sender<Pending>,
    waker: &Arc<Waker>,
) {
    if active.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
        active.fetch_sub(1, Ordering::Relaxed);
        log::debug!("metrics listener: {MAX_CLIENTS} connections busy, closing a new one");
        return;
    }
    let guard = Active(active.clone());
    let (to_control, waker) = (to_control.clone(), waker.clone());
    let spawned = std::thread::Builder::new()
        .name("metrics-conn".into())
        .spawn(move || {
            let _guard = guard;
            handle(stream, &to_control, &waker);
        });
    if let Err(e) = spawned {
        log::warn!("metrics listener: no thread for a connection: {e}");
    }
}

fn handle(mut stream: TcpStream, to_control: &Sender<Pending>, waker: &Waker) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buf = [0u8; MAX_HEAD];
    let answer = read_head(&mut stream, &mut buf)
        .and_then(|n| parse_head(buf.get(..n).unwrap_or_default()))
        .and_then(|s| Ok((s, ask_control(to_control, waker)?)));
    let sent = match answer {
        Ok((s, body)) => respond(&mut stream, "200 OK", CONTENT_TYPE, "", &body, s.head_only),
        Err(r) => {
            let allow = if r == Refusal::MethodNotAllowed {
                "Allow: GET, HEAD\r\n"
            } else {
                ""
            };
            let body = format!("{}\n", r.status());
            respond(
                &mut stream,
                r.status(),
                "text/plain; charset=utf-8",
                allow,
                &body,
                false,
            )
        }
    };
    if let Err(e) = sent {
        log::debug!("metrics listener: writing the answer: {e}");
    }
    linger(&mut stream, &mut buf);
}

/// Reads until the blank line that ends the head; returns the head's length.
fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize, Refusal> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut n = 0;
    loop {
        if let Some(end) = head_end(buf.get(..n).unwrap_or_default()) {
            return Ok(end);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(free) = buf
            .get_mut(n..)
            .filter(|f| !f.is_empty() && !left.is_zero())
        else {
            return Err(Refusal::BadRequest);
        };
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| Refusal::BadRequest)?;
        match stream.read(free) {
            Ok(0) => return Err(Refusal::BadRequest),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Refusal::BadRequest),
        }
    }
}

/// End of the head: after the first empty line (CRLF CRLF, or bare LFs as RFC 9112 allows).
pub(crate) fn head_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Checks the request line (headers are not needed): `GET|HEAD /metrics[?query] HTTP/1.x`.
pub(crate) fn parse_head(head: &[u8]) -> Result<Scrape, Refusal> {
    let line = head.split(|&c| c == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| Refusal::BadRequest)?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest);
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
    };
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(Refusal::BadRequest);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path != "/metrics" {
        return Err(Refusal::NotFound);
    }
    match method {
        "GET" => Ok(Scrape { head_only: false }),
        "HEAD" => Ok(Scrape { head_only: true }),
        _ => Err(Refusal::MethodNotAllowed),
    }
}

fn ask_control(to_control: &Sender<Pending>, waker: &Waker) -> Result<String, Refusal> {
    let (reply, answer) = bounded(1);
    to_control
        .try_send(Pending {
            request: Request::Metrics,
            reply,
        })
        .map_err(|_| Refusal::Unavailable)?;
    waker.wake();
    match answer.recv_timeout(CONTROL_TIMEOUT) {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => {
            log::warn!("metrics: the control thread refused: {e}");
            Err(Refusal::Internal)
        }
        Err(_) => Err(Refusal::Unavailable),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

fn linger(stream: &mut TcpStream, buf: &mut [u8]) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => drained += k,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn request_lines() {
        let p = |s: &str| parse_head(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Scrape { head_only: false })
        );
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.0\n\n"),
            Ok(Scrape { head_only: false })
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ok(Scrape { head_only: true })
        );
        assert_eq!(p("GET /nope HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(p("GET /metrics/ HTTP/1.1\r\n\r\n"), Err(Refusal::NotFound));
        assert_eq!(
            p("POST /metrics HTTP/1.1\r\n\r\n"),
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            p("get /metrics HTTP/1.1\r\n\r\n"),
            Err(Refusal::MethodNotAllowed)
        );
        for bad in [
            "",
            "\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
        ] {
            assert_eq!(p(bad), Err(Refusal::BadRequest), "{bad:?}");
        }
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(Refusal::BadRequest)
        );
    }

    #[test]
    fn head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = head_end(&b);
            let _ = parse_head(&b);
        }
    }

    const BODY: &str = "# HELP x x\n# TYPE x gauge\nx 1\n";

    /// A listener on an ephemeral loopback port, with a control thread that answers `Metrics`
    /// with `BODY`, or drops every request when `answer` is false.
    fn server(answer: bool) -> SocketAddr {
        let (tx, rx) = bounded::<Pending>(4);
        let waker = Arc::new(Waker::new().expect("eventfd"));
        thread::spawn(move || {
            for p in rx {
                if answer && p.request == Request::Metrics {
                    let _ = p.reply.send(Ok(BODY.to_string()));
                }
            }
        });
        serve("127.0.0.1:0".parse().expect("address"), tx, waker).expect("bind")
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(request).expect("send");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        reply
    }

    #[test]
    fn serves_scrapes_and_refuses_the_rest() {
        let addr = server(true);
        let ok = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("\r\nContent-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(
            ok.contains(&format!("\r\nContent-Length: {}\r\n", BODY.len())),
            "{ok}"
        );
        assert!(ok.ends_with(&format!("\r\n\r\n{BODY}")), "{ok}");

        let head = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );

        let nope = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(nope.starts_with("HTTP/1.1 404 "), "{nope}");
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(
            post.starts_with("HTTP/1.1 405 ") && post.contains("\r\nAllow: GET, HEAD\r\n"),
            "{post}"
        );
        let garbage = exchange(addr, b"\x16\x03\x01 hello\r\n\r\n");
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        let huge = exchange(
            addr,
            format!(
                "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(MAX_HEAD)
            )
            .as_bytes(),
        );
        assert!(huge.starts_with("HTTP/1.1 400 "), "{huge}");
        // Still serving after all that.
        assert!(exchange(addr, b"GET /metrics HTTP/1.0\n\n").ends_with(BODY));
    }

    #[test]
    fn a_silent_client_is_cut_off() {
        let addr = server(true);
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send");
        let start = Instant::now();
        let mut reply = String::new();
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.read_to_string(&mut reply).expect("reply");
        assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
        assert!(start.elapsed() < HEAD_TIMEOUT + Duration::from_secs(1));
    }

    #[test]
    fn a_slow_client_does_not_hold_up_a_scrape() {
        let addr = server(true);
        let mut slow = TcpStream::connect(addr).expect("connect");
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").expect("send");
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(ok.ends_with(BODY), "{ok}");
        // The slow one is still waiting for its head, not answered or cut off yet.
        slow.set_nonblocking(true).expect("nonblocking");
        let pending = slow.read(&mut [0u8; 64]).map_err(|e| e.kind());
        assert_eq!(pending, Err(io::ErrorKind::WouldBlock));
    }

    #[test]
    fn connections_beyond_the_bound_are_closed() {
        let addr = server(true);
        let mut held: Vec<TcpStream> = (0..MAX_CLIENTS)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // Each held connection has sent part of a head, so its thread exists and waits.
        for s in &mut held {
            s.write_all(b"GET /metrics").expect("send");
        }
        let mut extra = TcpStream::connect(addr).expect("connect");
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = extra.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut reply = Vec::new();
        let _ = extra.read_to_end(&mut reply);
        assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
        drop(held);
        // Threads end as their clients go; the listener serves again.
        let scrape = || -> io::Result<String> {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")?;
            let mut reply = String::new();
            s.read_to_string(&mut reply)?;
            Ok(reply)
        };
        let mut tries = 0;
        while !scrape().is_ok_and(|r| r.ends_with(BODY)) {
            tries += 1;
            assert!(tries < 100, "the listener never recovered");
            thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn no_answer_from_the_control_thread_is_503() {
        let addr = server(false);
        let reply = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    }
}
