//! Talking to systemd when it runs the router (`Type=notify`): readiness, reload and stop
//! notifications sent as one datagram each to `$NOTIFY_SOCKET` (sd_notify(3)). Outside systemd
//! the variable is unset and every call does nothing.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The router is up: interfaces, workers and the control socket.
pub const READY: &str = "READY=1";
/// Shutting down.
pub const STOPPING: &str = "STOPPING=1";

/// Sends `state` (newline-separated `KEY=VALUE` lines) to systemd when `$NOTIFY_SOCKET` is
/// set. A failure is logged and otherwise ignored: the router works the same without systemd.
pub fn notify(state: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(e) = notify_to(&socket, state)
    {
        log::warn!("sd_notify {}: {e}", socket.to_string_lossy());
    }
}

/// Reloading; systemd waits for the next [`READY`]. MONOTONIC_USEC lets `Type=notify-reload`
/// tell this reload from an earlier one.
pub fn reloading() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Sends one notification to `socket`: a path, or an abstract name written `@name`.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let sent = UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::other("short write"));
    }
    Ok(())
}

/// Whether stderr is connected to the journal: systemd sets `$JOURNAL_STREAM` to the
/// `device:inode` of that stream, which a redirect by the service would change.
pub fn stderr_is_journal() -> bool {
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat fills the stat buffer we own; fd 2 may be closed, which it reports.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the struct is filled.
    let st = unsafe { st.assume_init() };
    want.to_string_lossy() == format!("{}:{}", st.st_dev, st.st_ino)
}

/// The syslog priority journald reads from a `<N>` line prefix (sd-daemon(3)), so
/// `journalctl -p warning` selects the router's warnings and errors.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path() {
        let dir = std::env::temp_dir().join(format!("mh-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), READY).unwrap();
        assert_eq!(received(&sock), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = format!("mh-notify-test-{}", std::process::id());
        let sock =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify_to(OsStr::new(&format!("@{name}")), &reloading()).unwrap();
        let got = received(&sock);
        assert!(got.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{got}");
        assert!(got.rsplit('=').next().unwrap().parse::<u64>().unwrap() > 0);
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(log::Level::Error), 3);
        assert_eq!(priority(log::Level::Warn), 4);
        assert_eq!(priority(log::Level::Info), 6);
        assert_eq!(priority(log::Level::Trace), 7);
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        assert!(notify_to(OsStr::new("/nonexistent/notify"), READY).is_err());
    }
}
