//! Integration tests of the I/O layer (src/io). They need root: each test creates its own
//! network namespace `hx-io-<test>-<pid>`, runs its body on a thread that entered it (sockets and
//! TAPs belong to the creating thread's namespace), and deletes it afterwards, even on panic.
//! Without root they fail, unless MH_SKIP_ROOT_TESTS=1 asks to skip them (see tests/common).

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use mhrouter::io::link::{LinkWatcher, link_info, set_link_up};
use mhrouter::io::packet::{PacketOptions, PacketSocket, RecvBatch, send_all};
use mhrouter::io::poll::Epoll;
use mhrouter::io::ring::{RingOptions, RxRing};
use mhrouter::io::tap::Tap;
use mhrouter::io::{MAX_FRAME, VNET_HDR_LEN};

mod common;

/// IEEE "local experimental" EtherType: nothing else in the namespace sends it, so it tells our
/// test frames apart from IPv6 chatter.
const TEST_ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// A network namespace made for one test; deleted on drop, so also when the test panics.
struct Netns {
    name: String,
}

impl Netns {
    fn new(test: &str) -> Netns {
        let name = format!("hx-io-{test}-{}", std::process::id());
        run(&["ip", "netns", "add", &name]);
        Netns { name }
    }

    /// Runs `ip -n <ns> <args>`, panicking if it fails.
    fn ip(&self, args: &str) {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend(args.split_whitespace());
        run(&argv);
    }

    /// Runs `body` on a thread that entered this namespace; panics propagate.
    fn run<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let path = format!("/var/run/netns/{}", self.name);
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: `ns` is an open netns file; setns only changes this thread's namespace.
                let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
                body()
            });
            handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A broadcast Ethernet frame of TEST_ETHERTYPE, with the source MAC ending in `src` and a
/// payload starting with `tag`, padded to the 60-byte minimum.
fn eth_frame(src: u8, tag: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, src]);
    f.extend_from_slice(&TEST_ETHERTYPE);
    f.extend_from_slice(tag);
    f.resize(f.len().max(60), 0);
    f
}

/// `eth` behind an all-zero vnet header (no offload: nothing to do for the kernel).
fn with_vnet(eth: &[u8]) -> Vec<u8> {
    let mut f = vec![0; VNET_HDR_LEN];
    f.extend_from_slice(eth);
    f
}

/// virtio_net_hdr.gso_type (byte 1): 0 = VIRTIO_NET_HDR_GSO_NONE.
fn gso_type(frame: &[u8]) -> u8 {
    frame[1]
}

fn is_test_frame(eth: &[u8]) -> bool {
    eth.get(12..14) == Some(&TEST_ETHERTYPE[..])
}

fn receiving(vnet_hdr: bool, fanout_group: Option<u16>) -> PacketOptions {
    PacketOptions {
        vnet_hdr,
        receive: true,
        fanout_group,
        rcvbuf: 1 << 20,
        sndbuf: 1 << 20,
    }
}

/// Collects the Ethernet parts (vnet header stripped) of test frames arriving on `sock` until
/// `want` arrived or `timeout` passed; checks every received vnet header says "no GSO".
fn collect(sock: &PacketSocket, want: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let epoll = Epoll::new().unwrap();
    epoll.add(sock.as_raw_fd(), 0).unwrap();
    let mut batch = RecvBatch::new(8);
    let mut got = Vec::new();
    let mut ready = Vec::new();
    let deadline = Instant::now() + timeout;
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        epoll.wait(&mut ready, left.as_millis() as i32 + 1).unwrap();
        let n = batch.recv(sock).unwrap();
        for i in 0..n {
            let frame = batch.frame_mut(i);
            let eth = &frame[VNET_HDR_LEN..];
            if is_test_frame(eth) {
                assert_eq!(
                    gso_type(frame),
                    0,
                    "unexpected GSO header {:?}",
                    &frame[..10]
                );
                got.push(eth.to_vec());
            }
        }
    }
    assert_eq!(batch.truncated(), 0);
    got
}

/// Collects the whole frames (vnet header included) of test frames arriving in `ring` until
/// `want` arrived or `timeout` passed.
fn collect_ring(
    ring: &mut RxRing,
    sock: &PacketSocket,
    want: usize,
    timeout: Duration,
) -> Vec<Vec<u8>> {
    let epoll = Epoll::new().unwrap();
    epoll.add(sock.as_raw_fd(), 0).unwrap();
    let mut got = Vec::new();
    let mut ready = Vec::new();
    let deadline = Instant::now() + timeout;
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        epoll.wait(&mut ready, left.as_millis() as i32 + 1).unwrap();
        // Drain: a block stays readable until every frame in it was taken.
        loop {
            let n = ring.recv();
            assert!(n <= ring.capacity());
            if n == 0 {
                break;
            }
            for i in 0..n {
                assert!(ring.received(i).is_some());
                let frame = ring.frame(i);
                if is_test_frame(&frame[VNET_HDR_LEN..]) {
                    got.push(frame.to_vec());
                }
            }
        }
    }
    got
}

/// A namespace with a veth pair pa -- pb (MTU 9000) and no IPv6 chatter on it.
fn veth_pair(test: &str) -> Netns {
    let ns = Netns::new(test);
    // No IPv6: the links' own router solicitations and MLD reports would be frames too.
    run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    ns.ip("link add pa mtu 9000 type veth peer name pb mtu 9000");
    ns.ip("link set pa up");
    ns.ip("link set pb up");
    ns
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the veth ends pa and pb are operationally up. The kernel's link watcher, which
/// also turns on the transmit queue, runs at most once a second for the whole machine: a frame
/// sent before it has run is dropped, so a test sending at once fails when other links changed.
fn wait_carrier() {
    wait_for("carrier on pa and pb", Duration::from_secs(5), || {
        ["pa", "pb"].iter().all(|l| link_info(l).unwrap().carrier)
    });
}

#[test]
fn tap_with_vnet_header_and_two_queues_bridges_both_ways() {
    if !common::require_root() {
        return;
    }
    let ns = Netns::new("tap");
    ns.ip("link add br0 type bridge");
    ns.ip("link set br0 up");
    ns.ip("link add v0 type veth peer name v1");
    ns.ip("link set v0 master br0");
    ns.ip("link set v0 up");
    ns.ip("link set v1 up");

    ns.run(|| {
        let mut tap = Tap::create("hxtap0", 2, true, 1400).unwrap();
        let info = link_info("hxtap0").unwrap();
        assert_eq!(info.ifindex, tap.ifindex());
        assert_eq!(tap.name(), "hxtap0");
        assert_eq!(info.mtu, 1400);
        assert!(info.up);

        let again = Tap::create("hxtap0", 1, false, 1500).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");
        let taken = Tap::create("br0", 1, false, 1500).unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::AlreadyExists, "{taken}");

        let missing = tap.enslave("nosuchbr").unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
        tap.enslave("br0").unwrap();
        let shown = output(&["ip", "-o", "link", "show", "hxtap0"]);
        assert!(shown.contains("master br0"), "{shown}");

        // TUNSETOFFLOAD took effect: the kernel may now hand the TAP partial checksums and TSO.
        let features = output(&["ethtool", "-k", "hxtap0"]);
        assert!(
            features.contains("tcp-segmentation-offload: on"),
            "{features}"
        );
        let plain = Tap::create("hxtap1", 1, false, 1500).unwrap();
        let features = output(&["ethtool", "-k", plain.name()]);
        assert!(
            features.contains("tcp-segmentation-offload: off"),
            "{features}"
        );

        let v1 =
            PacketSocket::open(link_info("v1").unwrap().ifindex, &receiving(true, None)).unwrap();
        let queues = tap.take_queues();
        assert_eq!(queues.len(), 2);
        assert!(tap.take_queues().is_empty());
        wait_for("TAP carrier", Duration::from_secs(3), || {
            link_info("hxtap0").unwrap().carrier
        });

        // TAP -> bridge -> veth.
        let to_bridge = eth_frame(1, b"hx-io tap to bridge");
        queues[1].write(&with_vnet(&to_bridge)).unwrap();
        let seen = collect(&v1, 1, Duration::from_secs(3));
        assert_eq!(seen, vec![to_bridge]);

        // veth -> bridge -> TAP: whichever queue the kernel picks, the frame carries its header.
        let epoll = Epoll::new().unwrap();
        for (token, q) in queues.iter().enumerate() {
            epoll.add(q.as_raw_fd(), token as u64).unwrap();
        }
        let to_tap = eth_frame(2, b"hx-io bridge to tap");
        v1.send(&with_vnet(&to_tap)).unwrap();
        let mut buf = vec![0; MAX_FRAME];
        let mut ready = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut found = None;
        while found.is_none() && Instant::now() < deadline {
            epoll.wait(&mut ready, 100).unwrap();
            for q in &queues {
                loop {
                    match q.read(&mut buf) {
                        Ok(n) if is_test_frame(&buf[VNET_HDR_LEN..n]) => {
                            found = Some(buf[..n].to_vec())
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("TAP read: {e}"),
                    }
                }
            }
        }
        let frame = found.expect("frame sent to the bridge never reached the TAP");
        assert_eq!(frame.len(), VNET_HDR_LEN + to_tap.len());
        assert_eq!(gso_type(&frame), 0);
        assert_eq!(&frame[VNET_HDR_LEN..], &to_tap[..]);

        // The device lives while a queue fd is open, and goes with the last one.
        drop(tap);
        assert!(
            link_info("hxtap0").is_ok(),
            "TAP vanished while its queues were open"
        );
        drop(queues);
        wait_for("TAP removal", Duration::from_secs(3), || {
            link_info("hxtap0").is_err_and(|e| e.kind() == ErrorKind::NotFound)
        });
    });
}

#[test]
fn packet_sockets_on_a_veth_pair() {
    if !common::require_root() {
        return;
    }
    let ns = Netns::new("packet");
    ns.ip("link add pa type veth peer name pb");
    ns.ip("link set pa up");
    ns.ip("link set pb up");

    ns.run(|| {
        wait_carrier();
        let pa = link_info("pa").unwrap().ifindex;
        let pb = link_info("pb").unwrap().ifindex;
        let sa = PacketSocket::open(pa, &receiving(true, None)).unwrap();
        let sb = PacketSocket::open(pb, &receiving(true, None)).unwrap();
        assert_eq!(sa.ifindex(), pa);

        let one = eth_frame(1, b"hx-io single");
        sa.send(&with_vnet(&one)).unwrap();
        assert_eq!(collect(&sb, 1, Duration::from_secs(3)), vec![one]);

        let frames: Vec<Vec<u8>> = (0..10u8)
            .map(|i| with_vnet(&eth_frame(1, &[b'#', i])))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(send_all(&sa, &refs).unwrap(), 10);
        let got = collect(&sb, 10, Duration::from_secs(3));
        let expected: Vec<Vec<u8>> = frames.iter().map(|f| f[VNET_HDR_LEN..].to_vec()).collect();
        assert_eq!(got, expected, "send_all: all 10, in order, unchanged");

        // A send-only socket without vnet header: its frames go out as they are, it reads nothing.
        let send_only = PacketOptions {
            vnet_hdr: false,
            receive: false,
            fanout_group: None,
            rcvbuf: 0,
            sndbuf: 0,
        };
        let so = PacketSocket::open(pa, &send_only).unwrap();
        let raw = eth_frame(3, b"hx-io send-only");
        so.send(&raw).unwrap();
        assert_eq!(collect(&sb, 1, Duration::from_secs(3)), vec![raw]);

        // PACKET_IGNORE_OUTGOING: sa reads none of the 12 frames leaving pa (the kernel never
        // loops a socket's own frames back; the option is what hides the other socket's one),
        // yet it does receive what the peer sends.
        let reply = eth_frame(2, b"hx-io reply");
        sb.send(&with_vnet(&reply)).unwrap();
        assert_eq!(collect(&sa, 13, Duration::from_millis(300)), vec![reply]);
        assert_eq!(RecvBatch::new(4).recv(&so).unwrap(), 0);
        let bad = PacketOptions {
            fanout_group: Some(1),
            ..send_only
        };
        assert_eq!(
            PacketSocket::open(pa, &bad).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );

        // Two members of one fanout group share the traffic: each frame reaches exactly one.
        let f1 = PacketSocket::open(pb, &receiving(true, Some(7))).unwrap();
        let f2 = PacketSocket::open(pb, &receiving(true, Some(7))).unwrap();
        let burst: Vec<Vec<u8>> = (0..20u8)
            .map(|i| with_vnet(&eth_frame(10 + i, b"hx-io fanout")))
            .collect();
        assert_eq!(send_all(&sa, burst.iter().map(Vec::as_slice)).unwrap(), 20);
        let n1 = collect(&f1, 20, Duration::from_millis(500)).len();
        let n2 = collect(&f2, 20, Duration::from_millis(200)).len();
        assert_eq!(n1 + n2, 20, "fanout delivered {n1} + {n2}");
        // The group ignores outgoing frames too, although its hook is not the sockets' own.
        sb.send(&with_vnet(&eth_frame(3, b"hx-io fanout out")))
            .unwrap();
        let n1 = collect(&f1, 1, Duration::from_millis(200)).len();
        let n2 = collect(&f2, 1, Duration::from_millis(100)).len();
        assert_eq!(n1 + n2, 0, "fanout read back {n1} + {n2} outgoing frames");
    });
}

#[test]
fn link_info_and_carrier_events() {
    if !common::require_root() {
        return;
    }
    let ns = Netns::new("link");
    ns.ip("link add la type veth peer name lb");
    ns.ip("link set la address 02:12:34:56:78:9a mtu 1400");
    ns.ip("link set la up");
    ns.ip("link set lb up");
    ns.ip("link add lc type veth peer name ld");

    ns.run(|| {
        wait_for("carrier on la", Duration::from_secs(3), || {
            link_info("la").unwrap().carrier
        });
        let la = link_info("la").unwrap();
        assert_eq!(la.mac, [0x02, 0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(la.mtu, 1400);
        assert!(la.up);
        assert_eq!(
            link_info("nosuchlink").unwrap_err().kind(),
            ErrorKind::NotFound
        );

        let lc = link_info("lc").unwrap();
        assert!(!lc.up && !lc.carrier);
        set_link_up("lc").unwrap();
        assert!(link_info("lc").unwrap().up);

        let mut watcher = LinkWatcher::new().unwrap();
        let epoll = Epoll::new().unwrap();
        epoll.add(watcher.as_raw_fd(), 0).unwrap();
        let mut await_carrier = |want: bool| {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut ready = Vec::new();
            loop {
                assert!(
                    Instant::now() < deadline,
                    "no event with carrier {want} for la"
                );
                epoll.wait(&mut ready, 100).unwrap();
                let events = watcher.read_events().unwrap();
                if events
                    .iter()
                    .any(|e| e.ifindex == la.ifindex && e.carrier == want && e.up)
                {
                    return;
                }
            }
        };
        run(&["ip", "link", "set", "lb", "down"]);
        await_carrier(false);
        assert!(!link_info("la").unwrap().carrier);
        run(&["ip", "link", "set", "lb", "up"]);
        await_carrier(true);
        assert!(link_info("la").unwrap().carrier);
        assert!(!watcher.take_overrun());
    });
}

/// A burst of link changes read too late overflows the netlink socket: the watcher must say so
/// (the router then re-reads every uplink's carrier) rather than report a stale state.
#[test]
fn link_watcher_reports_an_overrun() {
    if !common::require_root() {
        return;
    }
    let ns = Netns::new("ovr");
    ns.ip("link add la type veth peer name lb");
    ns.ip("link set la up");
    let batch = std::env::temp_dir().join(format!("mh-io-ovr-{}.batch", std::process::id()));
    let lines: String = (0..5000)
        .map(|i| format!("link set lb {}\n", if i % 2 == 0 { "up" } else { "down" }))
        .collect();
    std::fs::write(&batch, lines).unwrap();
    ns.run(|| {
        let mut watcher = LinkWatcher::new().unwrap();
        assert!(watcher.read_events().unwrap().is_empty());
        assert!(!watcher.take_overrun());
        run(&["ip", "-batch", batch.to_str().unwrap()]);
        let events = watcher.read_events().unwrap();
        assert!(
            watcher.take_overrun(),
            "5000 unread link changes ({} read back) did not overrun the socket",
            events.len()
        );
        assert!(!watcher.take_overrun(), "an overrun is reported once");
        // What the router does next: the carrier read directly matches the last change.
        assert!(!link_info("la").unwrap().carrier);
    });
    let _ = std::fs::remove_file(&batch);
}

#[test]
fn a_full_receive_buffer_is_counted_and_the_count_taken_once() {
    if !common::require_root() {
        return;
    }
    let ns = Netns::new("drops");
    // No IPv6: the links' own router solicitations and MLD reports would be frames too.
    run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    ns.ip("link add pa type veth peer name pb");
    ns.ip("link set pa up");
    ns.ip("link set pb up");

    ns.run(|| {
        wait_carrier();
        let pa = link_info("pa").unwrap().ifindex;
        let pb = link_info("pb").unwrap().ifindex;
        let sa = PacketSocket::open(pa, &receiving(true, None)).unwrap();
        // The smallest buffer the kernel allows (it doubles and floors the value): a few
        // frames fill it, and the rest are the kernel's drops.
        let small = PacketOptions {
            rcvbuf: 1,
            ..receiving(true, None)
        };
        let sb = PacketSocket::open(pb, &small).unwrap();
        assert_eq!(sb.take_drops().unwrap(), 0, "nothing lost yet");
        let burst: Vec<Vec<u8>> = (0..200u8)
            .map(|i| with_vnet(&eth_frame(1, &[i; 1000])))
            .collect();
        let mut sent = 0;
        for chunk in burst.chunks(20) {
            sent += send_all(&sa, chunk.iter().map(Vec::as_slice)).unwrap();
        }
        assert_eq!(sent, 200);
        let got = collect(&sb, 200, Duration::from_millis(300)).len();
        let lost = sb.take_drops().unwrap() as usize;
        assert!(
            got < 200,
            "a {got}-frame buffer is not full: the test shows nothing"
        );
        assert_eq!(
            got + lost,
            200,
            "every frame either read ({got}) or counted lost ({lost})"
        );
        assert_eq!(
            sb.take_drops().unwrap(),
            0,
            "the count is taken, not read twice"
        );
    });
}

/// Blocks of two pages: a 6000-byte frame fills most of one, so frames of mixed sizes spread over
/// many blocks and the reader walks, resumes and hands back blocks all the time.
const SMALL_BLOCKS: RingOptions = RingOptions {
    block_size: 8192,
    blocks: 16,
    retire_ms: 1,
};

#[test]
fn a_ring_reads_frames_whole_and_in_order() {
    if !common::require_root() {
        return;
    }
    let ns = veth_pair("ring");
    ns.run(|| {
        wait_carrier();
        let pa = link_info("pa").unwrap().ifindex;
        let pb = link_info("pb").unwrap().ifindex;
        let sa = PacketSocket::open(pa, &receiving(true, None)).unwrap();
        let sb = PacketSocket::open(pb, &receiving(true, None)).unwrap();
        // Five frames per recv: batches end in the middle of blocks.
        let mut ring = RxRing::attach(&sb, SMALL_BLOCKS, 5).unwrap();
        assert_eq!(ring.capacity(), 5);
        assert_eq!(
            RxRing::attach(&sb, SMALL_BLOCKS, 5).err().map(|e| e.kind()),
            Some(ErrorKind::ResourceBusy),
            "a second ring on one socket"
        );
        // Four rounds of 16 frames, ~8 blocks each: the ring of 16 blocks wraps twice, which
        // works only if the blocks read are handed back.
        let sizes = [60, 700, 1500, 6000];
        for round in 0..4u8 {
            let frames: Vec<Vec<u8>> = (0..16u8)
                .map(|i| {
                    let len = sizes[usize::from(i) % sizes.len()];
                    let mut tag = vec![round * 16 + i; len];
                    tag[0] = round;
                    tag[1] = i;
                    with_vnet(&eth_frame(1, &tag))
                })
                .collect();
            assert_eq!(send_all(&sa, frames.iter().map(Vec::as_slice)).unwrap(), 16);
            let got = collect_ring(&mut ring, &sb, 16, Duration::from_secs(3));
            assert_eq!(got.len(), 16, "round {round}: frames read");
            for (i, (g, f)) in got.iter().zip(&frames).enumerate() {
                assert_eq!(g.len(), f.len(), "round {round} frame {i}: length");
                assert_eq!(gso_type(g), 0);
                assert!(
                    g[VNET_HDR_LEN..] == f[VNET_HDR_LEN..],
                    "round {round} frame {i}: the Ethernet frame after the vnet header differs"
                );
            }
        }
        assert_eq!(ring.truncated(), 0);
        // A frame larger than a block is cut by the kernel: counted, and the next one arrives.
        let big = with_vnet(&eth_frame(1, &[0xbb; 8500]));
        let after = with_vnet(&eth_frame(1, b"after the big one"));
        assert_eq!(send_all(&sa, [&big, &after]).unwrap(), 2);
        let got = collect_ring(&mut ring, &sb, 1, Duration::from_secs(3));
        assert_eq!(got, vec![after]);
        assert_eq!(ring.truncated(), 1);
        assert_eq!(sb.take_drops().unwrap(), 0);
    });
}

#[test]
fn a_full_ring_counts_its_drops_and_recovers() {
    if !common::require_root() {
        return;
    }
    let ns = veth_pair("ringfull");
    ns.run(|| {
        wait_carrier();
        let pa = link_info("pa").unwrap().ifindex;
        let pb = link_info("pb").unwrap().ifindex;
        let sa = PacketSocket::open(pa, &receiving(true, None)).unwrap();
        let sb = PacketSocket::open(pb, &receiving(true, None)).unwrap();
        let two = RingOptions {
            blocks: 2,
            ..SMALL_BLOCKS
        };
        let mut ring = RxRing::attach(&sb, two, 32).unwrap();
        assert_eq!(sb.take_drops().unwrap(), 0, "nothing lost yet");
        let burst: Vec<Vec<u8>> = (0..200u8)
            .map(|i| with_vnet(&eth_frame(1, &[i; 1000])))
            .collect();
        let mut sent = 0;
        for chunk in burst.chunks(20) {
            sent += send_all(&sa, chunk.iter().map(Vec::as_slice)).unwrap();
        }
        assert_eq!(sent, 200);
        let got = collect_ring(&mut ring, &sb, 200, Duration::from_millis(300));
        let lost = sb.take_drops().unwrap() as usize;
        assert!(
            got.len() < 200,
            "{} frames fit in two blocks: the test shows nothing",
            got.len()
        );
        assert_eq!(
            got.len() + lost,
            200,
            "every frame either read ({}) or counted lost ({lost})",
            got.len()
        );
        assert_eq!(
            got[..],
            burst[..got.len()],
            "the first frames, whole and in order"
        );
        // Handed back, the blocks take frames again.
        let later: Vec<Vec<u8>> = (0..3u8)
            .map(|i| with_vnet(&eth_frame(2, &[i; 100])))
            .collect();
        assert_eq!(send_all(&sa, later.iter().map(Vec::as_slice)).unwrap(), 3);
        assert_eq!(
            collect_ring(&mut ring, &sb, 3, Duration::from_secs(3)),
            later
        );
        assert_eq!(sb.take_drops().unwrap(), 0);
    });
}
