//! The output file, written strictly in sequence (a pipe passed with
//! `getfd` works as well as a file) through one buffer per step.
//!
//! A detached dump hands its buffers to a writer thread
//! ([`Sink::background`]): a pipe whose reader is slow then blocks that
//! thread, never the main loop. The job stops producing while
//! [`Sink::backlog`] is large and reports completion only once the thread
//! has written everything.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::error::DumpError;

/// The message of memory writes (the only user of [`Sink::write_direct`]).
const SAVE_MEMORY: &str = "dump: failed to save memory";

#[derive(Default)]
struct Queue {
    items: VecDeque<(Vec<u8>, &'static str)>,
    /// Bytes queued or being written.
    bytes: usize,
    closed: bool,
    /// The first failed write: its step's message and the OS error.
    error: Option<(&'static str, io::ErrorKind, Option<i32>)>,
}

struct Background {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Background {
    fn spawn(mut file: File) -> io::Result<Background> {
        let shared = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dump-writer".into())
            .spawn(move || {
                let (m, cv) = &*theirs;
                loop {
                    let (data, what) = {
                        let mut q = lock(m);
                        loop {
                            if let Some(item) = q.items.pop_front() {
                                break item;
                            }
                            if q.closed {
                                return;
                            }
                            q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    let res = file.write_all(&data);
                    let mut q = lock(m);
                    q.bytes = q.bytes.saturating_sub(data.len());
                    if let Err(e) = res {
                        q.error = Some((what, e.kind(), e.raw_os_error()));
                        q.items.clear();
                        q.bytes = 0;
                        return;
                    }
                }
            })?;
        Ok(Background {
            shared,
            thread: Some(thread),
        })
    }

    fn push(&self, data: Vec<u8>, what: &'static str) -> Result<(), DumpError> {
        let (m, cv) = &*self.shared;
        let mut q = lock(m);
        Self::check(&q)?;
        if !data.is_empty() {
            q.bytes += data.len();
            q.items.push_back((data, what));
            cv.notify_one();
        }
        Ok(())
    }

    fn check(q: &Queue) -> Result<(), DumpError> {
        match q.error {
            Some((what, kind, code)) => Err(DumpError::write(
                what,
                match code {
                    Some(c) => io::Error::from_raw_os_error(c),
                    None => io::Error::from(kind),
                },
            )),
            None => Ok(()),
        }
    }

    fn close(&self) {
        let (m, cv) = &*self.shared;
        let mut q = lock(m);
        q.closed = true;
        q.items.clear();
        cv.notify_one();
    }
}

pub struct Sink {
    file: File,
    buf: Vec<u8>,
    background: Option<Background>,
}

impl Sink {
    pub fn new(file: File) -> Self {
        Sink {
            file,
            buf: Vec::with_capacity(1 << 20),
            background: None,
        }
    }

    /// Moves the writes to a thread of their own. Without a thread (the
    /// spawn failed) the sink keeps writing in place.
    pub fn background(&mut self) -> io::Result<()> {
        if self.background.is_none() {
            self.background = Some(Background::spawn(self.file.try_clone()?)?);
        }
        Ok(())
    }

    /// Bytes handed to the writer thread and not yet written.
    pub fn backlog(&self) -> usize {
        self.background
            .as_ref()
            .map_or(0, |b| lock(&b.shared.0).bytes)
    }

    /// The writer thread's first error, if any.
    pub fn check(&self) -> Result<(), DumpError> {
        match &self.background {
            Some(b) => Background::check(&lock(&b.shared.0)),
            None => Ok(()),
        }
    }

    pub fn put(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Writes `data` at once, after anything still buffered: large runs
    /// of guest RAM go to the file without a copy (with a copy to the
    /// writer thread in the background).
    pub fn write_direct(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(b) = &self.background {
            let mut out = std::mem::take(&mut self.buf);
            out.extend_from_slice(data);
            return b.push(out, SAVE_MEMORY).map_err(|e| match e {
                DumpError::Write {
                    source: Some(s), ..
                } => s,
                other => io::Error::other(other.to_string()),
            });
        }
        if !self.buf.is_empty() {
            let res = self.file.write_all(&self.buf);
            self.buf.clear();
            res?;
        }
        self.file.write_all(data)
    }

    /// One record of makedumpfile's flattened format: big-endian offset
    /// and size in the rearranged file, then the bytes.
    pub fn record(&mut self, offset: u64, data: &[u8]) {
        self.buf.extend_from_slice(&offset.to_be_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u64).to_be_bytes());
        self.buf.extend_from_slice(data);
    }

    /// Writes what the step produced; `what` is QEMU's message for the
    /// step should the write fail.
    pub fn flush(&mut self, what: &'static str) -> Result<(), DumpError> {
        if let Some(b) = &self.background {
            let out = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20));
            return b.push(out, what);
        }
        let res = self.file.write_all(&self.buf);
        self.buf.clear();
        res.map_err(|e| DumpError::write(what, e))
    }

    /// Leaves no partial dump behind: a truncated file does not pass for a
    /// complete one. A pipe cannot be truncated; its reader sees the cut.
    /// A writer thread stops after its current write; for a regular file
    /// (where a write never waits for long) that write is awaited, so it
    /// cannot land after the truncation.
    pub fn discard(&mut self) {
        self.buf.clear();
        if let Some(b) = &mut self.background {
            b.close();
            let regular = self.file.metadata().is_ok_and(|m| m.is_file());
            if regular {
                if let Some(t) = b.thread.take() {
                    let _ = t.join();
                }
            }
        }
        let _ = self.file.set_len(0);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(b) = &self.background {
            // Lets the thread finish what is queued, then exit.
            let (m, cv) = &*b.shared;
            lock(m).closed = true;
            cv.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills the two descriptors it creates; both are
        // owned by the Files below and nothing else.
        let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: fresh descriptors from pipe(), owned only here.
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    #[test]
    fn background_writes_do_not_block_on_a_full_pipe_and_arrive_in_order() {
        let (mut r, w) = pipe();
        let mut sink = Sink::new(w);
        sink.background().unwrap();
        // Far more than a pipe holds: pushing must still return at once.
        for i in 0..64u8 {
            sink.put(&[i; 65536]);
            sink.flush("x").unwrap();
        }
        sink.write_direct(&[0xee; 10]).unwrap();
        assert!(sink.backlog() > 0);
        drop(sink);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 64 * 65536 + 10);
        assert!(all[..65536].iter().all(|&b| b == 0));
        assert!(all[63 * 65536..64 * 65536].iter().all(|&b| b == 63));
        assert_eq!(&all[64 * 65536..], &[0xee; 10]);
    }

    #[test]
    fn discarding_a_background_file_leaves_it_empty() {
        let dir = std::env::temp_dir().join(format!("sink-discard-{}", std::process::id()));
        let file = File::create(&dir).unwrap();
        let mut sink = Sink::new(file);
        sink.background().unwrap();
        for _ in 0..32 {
            sink.put(&[7; 1 << 20]);
            sink.flush("x").unwrap();
        }
        sink.discard();
        assert_eq!(std::fs::metadata(&dir).unwrap().len(), 0);
        drop(sink);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(std::fs::metadata(&dir).unwrap().len(), 0);
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn background_write_error_names_the_failing_step() {
        let full = File::options().write(true).open("/dev/full").unwrap();
        let mut sink = Sink::new(full);
        sink.background().unwrap();
        sink.put(b"header");
        sink.flush("dump: failed to write elf header").unwrap();
        let mut err = None;
        for _ in 0..1000 {
            if let Err(e) = sink.check() {
                err = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let e = err.expect("the writer reports ENOSPC");
        assert_eq!(e.to_string(), "dump: failed to write elf header");
        assert_eq!(sink.backlog(), 0);
    }
}
