//! Registration of file descriptors with the poller, keyed by a token.
//!
//! Level-triggered, so a handler that leaves data unread is simply called
//! again on the next iteration; nothing is lost if it reads in bounded chunks.

use std::collections::HashMap;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

/// Identifies one registered fd; the owner maps it back to its handler.
pub type Token = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub token: Token,
    pub readable: bool,
    pub writable: bool,
}

struct Watched {
    fd: RawFd,
    read: bool,
    write: bool,
}

pub struct FdWatch {
    poller: Arc<Poller>,
    watched: HashMap<Token, Watched>,
    /// Regular files and /dev/null: epoll refuses them, but poll(2) (and
    /// so QEMU) treats them as always ready. They are reported ready on
    /// every iteration instead.
    always_ready: Vec<Token>,
    next_token: Token,
}

fn interest(token: Token, read: bool, write: bool) -> Event {
    match (read, write) {
        (true, true) => Event::all(token),
        (true, false) => Event::readable(token),
        (false, true) => Event::writable(token),
        (false, false) => Event::none(token),
    }
}

impl FdWatch {
    pub fn new() -> io::Result<Self> {
        Ok(FdWatch {
            poller: Arc::new(Poller::new()?),
            watched: HashMap::new(),
            always_ready: Vec::new(),
            next_token: 1,
        })
    }

    /// A handle other threads (vCPUs, workers) use to wake the loop.
    pub fn notifier(&self) -> Arc<Poller> {
        Arc::clone(&self.poller)
    }

    /// Starts watching `fd`. The caller must `remove` the token before the fd
    /// is closed.
    pub fn add(&mut self, fd: RawFd, read: bool, write: bool) -> io::Result<Token> {
        let token = self.next_token;
        self.next_token += 1;
        // SAFETY: the fd is open (owned by the caller), and every owner
        // removes its token before closing the fd, as polling requires.
        let added = unsafe {
            self.poller
                .add_with_mode(fd, interest(token, read, write), PollMode::Level)
        };
        match added {
            Ok(()) => {
                self.watched.insert(token, Watched { fd, read, write });
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => self.always_ready.push(token),
            Err(e) => return Err(e),
        }
        Ok(token)
    }

    /// Changes what a token waits for; cheap when nothing changes.
    pub fn set_interest(&mut self, token: Token, read: bool, write: bool) {
        let Some(w) = self.watched.get_mut(&token) else {
            return;
        };
        if w.read == read && w.write == write {
            return;
        }
        w.read = read;
        w.write = write;
        // SAFETY: the fd stays open while it is registered (see `add`).
        let fd = unsafe { BorrowedFd::borrow_raw(w.fd) };
        let _ = self
            .poller
            .modify_with_mode(fd, interest(token, read, write), PollMode::Level);
    }

    /// Tokens of fds that cannot be polled, to treat as ready now.
    pub fn always_ready(&self) -> impl Iterator<Item = Readiness> + '_ {
        self.always_ready.iter().map(|&token| Readiness {
            token,
            readable: true,
            writable: true,
        })
    }

    pub fn has_always_ready(&self) -> bool {
        !self.always_ready.is_empty()
    }

    pub fn remove(&mut self, token: Token) {
        self.always_ready.retain(|t| *t != token);
        if let Some(w) = self.watched.remove(&token) {
            // SAFETY: the fd is still open: owners remove before closing.
            let fd = unsafe { BorrowedFd::borrow_raw(w.fd) };
            let _ = self.poller.delete(fd);
        }
    }
}

/// Blocks until an fd is ready, the timeout passes or another thread
/// notifies; ready tokens are appended to `out`. Runs without the big lock:
/// the poller is shared, the events buffer belongs to the caller.
pub fn wait_on(
    poller: &Poller,
    events: &mut Events,
    timeout: Option<Duration>,
    out: &mut Vec<Readiness>,
) {
    events.clear();
    match poller.wait(events, timeout) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => {
            eprintln!("qemu-system-x86_64: poll failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    for ev in events.iter() {
        let hangup = ev.is_err().unwrap_or(false);
        out.push(Readiness {
            token: ev.key,
            readable: ev.readable || hangup,
            writable: ev.writable,
        });
    }
}
