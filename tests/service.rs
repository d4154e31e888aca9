//! Issue 10: the router as a service. It runs as an unprivileged user with only CAP_NET_ADMIN
//! and CAP_NET_RAW (what the systemd unit grants), tells the service manager when it is ready,
//! reloading and stopping (sd_notify), writes journald priorities when its stderr is the
//! journal, and lets a read-only control group look but not change anything.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const NOBODY: u32 = 65534;
/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status prints capability sets.
const NET_ADMIN_AND_RAW: &str = "0000000000003000";

/// A scratch directory the unprivileged router may write (its control socket lives there).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mhrouter CLI as `user` (a setpriv argument list; empty for root).
fn cli(user: &[&str], socket: &Path, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_mhrouter");
    let mut cmd = if user.is_empty() {
        Command::new(bin)
    } else {
        let mut c = Command::new("setpriv");
        c.args(user).arg(bin);
        c
    };
    cmd.arg("--socket").arg(socket).args(args).output().unwrap()
}

/// The next sd_notify datagram; on a timeout, fails with the router's log.
fn next_notification(sock: &UnixDatagram, log: &Path) -> String {
    let mut buf = [0u8; 512];
    match sock.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!(
            "no notification from the router within 30 s ({e}); its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

fn status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn runs_unprivileged_with_net_admin_and_net_raw_only() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("svc1-");
    let scratch = Scratch::new("mh-svc");
    let socket = scratch.0.join("ctl.sock");
    let config = scratch.0.join("mhrouter.toml");
    // The router's group is nogroup; the control group `users` (gid 100) is a supplementary one.
    let good = site_config("200ms", "150ms", "600ms", "2s", "").replace(
        "workers = 2\n",
        &format!(
            "workers = 2\ncontrol_socket = \"{}\"\ncontrol_group = \"users\"\n",
            socket.display()
        ),
    );
    std::fs::write(&config, &good).unwrap();

    let notify_path = scratch.0.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    // The log file plays the journal: JOURNAL_STREAM names the router's stderr.
    let log_path = scratch.0.join("router.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();

    // Debian's udev makes /dev/net/tun 0666; containers often leave it 0600. The router gets
    // a 0666 node of the same device in the mount namespace `ip netns exec` makes for it
    // (a slave of the host's, so the host's /dev stays as it is).
    let tun = scratch.0.join("tun");
    let made = Command::new("mknod")
        .args([tun.to_str().unwrap(), "c", "10", "200"])
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::set_permissions(&tun, std::fs::Permissions::from_mode(0o666)).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &format!("{}rtr", lab.prefix)])
        .args(["sh", "-c", r#"mount --bind "$0" /dev/net/tun && exec "$@""#])
        .arg(&tun)
        .args([
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--groups=100",
            "--inh-caps=-all,+net_admin,+net_raw",
            "--ambient-caps=-all,+net_admin,+net_raw",
            "--bounding-set=-all,+net_admin,+net_raw",
        ])
        .arg(env!("CARGO_BIN_EXE_mhrouter"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut router = Background(child);

    assert_eq!(next_notification(&notify, &log_path), "READY=1");
    // Ready means ready: the control socket answers at once.
    let route = cli(&[], &socket, &["show", "route"]);
    assert!(route.status.success(), "{}", text(&route));
    assert!(
        status_field(pid, "Uid:").starts_with("65534\t"),
        "{}",
        status_field(pid, "Uid:")
    );
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(status_field(pid, set), NET_ADMIN_AND_RAW, "{set}");
    }

    lab.wait_for("default via isp-a [10]", Duration::from_secs(10), || {
        let o = cli(&[], &socket, &["show", "route"]);
        text(&o).contains("S*    0.0.0.0/0 [10/0] via 172.16.1.2, isp-a")
    });
    assert!(lab.ping("lan", "172.18.0.6"), "{}", lab.diagnose());

    // A member of the control group may look, not change; anyone else may not connect.
    let operator = [
        "--reuid=daemon",
        "--regid=daemon",
        "--groups=100",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ];
    let shown = cli(&operator, &socket, &["show", "route"]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(text(&shown).contains("via 172.16.1.2, isp-a"));
    let refused = cli(&operator, &socket, &["reload"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("permission denied"),
        "{}",
        text(&refused)
    );
    let outsider = [
        "--reuid=daemon",
        "--regid=daemon",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ];
    let locked_out = cli(&outsider, &socket, &["show", "route"]);
    assert!(!locked_out.status.success());
    assert!(
        text(&locked_out).contains("Permission denied"),
        "{}",
        text(&locked_out)
    );

    // Reload: RELOADING=1 then READY=1; a rejected config fails the command (ExecReload).
    let reload = cli(&[], &socket, &["reload"]);
    assert!(reload.status.success(), "{}", text(&reload));
    assert!(next_notification(&notify, &log_path).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(next_notification(&notify, &log_path), "READY=1");
    std::fs::write(&config, good.replace("workers = 2\n", "workers = 0\n")).unwrap();
    let bad = cli(&[], &socket, &["reload"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("reload rejected"), "{}", text(&bad));
    assert!(next_notification(&notify, &log_path).starts_with("RELOADING=1"));
    assert_eq!(next_notification(&notify, &log_path), "READY=1");

    // SAFETY: signals the router we started, by its pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    assert_eq!(next_notification(&notify, &log_path), "STOPPING=1");
    let status = router.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "the control socket is removed on stop");

    // Journal format: a priority prefix, no timestamp of our own.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("<6>mhrouter up: LAN")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("<3>reload rejected, running configuration kept")),
        "{log}"
    );
    assert!(log.lines().all(|l| l.starts_with('<')), "{log}");
}

/// `show nat` pages a large table and counts what matched, an unknown uplink is an error, and
/// `clear nat` / `clear counters` do what they say.
#[test]
fn operator_commands_page_and_clear() {
    if !require_root() {
        return;
    }
    let lab = Lab::up("svc2-");
    lab.start_router(&static_config(""));
    lab.wait_for("default via isp-a [10]", Duration::from_secs(10), || {
        lab.ctl(&["show", "route"])
            .contains("[10/0] via 172.16.1.2, isp-a")
    });
    // Each ping process has its own ICMP id, so its own NAT session.
    for _ in 0..3 {
        assert!(lab.ping("lan", "172.18.0.6"));
    }
    let all = lab.ctl_json(&["show", "nat"]);
    let flows = all["totals"]["matched"].as_u64().unwrap();
    assert!(flows >= 3, "{all}");
    let page = lab.ctl_json(&["show", "nat", "limit", "2"]);
    assert_eq!(page["totals"]["shown"], 2, "{page}");
    assert_eq!(page["totals"]["matched"], flows, "{page}");
    assert_eq!(page["sessions"].as_array().unwrap().len(), 2);
    let text_page = lab.ctl(&["show", "nat", "limit", "1"]);
    assert!(
        text_page.contains(&format!("({flows} matched, shown 1)")),
        "{text_page}"
    );

    let nosuch = lab.sh(&["ctl", "show", "nat", "uplink", "nosuch", "--json"]);
    assert!(!nosuch.status.success(), "{}", text(&nosuch));
    assert!(
        text(&nosuch).contains("no uplink named 'nosuch'"),
        "{}",
        text(&nosuch)
    );
    assert!(
        !lab.sh(&["ctl", "clear", "nat", "uplink", "nosuch"])
            .status
            .success()
    );

    assert_eq!(
        lab.ctl(&["clear", "nat", "uplink", "isp-b"]),
        "0 NAT flows removed\n"
    );
    assert_eq!(
        lab.ctl(&["clear", "nat", "uplink", "isp-a"]),
        format!("{flows} NAT flows removed\n")
    );
    let after = lab.ctl_json(&["show", "nat"]);
    assert_eq!(after["totals"]["sessions"], 0, "{after}");
    assert!(lab.log().contains("NAT cleared by the operator"));

    let before = lab.ctl_json(&["show", "counters"])["forwarded"]
        .as_u64()
        .unwrap();
    // The first echo may wait for ARP in the control thread, so not all six count.
    assert!(before >= 4, "three pings forwarded both ways: {before}");
    assert_eq!(lab.ctl(&["clear", "counters"]), "counters cleared\n");
    assert_eq!(lab.ctl_json(&["show", "counters"])["forwarded"], 0);
    assert!(lab.ping("lan", "172.18.0.6"));
    let since = lab.ctl_json(&["show", "counters"])["forwarded"]
        .as_u64()
        .unwrap();
    assert!((2..before).contains(&since), "{since} since the clear");
}

/// The man page and the completions are generated from the CLI definition itself.
#[test]
fn man_page_and_completions_come_from_the_cli() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mhrouter"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let man = run(&["generate", "man"]);
    assert!(man.contains(".TH mhrouter 1"), "{man}");
    for sub in [
        "check\\-config",
        "show",
        "explain",
        "reload",
        "clear",
        "generate",
    ] {
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    assert!(man.contains("/etc/mhrouter/mhrouter.toml"));
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["generate", "completions", shell]);
        assert!(
            script.contains("check-config") && script.contains("--config"),
            "{shell}: {script}"
        );
    }
}
