//! Track change actions (SPEC 25): a log line and/or an external command run asynchronously
//! with the event in its environment, killed after its timeout. A slow or failing hook never
//! blocks the router: the command runs in its own process, watched by its own thread.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Hook;

/// The event handed to a hook command as MHROUTER_* environment variables.
pub struct HookEvent<'a> {
    pub track: &'a str,
    pub old: &'a str,
    pub new: &'a str,
    pub uplink: &'a str,
    pub reason: &'a str,
    pub change: u64,
}

pub fn run(hook: &Hook, ev: &HookEvent) {
    if let Some(msg) = &hook.log {
        log::warn!("track {}: {msg}", ev.track);
    }
    let Some(cmd) = &hook.command else {
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
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "track {}: hook {} could not start: {e}",
                ev.track,
                cmd.display()
            );
            return;
        }
    };
    let timeout = hook.timeout;
    let name = format!("track {}: hook {}", ev.track, cmd.display());
    thread::spawn(move || {
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return,
                Ok(Some(status)) => {
                    log::warn!("{name} failed: {status}");
                    return;
                }
                Ok(None) if start.elapsed() >= timeout => {
                    let _ = child.kill();
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
    });
}
