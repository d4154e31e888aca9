//! Issue 14: two routers, one gateway (SPEC 29), in the redundant lab (`lab.sh up --redundant`)
//! with real peers: keepalived (VRRPv3) in either router role, tshark's VRRP dissector, a LAN
//! host pinging and connecting through whichever router is master.
//!
//! Timings are measured from capture timestamps and the routers' millisecond log timestamps,
//! and compared with bounds derived from the configuration (RFC 5798 timers), never polled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Both lab configs advertise every 100 ms (scripts/lab-redundant-*.toml).
const ADVERT: Duration = Duration::from_millis(100);
/// Their preempt_delay.
const PREEMPT_DELAY: Duration = Duration::from_secs(3);
const R1_IP: &str = "192.168.0.2";
const R2_IP: &str = "192.168.0.3";

/// RFC 5798: 3 x interval + (256 - priority) / 256 x interval.
fn master_down(priority: u32, interval: Duration) -> Duration {
    interval * 3 + interval * (256 - priority) / 256
}

fn redundant_lab(prefix: &str) -> Lab {
    let lab = Lab {
        prefix: format!(
            "{}{:03x}-",
            prefix.trim_end_matches('-'),
            std::process::id() % 4096
        ),
    };
    lab.sh(&["down"]);
    let o = lab.sh(&["up", "--redundant"]);
    assert!(
        o.status.success(),
        "lab up --redundant failed:\n{}",
        text(&o)
    );
    lab
}

impl Lab {
    fn router(&self, n: u8, verb: &str) {
        let n = n.to_string();
        let o = self.sh(&["router", verb, &n]);
        assert!(
            o.status.success(),
            "router {verb} {n} failed:\n{}",
            text(&o)
        );
    }

    fn vrrp(&self, n: u8) -> serde_json::Value {
        let n = n.to_string();
        let o = self.sh(&["ctl", &n, "show", "vrrp", "--json"]);
        assert!(o.status.success(), "ctl {n} show vrrp:\n{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        v["vrrp"][0].clone()
    }

    fn router_log(&self, n: u8) -> String {
        let file = if n == 1 { "router.log" } else { "router2.log" };
        std::fs::read_to_string(self.state_dir().join(file)).unwrap_or_default()
    }

    /// Waits until router `n` is in `state` with `priority` (tracks settled).
    fn wait_vrrp(&self, n: u8, state: &str, priority: u64, within: Duration) {
        self.wait_for(
            &format!("router {n} {state} at priority {priority}"),
            within,
            || {
                let g = self.vrrp(n);
                g["state"] == state && g["priority"] == priority
            },
        );
    }
}

/// keepalived (Debian's package) in a router namespace, stopped with SIGTERM by its pid.
struct Keepalived {
    child: std::process::Child,
    log: PathBuf,
}

impl Keepalived {
    fn start(lab: &Lab, ns: &str, iface: &str, priority: u8) -> Keepalived {
        let dir = lab.state_dir();
        let conf = dir.join(format!("keepalived-{ns}.conf"));
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  vrrp_version 3\n}}\n\
                 vrrp_instance lab {{\n  state BACKUP\n  interface {iface}\n  virtual_router_id 1\n  \
                 priority {priority}\n  advert_int 1\n  virtual_ipaddress {{\n    192.168.0.1/24\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let log = dir.join(format!("keepalived-{ns}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}{ns}", lab.prefix)])
            .arg("keepalived")
            .args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(&conf)
            .arg("--pid")
            .arg(dir.join(format!("keepalived-{ns}.pid")))
            .arg("--vrrp_pid")
            .arg(dir.join(format!("keepalived-{ns}-vrrp.pid")))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("keepalived (apt-get install keepalived)");
        Keepalived { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn count(&self, what: &str) -> usize {
        self.log().matches(what).count()
    }

    /// SIGTERM: keepalived says goodbye with priority 0 and stops its VRRP child.
    fn stop(&mut self) {
        // SAFETY: signals the keepalived parent we started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tcpdump -w` on the LAN host's eth0 into the state dir.
struct Pcap {
    child: std::process::Child,
    file: PathBuf,
}

impl Pcap {
    fn start(lab: &Lab, filter: &str) -> Pcap {
        let file = lab.state_dir().join("lan.pcap");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}lan", lab.prefix)])
            .args(["tcpdump", "-U", "-n", "-i", "eth0", "-w"])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(Duration::from_millis(800));
        Pcap { child, file }
    }

    fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signals the tcpdump we started, by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        self.file.clone()
    }
}

fn tshark(args: &[&str], file: &Path) -> String {
    let o = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark (apt-get install tshark)");
    assert!(o.status.success(), "tshark failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Seconds since midnight of a router log line ("[2026-11-27T13:59:57.521Z WARN ] ...").
fn log_time(line: &str) -> f64 {
    let t = line
        .get(12..24)
        .unwrap_or_else(|| panic!("no time in {line}"));
    let mut parts = t.split(':');
    let mut field = || -> f64 { parts.next().and_then(|p| p.parse().ok()).unwrap() };
    field() * 3600.0 + field() * 60.0 + field()
}

/// Time of the first log line containing `what` after `after` (seconds since midnight).
fn logged(log: &str, what: &str, after: f64) -> Option<f64> {
    log.lines()
        .filter(|l| l.contains(what))
        .map(log_time)
        .find(|&t| t >= after)
}

#[test]
fn keepalived_interoperates_in_both_roles() {
    if !require_root() {
        return;
    }
    let lab = redundant_lab("vrk");
    let cap = Pcap::start(&lab, "ip proto 112");

    // mhrouter (150) as router 1, keepalived (100) as router 2.
    lab.router(1, "start");
    lab.wait_vrrp(1, "master", 150, Duration::from_secs(10));
    lab.ok(
        "rtr2",
        &["ip", "addr", "add", "192.168.0.3/24", "dev", "br-lan"],
    );
    let mut ka = Keepalived::start(&lab, "rtr2", "br-lan", 100);
    lab.wait_for("keepalived in BACKUP", Duration::from_secs(10), || {
        ka.count("Entering BACKUP STATE") == 1
    });
    // Longer than keepalived's master-down interval (3.6 s): it stays backup.
    std::thread::sleep(master_down(100, Duration::from_secs(1)) + Duration::from_secs(1));
    assert_eq!(ka.count("Entering MASTER STATE"), 0, "{}", ka.log());
    assert_eq!(lab.vrrp(1)["state"], "master");
    // mhrouter stops (priority 0): keepalived takes over.
    lab.router(1, "stop");
    lab.wait_for("keepalived MASTER", Duration::from_secs(5), || {
        ka.count("Entering MASTER STATE") == 1
    });
    // mhrouter comes back and preempts after its delay; keepalived steps down.
    lab.router(1, "start");
    lab.wait_vrrp(1, "master", 150, Duration::from_secs(20));
    lab.wait_for("keepalived BACKUP again", Duration::from_secs(5), || {
        ka.count("Entering BACKUP STATE") == 2
    });
    let router1 = lab.router_log(1);
    assert!(
        router1.contains("state Backup -> Master (master down)"),
        "{router1}"
    );
    ka.stop();
    let ka_transcript_1 = ka.log();
    lab.router(1, "stop");

    // keepalived (200) as router 1, mhrouter (100) as router 2.
    lab.ok(
        "rtr",
        &["ip", "addr", "add", "192.168.0.2/24", "dev", "br-lan"],
    );
    lab.ok("rtr2", &["ip", "addr", "flush", "dev", "br-lan"]);
    lab.router(2, "start");
    lab.wait_vrrp(2, "master", 100, Duration::from_secs(10));
    let mut ka = Keepalived::start(&lab, "rtr", "br-lan", 200);
    lab.wait_for("mhrouter backs off", Duration::from_secs(10), || {
        let g = lab.vrrp(2);
        g["state"] == "backup" && g["master"] == R1_IP && g["master_priority"] == 200
    });
    assert_eq!(ka.count("Entering MASTER STATE"), 1, "{}", ka.log());
    // keepalived advertises every second: mhrouter learned that interval.
    assert_eq!(lab.vrrp(2)["master_adver_interval_cs"], 100);
    ka.stop();
    lab.wait_vrrp(2, "master", 100, Duration::from_secs(5));
    let router2 = lab.router_log(2);
    assert!(
        router2.contains("state Master -> Backup (preempted by 192.168.0.2 priority 200)"),
        "{router2}"
    );

    // Every advertisement, from both implementations, as Wireshark's dissector reads them.
    let file = cap.stop();
    let verbose = tshark(&["-V"], &file);
    assert!(!verbose.contains("[Malformed"), "{verbose}");
    assert!(!verbose.contains("incorrect"), "{verbose}");
    assert!(!verbose.contains("Checksum Status: Bad"), "{verbose}");
    let rows = tshark(
        &[
            "-Y",
            "vrrp",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.checksum.status",
        ],
        &file,
    );
    for (src, prio) in [(R1_IP, "150"), (R2_IP, "100"), (R1_IP, "200"), (R1_IP, "0")] {
        assert!(
            rows.lines()
                .any(|l| l.starts_with(&format!("{src}\t{prio}\t"))),
            "no advertisement from {src} at priority {prio}:\n{rows}"
        );
    }
    // Checksum status 1 = good, for every advertisement.
    assert!(rows.lines().all(|l| l.ends_with("\t1")), "{rows}");
    eprintln!(
        "keepalived as backup/master of mhrouter:\n{ka_transcript_1}\nmhrouter as router 1:\n{}\nmhrouter as router 2:\n{}",
        router1
            .lines()
            .filter(|l| l.contains("VRRP"))
            .collect::<Vec<_>>()
            .join("\n"),
        router2
            .lines()
            .filter(|l| l.contains("VRRP"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A TCP connection from the LAN host, idle across the failover, then written to: the new master
/// knows no such flow and must answer with a RST.
const STALE_FLOW: &str = "\
import socket, sys, time
s = socket.create_connection(('172.18.0.6', 5201), timeout=3)
print('connected', flush=True)
time.sleep(float(sys.argv[1]))
try:
    s.sendall(b'x' * 37)
    s.recv(16)
    print('no reset')
except ConnectionResetError:
    print('reset')
except socket.timeout:
    print('timeout')
";

#[test]
fn master_killed_backup_takes_over_within_master_down_interval() {
    if !require_root() {
        return;
    }
    let lab = redundant_lab("vrf");
    lab.router(1, "start");
    lab.wait_vrrp(1, "master", 150, Duration::from_secs(10));
    lab.router(2, "start");
    lab.wait_vrrp(2, "backup", 100, Duration::from_secs(10));
    assert!(lab.ping("lan", "172.18.0.6"));

    let cap = Pcap::start(&lab, "ip proto 112 or icmp");
    let ping = lab.spawn("lan", &["ping", "-i", "0.02", "-W", "1", "172.18.0.6"]);
    let stale = lab.spawn("lan", &["python3", "-c", STALE_FLOW, "3"]);
    std::thread::sleep(Duration::from_millis(1000));
    let pid: i32 = std::fs::read_to_string(lab.state_dir().join("router.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The wall clock, like tcpdump's timestamps on the same machine.
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // SAFETY: the router lab.sh recorded for router 1.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    lab.wait_vrrp(2, "master", 100, Duration::from_secs(5));

    // Segments of a flow the new master does not know get a RST at once.
    let mut stale = stale;
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stale.0.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out.trim(), "connected\nreset");
    // New flows work through the new master at once.
    lab.ok(
        "lan",
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/172.18.0.6/5201",
        ],
    );
    drop(ping);
    let file = cap.stop();

    // Timeline from the capture: the dead master's last advertisement, then the first echo
    // reply from another MAC than the replies before it.
    let rows = tshark(
        &[
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "eth.src",
            "-e",
            "ip.src",
            "-e",
            "ip.proto",
            "-e",
            "icmp.type",
        ],
        &file,
    );
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
    let time = |r: &Vec<&str>| r[0].parse::<f64>().unwrap();
    let reply = |r: &&Vec<&str>| r[3] == "1" && r[4] == "0";
    let last_advert = rows
        .iter()
        .filter(|r| r[2] == R1_IP && r[3] == "112")
        .map(time)
        .fold(0.0, f64::max);
    let old_mac = rows.iter().find(reply).expect("a reply before the kill")[1];
    let first_backup_reply = rows
        .iter()
        .filter(reply)
        .find(|r| r[1] != old_mac)
        .map(time)
        .expect("a reply through the backup");
    let takeover = Duration::from_secs_f64(first_backup_reply - last_advert);
    let bound = master_down(100, ADVERT);
    eprintln!(
        "takeover: SIGKILL -> first reply through the backup {:.1} ms; the killed master's last \
         advertisement -> that reply {:.1} ms (master down interval {:.1} ms, ping every 20 ms)",
        (first_backup_reply - killed_at) * 1000.0,
        takeover.as_secs_f64() * 1000.0,
        bound.as_secs_f64() * 1000.0
    );
    // Not before three missed advertisements; not later than the master-down interval plus one
    // advertisement (the kill falls between two) and one ping interval.
    assert!(takeover >= ADVERT * 3, "{takeover:?}");
    assert!(
        takeover <= bound + ADVERT + Duration::from_millis(20),
        "{takeover:?}"
    );
    let log = lab.router_log(2);
    assert!(
        log.contains("state Backup -> Master (master down)"),
        "{log}"
    );
}

#[test]
fn track_down_hands_over_and_preemption_brings_it_back() {
    if !require_root() {
        return;
    }
    let lab = redundant_lab("vrt");
    lab.router(1, "start");
    lab.wait_vrrp(1, "master", 150, Duration::from_secs(10));
    lab.router(2, "start");
    lab.wait_vrrp(2, "backup", 100, Duration::from_secs(10));

    // ISP A's path to the central site breaks: a-e2e goes down, priority 150 - 60 = 90 < 100.
    let o = lab.sh(&["fault", "a", "upstream"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_vrrp(2, "master", 100, Duration::from_secs(20));
    lab.wait_vrrp(1, "backup", 90, Duration::from_secs(2));
    let (log1, log2) = (lab.router_log(1), lab.router_log(2));
    // The last time: the track also starts down, until the first probe answers.
    let lowered = log1
        .lines()
        .rev()
        .find(|l| l.contains("priority 150 -> 90"))
        .map(log_time)
        .expect("priority lowered");
    let took = logged(&log2, "state Backup -> Master", lowered).expect("router 2 master");
    let handover = Duration::from_secs_f64(took - lowered);
    eprintln!("priority lowered -> router 2 master: {handover:?}");
    // Router 2 tolerates the lower master for preempt_delay, then its master-down timer runs.
    assert!(handover >= PREEMPT_DELAY, "{handover:?}");
    assert!(
        handover <= PREEMPT_DELAY + master_down(100, ADVERT) + ADVERT * 2,
        "{handover:?}"
    );
    assert!(
        log1.contains("state Master -> Backup (preempted by 192.168.0.3 priority 100)"),
        "{log1}"
    );
    // The LAN host's gateway now leaves through ISP B.
    assert!(lab.ping("lan", "172.18.0.6"));

    // A is back: after the track's delay up, router 1 preempts after its delay.
    let o = lab.sh(&["heal", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_vrrp(1, "master", 150, Duration::from_secs(30));
    let log1 = lab.router_log(1);
    let raised = logged(&log1, "priority 90 -> 150", took).expect("priority restored");
    let back = logged(&log1, "state Backup -> Master", raised).expect("router 1 master");
    let preempted = Duration::from_secs_f64(back - raised);
    eprintln!("priority restored -> router 1 master again: {preempted:?}");
    assert!(preempted >= PREEMPT_DELAY, "{preempted:?}");
    assert!(
        preempted <= PREEMPT_DELAY + master_down(150, ADVERT) + ADVERT * 2,
        "{preempted:?}"
    );
    lab.wait_vrrp(2, "backup", 100, Duration::from_secs(2));
    assert!(lab.ping("lan", "172.18.0.6"));
}

#[test]
fn a_master_without_its_isp_routes_through_the_peer() {
    if !require_root() {
        return;
    }
    let lab = redundant_lab("vrp");
    // Router 1 without its track decrement: it stays master when ISP A goes.
    let config = std::fs::read_to_string(repo().join("scripts/lab-redundant-1.toml"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("track = "))
        .collect::<Vec<_>>()
        .join("\n");
    let path = lab.state_dir().join("untracked-1.toml");
    std::fs::write(&path, config).unwrap();
    let o = lab.sh(&["router", "start", "1", "--config", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    lab.wait_vrrp(1, "master", 150, Duration::from_secs(10));
    lab.router(2, "start");
    lab.wait_vrrp(2, "backup", 100, Duration::from_secs(10));

    let o = lab.sh(&["fault", "a", "link"]);
    assert!(o.status.success(), "{}", text(&o));
    let gateway = || {
        let o = lab.sh(&["ctl", "1", "show", "route", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["gateway_of_last_resort"].clone()
    };
    lab.wait_for(
        "router 1 routes via the peer",
        Duration::from_secs(5),
        || gateway()["uplink"] == "lan",
    );
    assert_eq!(gateway()["next_hop"], R2_IP);
    assert_eq!(lab.vrrp(1)["state"], "master");
    // The LAN host's gateway is still router 1; router 2 translates what router 1 hands it.
    assert!(lab.ping("lan", "172.18.0.6"));
    lab.ok(
        "lan",
        &[
            "timeout",
            "3",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/172.18.0.6/5201",
        ],
    );
    let o = lab.sh(&["ctl", "2", "show", "nat", "--json"]);
    let nat: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sessions = nat["sessions"].as_array().cloned().unwrap_or_default();
    assert!(
        sessions.iter().any(|s| s["inside"]
            .as_str()
            .is_some_and(|i| i.starts_with("192.168.0.10:"))
            && s["protocol"] == "tcp"),
        "{nat}"
    );
    let o = lab.sh(&["ctl", "1", "show", "nat", "--json"]);
    let nat: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        nat["totals"]["sessions"], 0,
        "router 1 translates nothing: {nat}"
    );
}
