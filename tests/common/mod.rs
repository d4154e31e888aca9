//! Shared harness for the integration tests: each test builds its own lab (scripts/lab.sh) with
//! its own namespace prefix, starts the real router in it, and tears everything down on drop.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Fails the test unless it runs as root. `MH_SKIP_ROOT_TESTS=1` turns that into a skip for
/// unprivileged developer machines: the test returns early, so libtest counts it as passed, and
/// one line at the binary's exit names every test skipped so no count overstates what ran.
/// Refused under CI (`CI` set), which must run everything.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("MH_SKIP_ROOT_TESTS").as_deref() != Ok("1") {
        panic!("this test needs root (network namespaces); set MH_SKIP_ROOT_TESTS=1 to skip it");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "MH_SKIP_ROOT_TESTS=1 is refused under CI: the lab tests must run"
    );
    let name = std::thread::current().name().unwrap_or("?").to_string();
    let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(report_skipped) };
    }
    skipped.push(name);
    false
}

static SKIPPED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Runs at exit, after libtest's summary, written to stderr directly (not captured by libtest).
extern "C" fn report_skipped() {
    use std::io::Write;
    let mut names = SKIPPED.lock().map(|v| v.clone()).unwrap_or_default();
    names.sort();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {} root-only tests (MH_SKIP_ROOT_TESTS=1), counted as passed above: {}",
        names.len(),
        names.join(", ")
    );
}

/// The installed default route's uplink and distance (`show route --json`).
pub fn installed(lab: &Lab) -> Option<(String, u64)> {
    let v = lab.ctl_json(&["show", "route"]);
    v["routes"].as_array()?.iter().find_map(|r| {
        (r["installed"] == true && r["prefix"] == "0.0.0.0/0").then(|| {
            (
                r["uplink"].as_str().unwrap_or("").to_string(),
                r["distance"].as_u64().unwrap_or(0),
            )
        })
    })
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Lab {
    pub prefix: String,
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Lab {
    /// Builds a fresh lab whose namespace prefix is `prefix` (unique per test) plus three hex
    /// digits of the process id, so concurrent `cargo test` runs of several checkouts never
    /// share a lab (lab prefixes are at most 8 characters).
    pub fn up(prefix: &str) -> Lab {
        Lab::up_with(prefix, &[])
    }

    /// As `up`, with arguments for `lab.sh up` (e.g. `--dhcp b`).
    pub fn up_with(prefix: &str, args: &[&str]) -> Lab {
        let lab = Lab {
            prefix: format!(
                "{}{:03x}-",
                prefix.trim_end_matches('-'),
                std::process::id() % 4096
            ),
        };
        lab.sh(&["down"]);
        let o = lab.sh(&[&["up"], args].concat());
        assert!(o.status.success(), "lab up failed:\n{}", text(&o));
        lab
    }

    pub fn sh(&self, args: &[&str]) -> Output {
        Command::new(repo().join("scripts/lab.sh"))
            .arg("--prefix")
            .arg(&self.prefix)
            .args(args)
            .env("MHROUTER_BIN", env!("CARGO_BIN_EXE_mhrouter"))
            .env("RUST_LOG", "info")
            .output()
            .expect("run scripts/lab.sh")
    }

    /// Runs a command in one of the lab's namespaces.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", ns];
        args.extend_from_slice(cmd);
        self.sh(&args)
    }

    pub fn ok(&self, ns: &str, cmd: &[&str]) -> String {
        let o = self.exec(ns, cmd);
        assert!(o.status.success(), "{ns}: {cmd:?} failed:\n{}", text(&o));
        text(&o)
    }

    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from(std::env::var("MH_LAB_STATE").unwrap_or_else(|_| "/run/mhlab".into()))
            .join(&self.prefix)
    }

    /// Starts the router with the given config text (written into the lab's state dir).
    pub fn start_router(&self, config: &str) {
        let path = self.state_dir().join("test-config.toml");
        std::fs::write(&path, config).expect("write config");
        let o = self.sh(&["router", "start", "--config", path.to_str().unwrap()]);
        assert!(o.status.success(), "router start failed:\n{}", text(&o));
    }

    pub fn router_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state_dir().join("router.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    pub fn ctl(&self, args: &[&str]) -> String {
        let mut a = vec!["ctl"];
        a.extend_from_slice(args);
        let o = self.sh(&a);
        assert!(o.status.success(), "ctl {args:?} failed:\n{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ctl(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ctl {args:?}: bad JSON ({e}):\n{out}"))
    }

    /// The router's log. Panics when it cannot be read, so `!log.contains(..)` never passes on
    /// an empty string.
    pub fn log(&self) -> String {
        let path = self.state_dir().join("router.log");
        let log = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert!(!log.is_empty(), "{} is empty", path.display());
        log
    }

    /// Millisecond timestamps (Unix epoch) of the router's log lines containing `needle`, in
    /// order: what timing checks measure, instead of the test's own wall clock.
    pub fn log_times(&self, needle: &str) -> Vec<u64> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| log_line_ms(l).unwrap_or_else(|| panic!("no timestamp in log line {l:?}")))
            .collect()
    }

    /// The timestamp of the first log line containing `needle` at or after `since` (epoch ms).
    pub fn log_time_after(&self, needle: &str, since: u64) -> u64 {
        self.log_times(needle)
            .into_iter()
            .find(|&t| t >= since)
            .unwrap_or_else(|| panic!("no log line {needle:?} after {since}:\n{}", self.log()))
    }

    /// One of the kernel's SNMP counters in namespace `ns` (`nstat`, e.g. "TcpInCsumErrors").
    pub fn nstat(&self, ns: &str, counter: &str) -> u64 {
        let out = self.ok(ns, &["nstat", "-asz", counter]);
        out.lines()
            .find_map(|l| l.strip_prefix(counter))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {counter} in {out}"))
    }

    /// One drop counter of the running router.
    pub fn drops(&self, name: &str) -> u64 {
        let v = self.ctl_json(&["show", "counters"]);
        v["drops"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d[0] == name))
            .and_then(|d| d[1].as_u64())
            .unwrap_or_else(|| panic!("no counter {name} in {v}"))
    }

    /// One drop counter once it has risen above `before` and stopped moving (two reads a
    /// quarter second apart agree): what a burst left behind, however long the machine took.
    pub fn settled_drops(&self, name: &str, before: u64) -> u64 {
        let mut last = before;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.drops(name);
            if now == last && now > before {
                return now;
            }
            last = now;
        }
        panic!("counter {name} did not rise above {before} and settle within 25 s");
    }

    /// Polls `f` until it returns true or `timeout` passes.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}\nrouter log:\n{}",
            self.log()
        );
    }

    /// True if `dst` answers one of up to three pings (the first may wait for ARP).
    pub fn ping(&self, ns: &str, dst: &str) -> bool {
        let ok = (0..3).any(|_| {
            self.exec(ns, &["ping", "-c", "1", "-W", "2", dst])
                .status
                .success()
        });
        if !ok {
            eprintln!("ping {ns} -> {dst} failed; lab state:\n{}", self.diagnose());
        }
        ok
    }

    /// What a failing test prints: the router's view and the kernel's view of the LAN path.
    pub fn diagnose(&self) -> String {
        let mut s = String::new();
        for args in [
            &["show", "counters"][..],
            &["show", "arp"],
            &["show", "nat"],
        ] {
            let mut a = vec!["ctl"];
            a.extend_from_slice(args);
            s += &text(&self.sh(&a));
        }
        for (ns, cmd) in [
            (
                "lan",
                "ip neigh; ip -s link show eth0; nstat -az | grep -iE 'icmp|arp' | grep -v ' 0 '",
            ),
            (
                "rtr",
                "bridge fdb show br br-lan | grep -v permanent; ip -s link; nstat -az | grep -v ' 0 '",
            ),
        ] {
            s += &format!("--- {ns}\n{}", text(&self.exec(ns, &["bash", "-c", cmd])));
        }
        s + "--- router log\n" + &self.log()
    }
}

/// A process started in one of the lab's namespaces, killed (by its pid) when dropped, so a
/// failed assertion never leaves it running.
pub struct Background(pub std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Lab {
    /// Starts `cmd` in namespace `ns` in the background, its stdout piped.
    pub fn spawn(&self, ns: &str, cmd: &[&str]) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}{ns}", self.prefix)])
            .args(cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn in the lab");
        Background(child)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.sh(&["router", "stop"]);
        self.sh(&["down"]);
    }
}

/// The reference site's router, LAN and uplinks (SPEC "Reference site"), without routes.
const SITE: &str = r#"
[router]
workers = 2

[lan]
tap = "mhr-lan"
bridge = "br-lan"
address = "192.168.0.1/24"

[[uplink]]
name = "isp-a"
interface = "wan-a"
address = "172.16.1.1/30"
next_hop = "172.16.1.2"

[[uplink]]
name = "isp-b"
interface = "wan-b"
address = "172.17.3.1/30"
next_hop = "172.17.3.2"
"#;

/// The reference site config of SPEC with a timing profile: probe interval, timeout and the
/// end-to-end tracks' delays (next-hop tracks use the same). `extra` is appended verbatim.
pub fn site_config(interval: &str, timeout: &str, down: &str, up: &str, extra: &str) -> String {
    let mut s = String::from(SITE);
    for (side, nh) in [("a", "172.16.1.2"), ("b", "172.17.3.2")] {
        let uplink = if side == "a" { "isp-a" } else { "isp-b" };
        s += &format!(
            r#"
[[probe]]
name = "{side}-nexthop"
type = "icmp-echo"
uplink = "{uplink}"
target = "{nh}"
interval = "{interval}"
timeout = "{timeout}"

[[probe]]
name = "{side}-e2e"
type = "icmp-echo"
uplink = "{uplink}"
target = "172.18.0.6"
interval = "{interval}"
timeout = "{timeout}"

[[track]]
name = "{side}-e2e"
probe = "{side}-e2e"
delay_down = "{down}"
delay_up = "{up}"

[[track]]
name = "{side}-nexthop"
probe = "{side}-nexthop"
delay_down = "{down}"
delay_up = "{up}"
"#
        );
    }
    s += r#"
[[route]]
name = "a-e2e-tier"
prefix = "0.0.0.0/0"
uplink = "isp-a"
distance = 10
track = "a-e2e"

[[route]]
name = "b-e2e-tier"
prefix = "0.0.0.0/0"
uplink = "isp-b"
distance = 11
track = "b-e2e"

[[route]]
name = "a-nexthop-tier"
prefix = "0.0.0.0/0"
uplink = "isp-a"
distance = 250
track = "a-nexthop"

[[route]]
name = "b-nexthop-tier"
prefix = "0.0.0.0/0"
uplink = "isp-b"
distance = 251
track = "b-nexthop"

[[route]]
name = "a-last"
prefix = "0.0.0.0/0"
uplink = "isp-a"
distance = 252

[[route]]
name = "b-last"
prefix = "0.0.0.0/0"
uplink = "isp-b"
distance = 253
"#;
    s += extra;
    s
}

/// A static-only config (no probes): A preferred (10), B backup (20), both carrier-tracked only.
pub fn static_config(extra_uplink_a: &str) -> String {
    let site = SITE.replace(
        "next_hop = \"172.16.1.2\"\n",
        &format!("next_hop = \"172.16.1.2\"\n{extra_uplink_a}\n"),
    );
    site + r#"
[[route]]
name = "via-a"
prefix = "0.0.0.0/0"
uplink = "isp-a"
distance = 10

[[route]]
name = "via-b"
prefix = "0.0.0.0/0"
uplink = "isp-b"
distance = 20
"#
}

/// Runs `f` on a thread that has entered network namespace `ns` (a full name).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}

/// Sends raw Ethernet frames on interface `ifname` of namespace `ns` (an AF_PACKET socket).
pub fn send_raw(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = ifname.to_string();
    in_netns(ns, move || {
        let cname = std::ffi::CString::new(ifname.clone()).unwrap();
        // SAFETY: plain socket/bind/sendto calls with buffers we own.
        unsafe {
            let idx = libc::if_nametoindex(cname.as_ptr());
            assert!(idx > 0, "no interface {ifname}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = idx as i32;
            sll.sll_halen = 6;
            for f in &frames {
                let n = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert!(n >= 0, "sendto: {}", std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
    });
}

/// Sends one UDP datagram from `src`:`sport` (an address of namespace `ns`) to `dst`:`dport`.
pub fn udp_send(lab: &Lab, ns: &str, src: &str, sport: u16, dst: &str, dport: u16) {
    let py = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('{src}', {sport})); s.sendto(b'mhrouter-test', ('{dst}', {dport}))"
    );
    lab.ok(ns, &["python3", "-c", &py]);
}

/// The outside port of the NAT session of `inside` ("ip:port") on `uplink`.
pub fn outside_port(lab: &Lab, uplink: &str, inside: &str) -> u16 {
    let nat = lab.ctl_json(&["show", "nat", "uplink", uplink]);
    nat["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["inside"] == inside))
        .and_then(|s| s["outside"].as_str()?.split(':').nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no session of {inside} on {uplink}: {nat}"))
}

/// The router's LAN MAC as the LAN host resolved it (pinging the router first if needed).
pub fn router_lan_mac(lab: &Lab) -> Vec<u8> {
    let arp = lab.ok("lan", &["ip", "neigh", "show", "192.168.0.1"]);
    if !arp.contains("lladdr") {
        assert!(lab.ping("lan", "192.168.0.1"));
    }
    let arp = lab.ok("lan", &["ip", "neigh", "show", "192.168.0.1"]);
    arp.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .expect("router MAC")
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

/// MAC address of `ifname` in namespace `ns`.
pub fn mac_of(lab: &Lab, ns: &str, ifname: &str) -> [u8; 6] {
    let out = lab.ok(ns, &["cat", &format!("/sys/class/net/{ifname}/address")]);
    let mut mac = [0u8; 6];
    for (i, p) in out.trim().split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(p, 16).unwrap();
    }
    mac
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Epoch milliseconds of a router log line, `[2026-11-27T13:44:10.959Z INFO ] ...`.
pub fn log_line_ms(line: &str) -> Option<u64> {
    let ts = line.strip_prefix('[')?.split_whitespace().next()?;
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<u64>().ok()?,
        t.next()?.parse::<u64>().ok()?,
    );
    let (sec, ms) = t.next()?.split_once('.')?;
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(
        ((days * 24 + h) * 60 + min) * 60_000
            + sec.parse::<u64>().ok()? * 1000
            + ms.parse::<u64>().ok()?,
    )
}

/// Epoch milliseconds of a capture line (`tcpdump -tt`: seconds.micros first).
pub fn capture_line_ms(line: &str) -> Option<u64> {
    let (s, us) = line.split_whitespace().next()?.split_once('.')?;
    Some(s.parse::<u64>().ok()? * 1000 + us.parse::<u64>().ok()? / 1000)
}

/// Sleeps until the wall clock (the one the router's log uses) reaches `ms`.
pub fn wait_until_ms(ms: u64) {
    let now = now_ms();
    if ms > now {
        std::thread::sleep(Duration::from_millis(ms - now));
    }
}

/// The router's wall clock now, in epoch milliseconds (the clock its log lines use).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// `tcpdump` running in a namespace, writing text lines (with epoch timestamps, `-tt`) to a file;
/// stopped by its pid. `start` returns only once tcpdump reports it is listening, and `stop`
/// fails if it died meanwhile, so "nothing arrived" always means the capture saw nothing.
pub struct Capture {
    child: std::process::Child,
    file: PathBuf,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    pub fn start(lab: &Lab, ns: &str, iface: &str, filter: &str) -> Capture {
        use std::io::BufRead;
        let file = lab
            .state_dir()
            .join(format!("cap-{ns}-{iface}-{}.txt", std::process::id()));
        let full_ns = format!("{}{}", lab.prefix, ns);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &full_ns, "tcpdump", "-l", "-tt", "-n"])
            .args(["--immediate-mode", "-i", iface])
            .args(filter.split_whitespace())
            .stdout(std::fs::File::create(&file).unwrap())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut said = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => said += &(line + "\n"),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("tcpdump on {ns}/{iface} ({filter}) never started listening:\n{said}");
                }
            }
        }
        Capture {
            child,
            file,
            stderr: rx,
        }
    }

    /// What the capture has written so far.
    pub fn so_far(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }

    pub fn stop(mut self) -> String {
        // Let frames already on the wire reach the capture (immediate mode, no buffering).
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = self.child.try_wait() {
            let said: Vec<String> = self.stderr.try_iter().collect();
            panic!(
                "tcpdump died during the capture ({status}):\n{}",
                said.join("\n")
            );
        }
        // SAFETY: signals the tcpdump we started, by its recorded pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let s = std::fs::read_to_string(&self.file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.file);
        s
    }
}
