//! Per-connection byte buffers. The input side holds what the client sent
//! and we have not parsed yet, the output side what we owe the client and
//! have not sent yet. Both are bounded by their callers: input by the size of
//! the message being assembled, output by the client's high-water mark.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

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

/// Where queued output goes: a socket, which can also take bytes straight
/// from a file (sendfile), sparing the copy through our memory.
pub(crate) trait Sink: Write {
    /// Send up to `len` bytes of `fd` starting at `offset`; Ok(0) when the
    /// file has no more bytes there.
    fn send_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize>;

    /// Like `write`, telling the peer side that more data follows at once
    /// (a reply header before its file data), so both can share packets.
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// Bytes queued to go out after `data[..at]` that are not in `data`.
struct FileSpan {
    at: usize,
    src: SpanSource,
    len: usize,
    /// The export offset of the span's next byte and the mapping generation
    /// the file range was handed out under (see `refresh`).
    origin: SpanOrigin,
}

enum SpanSource {
    /// `len` bytes of this file from `offset`, read when sent.
    File { fd: OwnedFd, offset: u64 },
    /// A file range that went stale, read again into memory.
    Bytes { data: Vec<u8>, pos: usize },
}

/// Where a file span's bytes belong in the export, so that they can be read
/// again through the block layer if the file range may have been reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanOrigin {
    pub offset: u64,
    pub generation: u64,
}

/// A point in the queued output, for `truncate` and `patch`. Only valid
/// until the next `write_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Byte position in the byte queue.
    pub bytes: usize,
    spans: usize,
}

/// Queued output: bytes in `data[pos..end]`, with file spans interleaved.
/// `data` beyond `end` is initialised but stale; it is reused for the next
/// bytes without being zeroed again.
#[derive(Default)]
pub(crate) struct OutputBuffer {
    data: Vec<u8>,
    pos: usize,
    end: usize,
    spans: VecDeque<FileSpan>,
    span_bytes: usize,
}

impl OutputBuffer {
    pub(crate) fn pending(&self) -> usize {
        self.end - self.pos + self.span_bytes
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            bytes: self.end,
            spans: self.spans.len(),
        }
    }

    /// Drop everything queued after `mark`.
    pub(crate) fn truncate(&mut self, mark: Mark) {
        self.end = self.end.min(mark.bytes.max(self.pos));
        while self.spans.len() > mark.spans {
            if let Some(s) = self.spans.pop_back() {
                self.span_bytes -= s.len;
            }
        }
    }

    /// Drop everything not yet sent.
    pub(crate) fn clear(&mut self) {
        self.truncate(Mark { bytes: 0, spans: 0 });
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

    /// Append `len` bytes of the file `fd` from `offset`, read when sent;
    /// `origin` says where they belong (see `refresh`).
    pub(crate) fn push_file(&mut self, fd: OwnedFd, offset: u64, len: usize, origin: SpanOrigin) {
        if len > 0 {
            self.spans.push_back(FileSpan {
                at: self.end,
                src: SpanSource::File { fd, offset },
                len,
                origin,
            });
            self.span_bytes += len;
        }
    }

    /// Whether `refresh` has work to do.
    pub(crate) fn has_stale(&self, generation: u64) -> bool {
        self.spans
            .iter()
            .any(|s| s.origin.generation != generation && matches!(s.src, SpanSource::File { .. }))
    }

    /// Before sending: file spans handed out under another mapping
    /// generation than `generation` may point at storage that was freed
    /// and reused since; replace their unsent bytes with what `read` gives
    /// for their export offsets now. On error nothing more may be sent of
    /// this reply (its header promised data).
    pub(crate) fn refresh<E>(
        &mut self,
        generation: u64,
        mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for s in self.spans.iter_mut() {
            if s.origin.generation == generation || matches!(s.src, SpanSource::Bytes { .. }) {
                continue;
            }
            let mut data = vec![0u8; s.len];
            read(s.origin.offset, &mut data)?;
            s.src = SpanSource::Bytes { data, pos: 0 };
            s.origin.generation = generation;
        }
        Ok(())
    }

    /// Drop every file span and what follows it: for a connection going
    /// away, which cannot check its spans any more.
    pub(crate) fn cut_at_first_span(&mut self) {
        if let Some(at) = self.spans.front().map(|s| s.at) {
            self.truncate(Mark {
                bytes: at,
                spans: 0,
            });
        }
    }

    /// Overwrite already queued bytes at byte position `at` (from a mark).
    pub(crate) fn patch(&mut self, at: usize, bytes: &[u8]) {
        if at >= self.pos && at + bytes.len() <= self.end {
            self.data[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }

    /// One write() (or sendfile()) of queued output.
    pub(crate) fn write_to(&mut self, w: &mut impl Sink) -> io::Result<Transfer> {
        if self.pending() == 0 {
            return Ok(Transfer::Idle);
        }
        loop {
            let (res, from_file) = match self.spans.front() {
                Some(s) if s.at == self.pos => match &s.src {
                    SpanSource::File { fd, offset } => {
                        (w.send_file(fd.as_fd(), *offset, s.len), true)
                    }
                    SpanSource::Bytes { data, pos } => (w.write(&data[*pos..*pos + s.len]), true),
                },
                Some(s) => (w.write_more(&self.data[self.pos..s.at]), false),
                None => (w.write(&self.data[self.pos..self.end]), false),
            };
            match res {
                // A file that ends early cannot complete the promised reply.
                Ok(0) if from_file => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "export file shrank",
                    ))
                }
                Ok(0) => return Ok(Transfer::Eof),
                Ok(n) => {
                    if from_file {
                        self.advance_span(n);
                    } else {
                        self.pos += n;
                    }
                    self.settle();
                    return Ok(Transfer::Moved(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Transfer::WouldBlock),
                Err(e) => return Err(e),
            }
        }
    }

    fn advance_span(&mut self, n: usize) {
        if let Some(s) = self.spans.front_mut() {
            let n = n.min(s.len);
            match &mut s.src {
                SpanSource::File { offset, .. } => *offset += n as u64,
                SpanSource::Bytes { pos, .. } => *pos += n,
            }
            s.origin.offset += n as u64;
            s.len -= n;
            self.span_bytes -= n;
            if s.len == 0 {
                self.spans.pop_front();
            }
        }
    }

    /// Reclaim sent space. Marks are only valid until here, so moving data
    /// is safe.
    fn settle(&mut self) {
        if self.pos == self.end {
            for s in self.spans.iter_mut() {
                s.at = 0;
            }
            self.pos = 0;
            self.end = 0;
            if self.data.len() > KEEP_OUTPUT && self.spans.is_empty() {
                self.data = Vec::new();
            }
        } else if self.pos > 64 * 1024 && self.pos > self.end / 2 {
            self.data.copy_within(self.pos..self.end, 0);
            for s in self.spans.iter_mut() {
                s.at -= self.pos;
            }
            self.end -= self.pos;
            self.pos = 0;
        }
    }
}

/// Test sinks: bytes collect in a Vec, file spans are read with pread.
#[cfg(test)]
impl Sink for Vec<u8> {
    fn send_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::File::from(fd.try_clone_to_owned()?);
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, offset)?;
        self.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: SpanOrigin = SpanOrigin {
        offset: 0,
        generation: 0,
    };

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
    fn file_spans_go_out_between_the_bytes_around_them() {
        let path = std::env::temp_dir().join(format!("nbd-iobuf-span-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").expect("write file");
        let file = std::fs::File::open(&path).expect("open file");
        let _ = std::fs::remove_file(&path);
        let mut out = OutputBuffer::default();
        out.push(b"<");
        out.push_file(OwnedFd::from(file), 2, 5, ORIGIN);
        out.push(b">");
        let mut sink = Vec::new();
        while let Ok(Transfer::Moved(_)) = out.write_to(&mut sink) {}
        assert_eq!(sink, b"<23456>");
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn truncate_drops_file_spans_after_the_mark() {
        let file = std::fs::File::open("/dev/zero").expect("open");
        let mut out = OutputBuffer::default();
        out.push(b"a");
        let mark = out.mark();
        out.push_file(OwnedFd::from(file), 0, 100, ORIGIN);
        out.push(b"b");
        out.truncate(mark);
        assert_eq!(out.pending(), 1);
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

#[cfg(test)]
mod span_tests {
    use super::*;

    /// Takes at most `max` bytes per call, as a full socket does.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink for Trickle {
        fn send_file(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<usize> {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::from(fd.try_clone_to_owned()?);
            let mut buf = vec![0u8; len.min(self.max)];
            let n = file.read_at(&mut buf, offset)?;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    fn digits_file() -> OwnedFd {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("nbd-span-{}-{n}", std::process::id()));
        std::fs::write(&path, b"0123456789").expect("write file");
        let file = std::fs::File::open(&path).expect("open file");
        let _ = std::fs::remove_file(&path);
        OwnedFd::from(file)
    }

    #[test]
    fn a_partly_sent_stale_span_is_read_again_from_where_it_stopped() {
        let mut out = OutputBuffer::default();
        let origin = SpanOrigin {
            offset: 1000,
            generation: 4,
        };
        out.push_file(digits_file(), 2, 6, origin);
        let mut sink = Trickle {
            got: Vec::new(),
            max: 4,
        };
        assert_eq!(out.write_to(&mut sink).ok(), Some(Transfer::Moved(4)));
        assert!(!out.has_stale(4));
        assert!(out.has_stale(5));

        let mut asked = Vec::new();
        let r: Result<(), ()> = out.refresh(5, |off, buf| {
            asked.push((off, buf.len()));
            buf.fill(b'x');
            Ok(())
        });
        while let Ok(Transfer::Moved(_)) = out.write_to(&mut sink) {}

        assert_eq!(r, Ok(()));
        assert_eq!(asked, vec![(1004, 2)]);
        assert_eq!(sink.got, b"2345xx");
        assert!(!out.has_stale(6), "bytes in memory never go stale");
    }

    #[test]
    fn a_failed_refresh_is_reported_and_sends_nothing_stale() {
        let mut out = OutputBuffer::default();
        let origin = SpanOrigin {
            offset: 0,
            generation: 0,
        };
        out.push(b"hdr");
        out.push_file(digits_file(), 0, 10, origin);

        let r = out.refresh(1, |_, _| Err(libc::EIO));

        assert_eq!(r, Err(libc::EIO));
        assert!(out.has_stale(1), "the span was not replaced");
    }

    #[test]
    fn file_spans_resume_across_partial_sends_in_order() {
        let mut out = OutputBuffer::default();
        let origin = SpanOrigin {
            offset: 0,
            generation: 0,
        };
        out.push(b"<");
        out.push_file(digits_file(), 0, 10, origin);
        out.push(b"|");
        out.push_file(digits_file(), 5, 5, origin);
        out.push(b">");
        let mut sink = Trickle {
            got: Vec::new(),
            max: 3,
        };
        let mut calls = 0;
        while let Ok(Transfer::Moved(_)) = out.write_to(&mut sink) {
            calls += 1;
        }
        assert_eq!(sink.got, b"<0123456789|56789>");
        assert!(calls > 5);
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn a_connection_going_away_keeps_only_the_bytes_before_its_first_span() {
        let mut out = OutputBuffer::default();
        out.push(b"ab");
        out.push_file(
            digits_file(),
            0,
            10,
            SpanOrigin {
                offset: 0,
                generation: 0,
            },
        );
        out.push(b"cd");
        out.cut_at_first_span();
        assert_eq!(out.pending(), 2);
    }
}
