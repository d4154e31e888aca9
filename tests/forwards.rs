//! Port forwards in the lab (SPEC 13, 31) with real clients and servers: a web server
//! (python http.server) and a DNS server (dnsmasq) on the LAN host, published on both uplinks by
//! scripts/lab.toml; curl and dig in the central site reaching them through ISP A and ISP B at
//! once, each reply seen leaving by its own uplink in captures on the PEs; replies by A while A's
//! end-to-end track is down; hairpin NAT from a second LAN host; an allow list; unsolicited
//! inbound to a port nobody forwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const ADDR_A: &str = "172.16.1.1";
const ADDR_B: &str = "172.17.3.1";
/// The page the LAN web server serves: large enough (with curl's rate limit) that the two
/// downloads through A and B overlap.
const PAGE_BYTES: usize = 256 * 1024;

/// The forwards of scripts/lab.toml, for configs of the tests' own timing.
const LAB_FORWARDS: &str = r#"
[[forward]]
name = "web"
uplinks = "all"
protocol = "tcp"
port = 8080
to = "192.168.0.10:8080"

[[forward]]
name = "dns"
uplinks = "all"
protocol = "udp"
port = 5353
to = "192.168.0.10:53"
"#;

/// The web server on the LAN host, serving `index.html` (a marker line, then padding) from a
/// directory in the lab's state dir; waits until it answers.
fn web_server(lab: &Lab) -> (Background, String) {
    let dir = lab.state_dir().join("www");
    std::fs::create_dir_all(&dir).expect("www dir");
    let marker = format!("mhrouter forward test page {}", std::process::id());
    let mut page = format!("{marker}\n");
    page += &"x".repeat(PAGE_BYTES);
    std::fs::write(dir.join("index.html"), page).expect("write page");
    let server = lab.spawn(
        "lan",
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "192.168.0.10",
            "--directory",
            dir.to_str().unwrap(),
        ],
    );
    lab.wait_for("the LAN web server", Duration::from_secs(10), || {
        lab.exec(
            "lan",
            &[
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "http://192.168.0.10:8080/",
            ],
        )
        .status
        .success()
    });
    (server, marker)
}

/// dnsmasq on the LAN host's port 53, answering web.lab with 192.168.0.10 and nothing else.
fn dns_server(lab: &Lab) -> Background {
    let server = lab.spawn(
        "lan",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=192.168.0.10",
            "--port=53",
            "--address=/web.lab/192.168.0.10",
            "--pid-file=",
            "--user=root",
        ],
    );
    lab.wait_for("the LAN DNS server", Duration::from_secs(10), || {
        dig(lab, "lan", "192.168.0.10", 53) == "192.168.0.10"
    });
    server
}

/// `dig` for web.lab from namespace `ns` at `server`:`port`; the answer, trimmed.
fn dig(lab: &Lab, ns: &str, server: &str, port: u16) -> String {
    let o = lab.exec(
        ns,
        &[
            "dig",
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            "web.lab",
            "+short",
            "+time=2",
            "+tries=2",
        ],
    );
    text(&o).trim().to_string()
}

/// curl in namespace `ns` as a child process, so several run at once.
fn curl(lab: &Lab, ns: &str, args: &[&str]) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &format!("{}{ns}", lab.prefix), "curl"])
        .args(["-s", "--max-time", "20"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn curl")
}

fn finish(child: std::process::Child) -> Output {
    child.wait_with_output().expect("curl")
}

/// The capture lines whose source is `addr`.`port` (tcpdump's "IP a.b.c.d.port >").
fn from(capture: &str, addr: &str, port: u16) -> Vec<String> {
    let needle = format!(" IP {addr}.{port} >");
    capture
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// A second LAN host made by the test: namespace `<P>lan2`, 192.168.0.20/24 on a veth whose peer
/// is on the router's br-lan, default via the router. Deleted (with its veth) on drop.
struct SecondHost {
    ns: String,
}

impl SecondHost {
    fn add(lab: &Lab) -> SecondHost {
        let ns = format!("{}lan2", lab.prefix);
        let rtr = format!("{}rtr", lab.prefix);
        let host = SecondHost { ns: ns.clone() };
        let run = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().expect("ip");
            assert!(o.status.success(), "ip {args:?}:\n{}", text(&o));
        };
        run(&["netns", "add", &ns]);
        let sysctl = |kv: &str| run(&["netns", "exec", &ns, "sysctl", "-qw", kv]);
        sysctl("net.ipv6.conf.all.disable_ipv6=1");
        sysctl("net.ipv6.conf.default.disable_ipv6=1");
        run(&[
            "-n", &rtr, "link", "add", "lan2p", "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        run(&["-n", &rtr, "link", "set", "lan2p", "master", "br-lan"]);
        run(&["-n", &rtr, "link", "set", "lan2p", "up"]);
        run(&["-n", &ns, "link", "set", "lo", "up"]);
        run(&["-n", &ns, "addr", "add", "192.168.0.20/24", "dev", "eth0"]);
        run(&["-n", &ns, "link", "set", "eth0", "up"]);
        run(&["-n", &ns, "route", "add", "default", "via", "192.168.0.1"]);
        host
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

fn forward_row<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["forwards"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no forward {name}: {v}"))
}

fn lab_toml() -> String {
    std::fs::read_to_string(repo().join("scripts/lab.toml")).expect("scripts/lab.toml")
}

/// A curl's outcome in a line: status, body size, its error message.
fn outcome(o: &Output) -> String {
    format!(
        "{}, {} bytes, {}",
        o.status,
        o.stdout.len(),
        String::from_utf8_lossy(&o.stderr).trim()
    )
}

fn body_has(o: &Output, marker: &str) -> bool {
    o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with(marker)
}

/// SPEC 13 and 31 on the lab's own configuration: both ISPs serve the LAN's web and DNS servers
/// at once, and every reply leaves by the uplink its connection came in on, though the route
/// table sends everything else through A. Then hairpin NAT and the unsolicited filter.
#[test]
fn forwards_serve_both_isps_at_once_each_reply_by_its_uplink() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fx1-");
    lab.start_router(&lab_toml());
    let (_web, marker) = web_server(&lab);
    let _dns = dns_server(&lab);
    assert_eq!(
        lab.ctl_json(&["show", "route"])["gateway_of_last_resort"]["uplink"],
        "isp-a"
    );

    let filter = "src port 8080 or src port 5353";
    let cap_a = Capture::start(&lab, "ispa", "rtr0", filter);
    let cap_b = Capture::start(&lab, "ispb", "rtr0", filter);
    // Both downloads at once; the rate limit keeps them both open for a while.
    let rate = ["--limit-rate", "128k"];
    let via_a = curl(
        &lab,
        "net",
        &[&rate[..], &["http://172.16.1.1:8080/"]].concat(),
    );
    let via_b = curl(
        &lab,
        "net",
        &[&rate[..], &["http://172.17.3.1:8080/"]].concat(),
    );
    let (via_a, via_b) = (finish(via_a), finish(via_b));
    let dns_a = dig(&lab, "net", ADDR_A, 5353);
    let dns_b = dig(&lab, "net", ADDR_B, 5353);
    let (on_a, on_b) = (cap_a.stop(), cap_b.stop());
    assert!(body_has(&via_a, &marker), "page via A: {}", outcome(&via_a));
    assert!(body_has(&via_b, &marker), "page via B: {}", outcome(&via_b));
    assert_eq!(
        (dns_a.as_str(), dns_b.as_str()),
        ("192.168.0.10", "192.168.0.10")
    );

    for (uplink, capture, own, other) in [
        ("isp-a", &on_a, ADDR_A, ADDR_B),
        ("isp-b", &on_b, ADDR_B, ADDR_A),
    ] {
        for port in [8080, 5353] {
            let replies = from(capture, own, port);
            assert!(
                !replies.is_empty(),
                "no reply from {own}.{port} left by {uplink}:\n{capture}"
            );
            assert!(
                from(capture, other, port).is_empty(),
                "a reply of the other uplink's connection left by {uplink}:\n{capture}"
            );
            println!(
                "{uplink} {port}: {} replies; first: {}",
                replies.len(),
                replies[0]
            );
        }
    }

    let fwd = lab.ctl_json(&["show", "forwards"]);
    assert!(
        forward_row(&fwd, "web")["hits"].as_u64() >= Some(2),
        "{fwd}"
    );
    assert!(
        forward_row(&fwd, "dns")["hits"].as_u64() >= Some(2),
        "{fwd}"
    );
    let nat = lab.ctl_json(&["show", "nat"]);
    let forwarded: Vec<_> = nat["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["forward"] == "dns")
        .map(|s| {
            (
                s["uplink"].as_str().unwrap_or(""),
                s["outside"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(forwarded.contains(&("isp-a", "172.16.1.1:5353")), "{nat}");
    assert!(forwarded.contains(&("isp-b", "172.17.3.1:5353")), "{nat}");
    let explained = lab.ctl(&["explain", "10.255.2.2", ADDR_B, "tcp", "40000", "8080"]);
    assert!(
        explained.contains("forward web: to 192.168.0.10:8080; replies leave by isp-b"),
        "{explained}"
    );

    // Hairpin: a second LAN host uses B's public address (the route table prefers A).
    let _host2 = SecondHost::add(&lab);
    let at_server = Capture::start(&lab, "lan", "eth0", "tcp port 8080");
    let at_client = Capture::start(&lab, "lan2", "eth0", "tcp port 8080");
    let hairpin = finish(curl(&lab, "lan2", &["http://172.17.3.1:8080/"]));
    let (seen, client) = (at_server.stop(), at_client.stop());
    println!(
        "hairpin: curl http://172.17.3.1:8080/ from 192.168.0.20: {}",
        String::from_utf8_lossy(&hairpin.stdout)
            .lines()
            .next()
            .unwrap_or("")
    );
    for line in client.lines().take(2) {
        println!("hairpin at the client: {line}");
    }
    for line in seen.lines().take(2) {
        println!("hairpin at the server: {line}");
    }
    assert!(
        !from(&client, ADDR_B, 8080).is_empty(),
        "the client should get its replies from {ADDR_B}:8080:\n{client}"
    );
    assert!(
        body_has(&hairpin, &marker),
        "hairpin page: {}\n{seen}",
        outcome(&hairpin)
    );
    assert!(
        seen.contains(&format!(" IP {ADDR_B}.")),
        "the server should see the client as {ADDR_B}:\n{seen}"
    );
    assert!(
        !seen.contains(" IP 192.168.0.20."),
        "the client's own address reached the server:\n{seen}"
    );

    // Unsolicited inbound to a port nobody forwards gets nothing through, and is counted.
    let before = lab.drops("nat_unsolicited");
    let at_host = Capture::start(&lab, "lan", "eth0", "tcp port 8081");
    let stray = finish(curl(
        &lab,
        "net",
        &["--max-time", "2", "http://172.16.1.1:8081/"],
    ));
    assert!(!stray.status.success());
    assert!(lab.settled_drops("nat_unsolicited", before) > before);
    let leaked = at_host.stop();
    assert!(leaked.trim().is_empty(), "reached the LAN host:\n{leaked}");
}

/// The fast profile of tests/failover.rs, with the lab's forwards and one for a single office.
fn fast_config() -> String {
    site_config(
        "300ms",
        "200ms",
        "1s",
        "2s",
        &format!(
            r#"{LAB_FORWARDS}
[[forward]]
name = "office"
uplinks = ["isp-b"]
protocol = "tcp"
port = 8443
to = "192.168.0.10:8080"
allow = ["172.18.0.0/24"]

[[forward]]
name = "echo"
uplinks = ["isp-a"]
protocol = "tcp"
port = 7007
to = "192.168.0.10"
"#
        ),
    )
}

/// A TCP echo server on the LAN host's port 7007, one line per exchange.
fn echo_server(lab: &Lab) -> Background {
    const SERVER: &str = r#"
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("192.168.0.10", 7007), Echo).serve_forever()
"#;
    let server = lab.spawn("lan", &["python3", "-c", SERVER]);
    lab.wait_for("the LAN echo server", Duration::from_secs(10), || {
        lab.exec("lan", &["bash", "-c", "echo > /dev/tcp/192.168.0.10/7007"])
            .status
            .success()
    });
    server
}

/// One TCP connection from the central site, kept open between exchanges: a python client that
/// sends each line it reads on stdin and prints the echo.
struct EchoClient {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl EchoClient {
    fn connect(lab: &Lab, to: &str) -> EchoClient {
        let (host, port) = to.split_once(':').expect("host:port");
        let script = format!(
            r#"
import socket, sys
s = socket.create_connection(("{host}", {port}), timeout=10)
f = s.makefile("rw")
for line in sys.stdin:
    f.write(line)
    f.flush()
    print(f.readline().strip(), flush=True)
"#
        );
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}net", lab.prefix),
                "python3",
                "-c",
            ])
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the echo client");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        EchoClient { child, stdout }
    }

    /// Sends `line`, returns the echo ("" if the connection failed).
    fn say(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("stdin");
        if writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .is_err()
        {
            return String::new();
        }
        let mut answer = String::new();
        let _ = self.stdout.read_line(&mut answer);
        answer.trim().to_string()
    }
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PE_A stops forwarding pings to the central site: A's end-to-end probe fails, and nothing
/// else on A's path changes.
fn fail_a_e2e_probe(lab: &Lab) {
    let rules = "table ip fxprobe {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  ip protocol icmp ip daddr 172.18.0.6 drop\n }\n}\n";
    let file: PathBuf = lab.state_dir().join("fxprobe.nft");
    std::fs::write(&file, rules).expect("write nft rules");
    lab.ok("ispa", &["nft", "-f", Path::new(&file).to_str().unwrap()]);
}

/// While A's end-to-end track is down (default route on B), a connection that comes in via A
/// is still answered via A; and an allow list refuses sources it does not name.
#[test]
fn forward_replies_by_its_uplink_while_that_uplinks_track_is_down() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("fx2-");
    lab.start_router(&fast_config());
    let (_web, marker) = web_server(&lab);
    lab.wait_for("default via isp-a [10]", Duration::from_secs(20), || {
        installed(&lab) == Some(("isp-a".into(), 10))
    });
    // A connection in via A that spans the withdrawal of A's routes: its session stays (only
    // A's outbound flows are flushed) and the server still answers through A.
    let _echo = echo_server(&lab);
    let mut client = EchoClient::connect(&lab, "172.16.1.1:7007");
    assert_eq!(client.say("before"), "before");
    fail_a_e2e_probe(&lab);
    lab.wait_for("default via isp-b [11]", Duration::from_secs(20), || {
        installed(&lab) == Some(("isp-b".into(), 11))
    });
    assert_eq!(
        client.say("after"),
        "after",
        "the connection in via A broke when A's routes were withdrawn:\n{}",
        lab.log()
    );

    let cap_a = Capture::start(&lab, "ispa", "rtr0", "tcp src port 8080");
    let cap_b = Capture::start(&lab, "ispb", "rtr0", "tcp src port 8080");
    let via_a = finish(curl(&lab, "net", &["http://172.16.1.1:8080/"]));
    let (on_a, on_b) = (cap_a.stop(), cap_b.stop());
    assert!(
        body_has(&via_a, &marker),
        "page via A with A's track down: {}",
        outcome(&via_a)
    );
    assert!(
        !from(&on_a, ADDR_A, 8080).is_empty(),
        "no reply left by A:\n{on_a}"
    );
    assert!(on_b.trim().is_empty(), "a reply left by B:\n{on_b}");
    assert_eq!(
        installed(&lab),
        Some(("isp-b".into(), 11)),
        "A came back meanwhile"
    );

    // The office forward: from the central site's 172.18.0.6 only.
    let office = finish(curl(
        &lab,
        "net",
        &["--interface", "172.18.0.6", "http://172.17.3.1:8443/"],
    ));
    assert!(
        body_has(&office, &marker),
        "office page: {}",
        outcome(&office)
    );
    let before = lab.drops("forward_refused");
    let refused = finish(curl(
        &lab,
        "net",
        &["--max-time", "2", "http://172.17.3.1:8443/"],
    ));
    assert!(
        !refused.status.success(),
        "10.255.2.2 is not in the allow list"
    );
    assert!(lab.settled_drops("forward_refused", before) > before);
    let row = lab.ctl_json(&["show", "forwards"]);
    let office = forward_row(&row, "office");
    assert_eq!(office["hits"], 1, "{row}");
    assert!(office["refused"].as_u64() >= Some(1), "{row}");
}
