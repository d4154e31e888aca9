//! Track change actions (SPEC 25): a log line and/or an external command run asynchronously
//! with the event in its environment, killed after its timeout. A slow or failing hook never
//! blocks the router: the command runs in its own process group, watched by its own thread.
//!
//! Bounds: at most [`MAX_RUNNING`] commands run at once (a flapping carrier would otherwise
//! spawn a process and a thread per change); a change that finds every slot taken skips the
//! command with a warning. At the timeout the whole process group is killed, so a hook that is
//! a shell script does not leave its children behind.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Hook;

/// Hook commands allowed to run at the same time, process-wide.
pub const MAX_RUNNING: usize = 8;

/// Hook commands running now (a slot is taken before spawning, freed when the watcher ends).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// The event handed to a hook command as MHROUTER_* environment variables.
pub struct HookEvent<'a> {
    pub track: &'a str,
    pub old: &'a str,
    pub new: &'a str,
    pub uplink: &'a str,
    pub reason: &'a str,
    pub change: u64,
}

/// A slot among the [`MAX_RUNNING`]; freed on drop, whichever way the hook ends.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_RUNNING).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

pub fn run(hook: &Hook, ev: &HookEvent) {
    if let Some(msg) = &hook.log {
        log::warn!("track {}: {msg}", ev.track);
    }
    let Some(cmd) = &hook.command else {
        return;
    };
    let name = format!("track {}: hook {}", ev.track, cmd.display());
    let Some(slot) = Slot::take() else {
        log::warn!("{name} skipped: {MAX_RUNNING} hooks already running");
        return;
    };
    let child = Command::new(cmd)
        .env("MHROUTER_TRACK", ev.track)
        .env("MHROUTER_OLD", ev.old)
        .env("MHROUTER_NEW", ev.new)
        .env("MHROUTER_UPLINK", ev.uplink)
        .env("MHROUTER_REASON", ev.reason)
        .env("MHROUTER_CHANGE", ev.change.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so the timeout can kill what the command started as well.
        .process_group(0)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            log::warn!("{name} could not start: {e}");
            return;
        }
    };
    let timeout = hook.timeout;
    let pid = child.id();
    let watcher = thread::Builder::new()
        .name("hook".into())
        .spawn(move || watch(child, timeout, &name, slot));
    if let Err(e) = watcher {
        // Without a watcher nobody would reap or time out the command: stop it now.
        kill_group(pid);
        log::warn!(
            "track {}: hook killed, no thread to watch it: {e}",
            ev.track
        );
    }
}

fn watch(mut child: Child, timeout: Duration, name: &str, _slot: Slot) {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                log::warn!("{name} failed: {status}");
                return;
            }
            Ok(None) if start.elapsed() >= timeout => {
                kill_group(child.id());
                let _ = child.wait();
                log::warn!("{name} killed after {} ms", timeout.as_millis());
                return;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                log::warn!("{name}: {e}");
                return;
            }
        }
    }
}

/// SIGKILL to the process group led by `pid` (the hook was spawned as its leader).
fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory effects; a negative pid names the process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Duration) -> (Hook, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        (
            Hook {
                log: None,
                command: Some(path),
                timeout,
            },
            dir,
        )
    }

    /// The slots are process-wide: tests that count them must not overlap.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn event() -> HookEvent<'static> {
        HookEvent {
            track: "t",
            old: "up",
            new: "down",
            uplink: "isp-a",
            reason: "test",
            change: 2,
        }
    }

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    /// A hook that starts a background child and then hangs: at the timeout both die, not only
    /// the shell the router started. The slot is freed too.
    #[test]
    fn timeout_kills_the_whole_process_group() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (h, dir) = hook(
            "sleep 300 & echo $! > \"$(dirname \"$0\")/child.pid\"; sleep 300",
            Duration::from_millis(300),
        );
        let pid_file = dir.path().join("child.pid");
        run(&h, &event());
        assert!(wait_for(
            || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
        ));
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            alive(child),
            "the hook's child should run before the timeout"
        );
        // The child is reaped by init once killed; until then it may linger as a zombie, which
        // kill(0) still sees, so look at its state.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                .unwrap_or(true)
        };
        assert!(
            wait_for(gone),
            "the hook's background child survived the timeout"
        );
    }

    /// More changes than slots: the extra commands are skipped, and every slot comes back.
    #[test]
    fn concurrent_hooks_are_bounded() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let (h, dir) = hook(
            "echo x >> \"$(dirname \"$0\")/started\"; sleep 1",
            Duration::from_secs(5),
        );
        assert!(wait_for(|| RUNNING.load(Ordering::Acquire) == 0));
        for _ in 0..(MAX_RUNNING * 3) {
            run(&h, &event());
        }
        let started = || {
            std::fs::read_to_string(dir.path().join("started"))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        };
        assert!(wait_for(|| started() >= MAX_RUNNING));
        assert!(started() <= MAX_RUNNING, "{} hooks ran at once", started());
        assert!(
            wait_for(|| RUNNING.load(Ordering::Acquire) == 0),
            "{} slots still taken",
            RUNNING.load(Ordering::Acquire)
        );
    }
}
