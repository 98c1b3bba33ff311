//! Per-connection byte buffers. The input side holds what the client sent
//! and we have not parsed yet, the output side what we owe the client and
//! have not sent yet. Both are bounded by their callers: input by the size of
//! the message being assembled, output by the client's high-water mark.

use std::io::{self, Read, Write};

/// Buffers larger than this are given back once empty, so an idle client
/// that once sent a 32 MiB write does not keep 32 MiB.
const KEEP_CAPACITY: usize = 4 * 1024 * 1024;

/// Outcome of one non-blocking transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transfer {
    /// Moved this many bytes (never 0).
    Moved(usize),
    /// Nothing to do (input full / output empty).
    Idle,
    /// The socket has no data / no room right now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

#[derive(Default)]
pub(crate) struct InputBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InputBuffer {
    pub(crate) fn unread(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > KEEP_CAPACITY {
                self.data = Vec::new();
            }
        }
    }

    /// One read() into the buffer, holding at most `limit` unread bytes.
    pub(crate) fn fill_from(&mut self, r: &mut impl Read, limit: usize) -> io::Result<Transfer> {
        let unread = self.len();
        if unread >= limit {
            return Ok(Transfer::Idle);
        }
        if self.start > 0 && self.data.len() - self.start < limit {
            self.data.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = unread;
        }
        if self.data.len() < self.start + limit {
            self.data.resize(self.start + limit, 0);
        }
        let stop = self.start + limit;
        loop {
            match r.read(&mut self.data[self.end..stop]) {
                Ok(0) => return Ok(Transfer::Eof),
                Ok(n) => {
                    self.end += n;
                    return Ok(Transfer::Moved(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Transfer::WouldBlock),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Output kept allocated between replies: a reply in progress never holds
/// more than the client's high-water mark plus one read piece, and reusing
/// the memory spares a fresh allocation (and its page faults) per batch.
const KEEP_OUTPUT: usize = 8 * 1024 * 1024;

/// Queued output in `data[pos..end]`. `data` beyond `end` is initialised
/// but stale; it is reused for the next bytes without being zeroed again.
#[derive(Default)]
pub(crate) struct OutputBuffer {
    data: Vec<u8>,
    pos: usize,
    end: usize,
}

impl OutputBuffer {
    pub(crate) fn pending(&self) -> usize {
        self.end - self.pos
    }

    /// Position after everything queued; a mark for `truncate` and `patch`
    /// (only valid until the next `write_to`).
    pub(crate) fn mark(&self) -> usize {
        self.end
    }

    /// Drop everything queued after `mark`.
    pub(crate) fn truncate(&mut self, mark: usize) {
        self.end = self.end.min(mark.max(self.pos));
    }

    /// Make room for `n` more bytes and return them (contents unspecified).
    fn grow(&mut self, n: usize) -> &mut [u8] {
        let at = self.end;
        if self.data.len() < at + n {
            self.data.resize(at + n, 0);
        }
        self.end = at + n;
        &mut self.data[at..at + n]
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.grow(bytes.len()).copy_from_slice(bytes);
    }

    /// Append `n` bytes and return them to be filled in place, so data read
    /// from the backend goes to the socket without another copy. The caller
    /// must overwrite all of them (or `truncate` them away).
    pub(crate) fn extend_for_fill(&mut self, n: usize) -> &mut [u8] {
        self.grow(n)
    }

    /// Append `n` zero bytes.
    pub(crate) fn push_zeroes(&mut self, n: usize) {
        self.grow(n).fill(0);
    }

    /// Overwrite already queued bytes at absolute position `at` (a mark).
    pub(crate) fn patch(&mut self, at: usize, bytes: &[u8]) {
        if at + bytes.len() <= self.end {
            self.data[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// One write() of queued bytes.
    pub(crate) fn write_to(&mut self, w: &mut impl Write) -> io::Result<Transfer> {
        if self.pending() == 0 {
            return Ok(Transfer::Idle);
        }
        loop {
            match w.write(&self.data[self.pos..self.end]) {
                Ok(0) => return Ok(Transfer::Eof),
                Ok(n) => {
                    self.pos += n;
                    if self.pos == self.end {
                        self.pos = 0;
                        self.end = 0;
                        if self.data.len() > KEEP_OUTPUT {
                            self.data = Vec::new();
                        }
                    } else if self.pos > 64 * 1024 && self.pos > self.end / 2 {
                        // Marks are only valid until here, so moving data is safe.
                        self.data.copy_within(self.pos..self.end, 0);
                        self.end -= self.pos;
                        self.pos = 0;
                    }
                    return Ok(Transfer::Moved(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Transfer::WouldBlock),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_never_holds_more_than_the_limit() {
        let mut src: &[u8] = &[7u8; 100];
        let mut buf = InputBuffer::default();
        assert_eq!(buf.fill_from(&mut src, 10).ok(), Some(Transfer::Moved(10)));
        assert_eq!(buf.fill_from(&mut src, 10).ok(), Some(Transfer::Idle));
        buf.consume(4);
        assert_eq!(buf.fill_from(&mut src, 10).ok(), Some(Transfer::Moved(4)));
        assert_eq!(buf.unread(), &[7u8; 10]);
    }

    #[test]
    fn input_reports_eof_of_an_empty_source() {
        let mut src: &[u8] = &[];
        let mut buf = InputBuffer::default();
        assert_eq!(buf.fill_from(&mut src, 10).ok(), Some(Transfer::Eof));
    }

    #[test]
    fn output_space_is_reused_without_leaking_old_bytes_into_pushes() {
        let mut out = OutputBuffer::default();
        out.push(b"first");
        let mut sink = Vec::new();
        let _ = out.write_to(&mut sink);
        out.push(b"ab");
        out.push_zeroes(2);
        let _ = out.write_to(&mut sink);
        assert_eq!(sink, b"firstab\0\0");
    }

    #[test]
    fn output_truncate_rolls_back_to_a_mark() {
        let mut out = OutputBuffer::default();
        out.push(b"abc");
        let mark = out.mark();
        out.extend_for_fill(5);
        out.truncate(mark);
        let mut sink = Vec::new();
        assert_eq!(out.write_to(&mut sink).ok(), Some(Transfer::Moved(3)));
        assert_eq!(sink, b"abc");
        assert_eq!(out.pending(), 0);
    }
}
