//! A small epoll wrapper and an eventfd waker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::retry;

/// Events fetched per epoll_wait; more ready fds are reported by the next call.
const MAX_EVENTS: usize = 64;

/// Level-triggered epoll instance: an fd stays ready until drained, so a worker may stop after
/// one batch and still be woken for the rest.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall with an integer argument.
        let fd = retry(|| unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `fd` for readability; `token` is what `wait` reports for it.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event, live for the call; the kernel copies it.
        retry(|| unsafe {
            libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event)
        })
        .map(drop)
    }

    /// Waits up to `timeout_ms` (-1: forever) and replaces `events` with the tokens of the ready
    /// fds (empty on timeout). Reuses `events`' allocation.
    pub fn wait(&self, events: &mut Vec<u64>, timeout_ms: i32) -> io::Result<()> {
        let mut ready = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        // SAFETY: `ready` holds MAX_EVENTS writable epoll_event, the count passed.
        let n = retry(|| unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                ready.as_mut_ptr(),
                MAX_EVENTS as libc::c_int,
                timeout_ms,
            )
        })? as usize;
        events.clear();
        events.extend(ready.iter().take(n).map(|e| e.u64));
        Ok(())
    }
}

/// An eventfd to wake a thread blocked in epoll (shutdown, new work). Register
/// [`Waker::as_raw_fd`] with [`Epoll::add`] and call [`Waker::drain`] when it is reported.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall with integer arguments.
        let fd = retry(|| unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the eventfd readable. Never fails in practice: the only error, a saturated counter,
    /// means it is readable already.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, live for the call, as eventfd requires.
        let _ = retry(|| unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                size_of::<u64>(),
            )
        });
    }

    /// Resets the eventfd to not readable.
    pub fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into `count`, live for the call. One read resets the counter;
        // EAGAIN (nothing pending) is the expected failure and needs no handling.
        let _ = retry(|| unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                size_of::<u64>(),
            )
        });
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_wakes_epoll_until_drained() {
        let epoll = Epoll::new().unwrap();
        let waker = Waker::new().unwrap();
        epoll.add(waker.as_raw_fd(), 7).unwrap();
        let mut events = vec![99];
        epoll.wait(&mut events, 0).unwrap();
        assert!(events.is_empty(), "nothing should be ready yet");
        waker.wake();
        waker.wake();
        epoll.wait(&mut events, 1000).unwrap();
        assert_eq!(events, vec![7]);
        // Level-triggered: still ready until drained.
        epoll.wait(&mut events, 0).unwrap();
        assert_eq!(events, vec![7]);
        waker.drain();
        epoll.wait(&mut events, 0).unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn wake_from_another_thread_ends_a_blocking_wait() {
        let epoll = Epoll::new().unwrap();
        let waker = std::sync::Arc::new(Waker::new().unwrap());
        epoll.add(waker.as_raw_fd(), 1).unwrap();
        let remote = waker.clone();
        let t = std::thread::spawn(move || remote.wake());
        let mut events = Vec::new();
        epoll.wait(&mut events, 5000).unwrap();
        t.join().unwrap();
        assert_eq!(events, vec![1]);
    }
}
