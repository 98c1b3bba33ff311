//! The transmission phase of one connection: checking each request against
//! the negotiated export, running it on the backend, and queueing its reply.
//! Reads are streamed by `ReadJob` one bounded piece at a time.

use std::os::fd::OwnedFd;

use super::commands::{self, Request};
use super::error::NbdIoError;
use super::export::{with_backend, ExportResolver};
use super::iobuf::{Mark, OutputBuffer, SpanOrigin};
use super::options::Selected;
use super::proto;
use crate::node::MappedRead;

/// Bytes of a read produced per step: large enough to keep syscalls few,
/// small enough that one step stays short and memory stays bounded.
pub(crate) const READ_PIECE: u64 = 2 * 1024 * 1024;

/// Most extents sent in one NBD_REPLY_TYPE_BLOCK_STATUS chunk.
const MAX_EXTENTS: usize = 64 * 1024;

/// A request refused or failed: wire error value and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub error: u32,
    pub msg: String,
}

fn fail(error: u32, msg: impl Into<String>) -> Failure {
    Failure {
        error,
        msg: msg.into(),
    }
}

fn io_failure(what: &str, e: NbdIoError) -> Failure {
    fail(e.wire_value(), format!("{what} failed: {e}"))
}

/// The backend is gone (the block device was removed under the export):
/// fail the request with ESHUTDOWN, after which the connection ends.
fn gone() -> Failure {
    fail(proto::ESHUTDOWN, "export backend is gone")
}

pub(crate) struct Session {
    pub sel: Selected,
}

impl Session {
    /// Check flags, permissions and range before anything touches the backend.
    pub(crate) fn validate(&self, r: &Request) -> Result<(), Failure> {
        let s = &self.sel;
        let allowed = proto::CMD_FLAG_FUA
            | match r.typ {
                proto::CMD_READ if s.structured => proto::CMD_FLAG_DF,
                proto::CMD_WRITE_ZEROES => proto::CMD_FLAG_NO_HOLE,
                proto::CMD_BLOCK_STATUS => proto::CMD_FLAG_REQ_ONE,
                _ => 0,
            };
        if r.flags & !allowed != 0 {
            return Err(fail(
                proto::EINVAL,
                format!("unsupported flags 0x{:x}", r.flags & !allowed),
            ));
        }
        let writes = matches!(
            r.typ,
            proto::CMD_WRITE | proto::CMD_TRIM | proto::CMD_WRITE_ZEROES
        );
        match r.typ {
            proto::CMD_READ | proto::CMD_WRITE if r.len > proto::MAX_PAYLOAD => {
                let error = if r.typ == proto::CMD_READ && s.structured {
                    proto::EOVERFLOW
                } else {
                    proto::EINVAL
                };
                return Err(fail(
                    error,
                    format!("request length {} exceeds {}", r.len, proto::MAX_PAYLOAD),
                ));
            }
            proto::CMD_READ
            | proto::CMD_WRITE
            | proto::CMD_TRIM
            | proto::CMD_CACHE
            | proto::CMD_WRITE_ZEROES
            | proto::CMD_BLOCK_STATUS
            | proto::CMD_FLUSH => {}
            _ => return Err(fail(proto::EINVAL, format!("unknown command {}", r.typ))),
        }
        if writes && !s.writable {
            return Err(fail(proto::EPERM, "export is read-only"));
        }
        if r.typ == proto::CMD_BLOCK_STATUS && s.meta_context.is_none() {
            return Err(fail(proto::EINVAL, "no metadata context negotiated"));
        }
        // There is no extent of length zero to describe.
        if r.typ == proto::CMD_BLOCK_STATUS && r.len == 0 {
            return Err(fail(proto::EINVAL, "block status of zero bytes"));
        }
        if r.typ != proto::CMD_FLUSH && (r.offset > s.size || u64::from(r.len) > s.size - r.offset)
        {
            let error = if matches!(r.typ, proto::CMD_WRITE | proto::CMD_WRITE_ZEROES) {
                proto::ENOSPC
            } else {
                proto::EINVAL
            };
            return Err(fail(
                error,
                format!(
                    "operation past EOF; offset {} length {} size {}",
                    r.offset, r.len, s.size
                ),
            ));
        }
        Ok(())
    }

    /// Queue the error reply for a request.
    pub(crate) fn reply_failure(&self, out: &mut OutputBuffer, cookie: u64, f: &Failure) {
        if self.sel.structured {
            commands::error_chunk(out, cookie, f.error, &f.msg);
        } else {
            commands::simple_reply(out, f.error, cookie);
        }
    }

    fn reply_ok(&self, out: &mut OutputBuffer, cookie: u64) {
        commands::simple_reply(out, 0, cookie);
    }

    /// Run a validated request other than READ and DISC (WRITE with its
    /// payload). Returns false when the connection must end afterwards.
    pub(crate) fn execute(
        &self,
        r: &Request,
        payload: &[u8],
        resolver: &mut dyn ExportResolver,
        out: &mut OutputBuffer,
    ) -> bool {
        let fua = r.flags & proto::CMD_FLAG_FUA != 0;
        let (off, len) = (r.offset, u64::from(r.len));
        if r.typ == proto::CMD_BLOCK_STATUS {
            return self.block_status(r, resolver, out);
        }
        // An empty write, trim or zeroing changes nothing; the backend
        // need not handle that case.
        if len == 0 && r.typ != proto::CMD_FLUSH {
            self.reply_ok(out, r.cookie);
            return true;
        }
        let result = with_backend(resolver, &self.sel.backend, |b| -> Result<(), Failure> {
            match r.typ {
                proto::CMD_WRITE => b
                    .write(off, payload, fua)
                    .map_err(|e| io_failure("write", e)),
                proto::CMD_FLUSH => b.flush().map_err(|e| io_failure("flush", e)),
                proto::CMD_TRIM => {
                    b.trim(off, len).map_err(|e| io_failure("trim", e))?;
                    if fua {
                        b.flush().map_err(|e| io_failure("flush", e))?;
                    }
                    Ok(())
                }
                proto::CMD_WRITE_ZEROES => {
                    let may_trim = r.flags & proto::CMD_FLAG_NO_HOLE == 0;
                    b.write_zeroes(off, len, may_trim, fua)
                        .map_err(|e| io_failure("write zeroes", e))
                }
                // CACHE is only a hint; it succeeds without effect.
                _ => Ok(()),
            }
        });
        match result {
            Some(Ok(())) => {
                self.reply_ok(out, r.cookie);
                true
            }
            Some(Err(f)) => {
                self.reply_failure(out, r.cookie, &f);
                true
            }
            None => {
                self.reply_failure(out, r.cookie, &gone());
                false
            }
        }
    }

    fn block_status(
        &self,
        r: &Request,
        resolver: &mut dyn ExportResolver,
        out: &mut OutputBuffer,
    ) -> bool {
        let (off, len) = (r.offset, u64::from(r.len));
        let req_one = r.flags & proto::CMD_FLAG_REQ_ONE != 0;
        let Some(result) = with_backend(resolver, &self.sel.backend, |b| b.block_status(off, len))
        else {
            self.reply_failure(out, r.cookie, &gone());
            return false;
        };
        let extents = match result {
            Ok(e) => e,
            Err(e) => {
                self.reply_failure(out, r.cookie, &io_failure("block status", e));
                return true;
            }
        };
        let max = if req_one { 1 } else { MAX_EXTENTS };
        let mut list = clip_extents(&extents, len, max);
        if list.is_empty() {
            // Status 0 is always truthful ("allocated, contents unknown");
            // len >= 1 was checked by validate().
            list.push((len as u32, 0));
        }
        let ctx = self
            .sel
            .meta_context
            .unwrap_or(super::options::BASE_ALLOCATION_ID);
        let payload_len = 4 + 8 * list.len() as u32;
        commands::chunk_header(
            out,
            proto::REPLY_FLAG_DONE,
            proto::REPLY_TYPE_BLOCK_STATUS,
            r.cookie,
            payload_len,
        );
        out.push(&ctx.to_be_bytes());
        for (l, flags) in list {
            out.push(&l.to_be_bytes());
            out.push(&flags.to_be_bytes());
        }
        true
    }
}

/// Backend extents cut to the requested length, empty ones dropped,
/// neighbours with equal flags merged, at most `max` of them.
fn clip_extents(extents: &[(u64, u32)], len: u64, max: usize) -> Vec<(u32, u32)> {
    let mut list: Vec<(u32, u32)> = Vec::new();
    let mut covered = 0u64;
    for &(l, flags) in extents {
        if covered >= len {
            break;
        }
        let l = l.min(len - covered);
        if l == 0 {
            continue;
        }
        let flags = flags & (proto::STATE_HOLE | proto::STATE_ZERO);
        covered += l;
        // len <= u32::MAX, so every clipped length and sum fits.
        let full = list.len() == max;
        match list.last_mut() {
            Some(last) if last.1 == flags => last.0 += l as u32,
            _ if full => break,
            _ => list.push((l as u32, flags)),
        }
    }
    list
}

/// How a READ reply is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// Simple reply: header, then the data.
    Simple,
    /// Structured, one data chunk (NBD_CMD_FLAG_DF).
    OneChunk,
    /// Structured, data and hole chunks piece by piece.
    Sparse,
}

/// A READ being answered over several steps.
pub(crate) struct ReadJob {
    cookie: u64,
    offset: u64,
    remaining: u64,
    /// Data bytes queued so far; 0 means the reply has not started.
    produced: u64,
    mode: ReadMode,
    /// OneChunk: the data chunk header already carries the DONE flag.
    header_done: bool,
}

/// Result of one read step.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadStep {
    More,
    Finished,
    /// The reply cannot be completed; close the connection.
    Fatal,
}

impl ReadJob {
    pub(crate) fn new(session: &Session, r: &Request) -> Self {
        let mode = if !session.sel.structured {
            ReadMode::Simple
        } else if r.flags & proto::CMD_FLAG_DF != 0 {
            ReadMode::OneChunk
        } else {
            ReadMode::Sparse
        };
        ReadJob {
            cookie: r.cookie,
            offset: r.offset,
            remaining: u64::from(r.len),
            produced: 0,
            mode,
            header_done: false,
        }
    }

    /// Queue the next piece of the reply (at most READ_PIECE data bytes).
    pub(crate) fn step(
        &mut self,
        session: &Session,
        resolver: &mut dyn ExportResolver,
        out: &mut OutputBuffer,
    ) -> ReadStep {
        let mark = out.mark();
        let first = self.produced == 0;
        let cookie = self.cookie;
        if self.remaining == 0 {
            // Zero-length read: a header alone, or an empty structured reply.
            match self.mode {
                ReadMode::Simple => commands::simple_reply(out, 0, cookie),
                _ => commands::done_chunk(out, cookie),
            }
            return ReadStep::Finished;
        }
        if first {
            match self.mode {
                ReadMode::Simple => commands::simple_reply(out, 0, cookie),
                ReadMode::OneChunk => {
                    self.header_done = self.remaining <= READ_PIECE;
                    let flags = if self.header_done {
                        proto::REPLY_FLAG_DONE
                    } else {
                        0
                    };
                    // remaining <= MAX_PAYLOAD, checked by validate().
                    let len = (self.remaining + 8) as u32;
                    commands::chunk_header(out, flags, proto::REPLY_TYPE_OFFSET_DATA, cookie, len);
                    out.push(&self.offset.to_be_bytes());
                }
                ReadMode::Sparse => {}
            }
        }
        let piece = self.remaining.min(READ_PIECE);
        let last = piece == self.remaining;
        let (off, mode) = (self.offset, self.mode);
        let piece_mark = out.mark();
        let generation = resolver.mapping_generation();
        let result = with_backend(resolver, &session.sel.backend, |b| {
            let mut sink = PieceSink {
                out: &mut *out,
                sparse: mode == ReadMode::Sparse,
                cookie,
                pos: off,
                generation,
                data_chunk: None,
                hole: None,
                last_chunk: None,
            };
            b.read_to(off, piece, &mut sink)?;
            // Pieces that do not add up to the request would put the
            // stream out of step.
            if sink.pos != off + piece {
                return Err(NbdIoError::new(libc::EIO));
            }
            sink.finish(last);
            Ok(())
        });
        let failure = match result {
            Some(Ok(())) => {
                self.offset += piece;
                self.remaining -= piece;
                self.produced += piece;
                if !last {
                    return ReadStep::More;
                }
                if self.mode == ReadMode::OneChunk && !self.header_done {
                    commands::done_chunk(out, cookie);
                }
                return ReadStep::Finished;
            }
            Some(Err(e)) => io_failure("read", e),
            None => gone(),
        };
        let end = if failure.error == proto::ESHUTDOWN {
            ReadStep::Fatal
        } else {
            ReadStep::Finished
        };
        match self.mode {
            ReadMode::Simple | ReadMode::OneChunk if first => {
                out.truncate(mark);
                self.reply_error(out, &failure);
                end
            }
            // Part of the data went out under a success header: the spec
            // leaves only hanging up.
            ReadMode::Simple => {
                out.truncate(piece_mark);
                ReadStep::Fatal
            }
            ReadMode::OneChunk => {
                // The chunk header promised the full length: pad it out.
                out.truncate(piece_mark);
                out.push_zeroes(self.remaining as usize);
                commands::error_chunk(out, cookie, failure.error, &failure.msg);
                end
            }
            ReadMode::Sparse => {
                // Chunks of earlier pieces stand; this piece's go.
                out.truncate(piece_mark);
                commands::error_chunk(out, cookie, failure.error, &failure.msg);
                end
            }
        }
    }

    fn reply_error(&self, out: &mut OutputBuffer, f: &Failure) {
        match self.mode {
            ReadMode::Simple => commands::simple_reply(out, f.error, self.cookie),
            _ => commands::error_chunk(out, self.cookie, f.error, &f.msg),
        }
    }
}

/// Queues the pieces of one read step as they come from the backend: in a
/// simple reply or a single data chunk, one after the other (file ranges to
/// be sent with sendfile, zeroes as bytes); in a sparse structured reply as
/// data chunks (neighbouring data pieces share one) and hole chunks.
struct PieceSink<'a> {
    out: &'a mut OutputBuffer,
    sparse: bool,
    cookie: u64,
    /// Export offset of the next piece.
    pos: u64,
    /// Mapping generation the backend's file ranges are valid under.
    generation: u64,
    /// Sparse: the data chunk being filled (its header) and its data bytes.
    data_chunk: Option<(Mark, u64)>,
    /// Sparse: zeroes not yet sent as a hole chunk (offset, length).
    hole: Option<(u64, u64)>,
    /// Sparse: the last chunk queued, which gets the DONE flag at the end.
    last_chunk: Option<Mark>,
}

impl PieceSink<'_> {
    /// A data piece of `len` bytes begins at `self.pos`.
    fn begin_data(&mut self, len: u64) {
        if self.sparse {
            self.close_hole();
            let chunk = match self.data_chunk {
                Some(c) => c,
                None => {
                    let mark = self.out.mark();
                    // The length is patched in when the chunk closes.
                    commands::chunk_header(
                        self.out,
                        0,
                        proto::REPLY_TYPE_OFFSET_DATA,
                        self.cookie,
                        0,
                    );
                    self.out.push(&self.pos.to_be_bytes());
                    (mark, 0)
                }
            };
            self.data_chunk = Some((chunk.0, chunk.1 + len));
        }
        self.pos += len;
    }

    fn close_data(&mut self) {
        if let Some((mark, len)) = self.data_chunk.take() {
            // len <= READ_PIECE, so it fits the 32-bit field.
            commands::set_chunk_len(self.out, mark, len as u32 + 8);
            self.last_chunk = Some(mark);
        }
    }

    fn close_hole(&mut self) {
        if let Some((at, len)) = self.hole.take() {
            self.last_chunk = Some(self.out.mark());
            commands::hole_chunk(self.out, self.cookie, at, len as u32);
        }
    }

    /// All pieces are in; `last`: this step ends the reply.
    fn finish(&mut self, last: bool) {
        if !self.sparse {
            return;
        }
        self.close_data();
        self.close_hole();
        if let (true, Some(mark)) = (last, self.last_chunk) {
            commands::set_done(self.out, mark);
        }
    }
}

impl MappedRead for PieceSink<'_> {
    fn host(&mut self, fd: OwnedFd, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let origin = SpanOrigin {
            offset: self.pos,
            generation: self.generation,
        };
        self.begin_data(len);
        self.out.push_file(fd, offset, len as usize, origin);
    }

    fn zeroes(&mut self, len: u64) {
        if len == 0 {
            return;
        }
        if self.sparse {
            self.close_data();
            self.hole = match self.hole {
                Some((at, l)) => Some((at, l + len)),
                None => Some((self.pos, len)),
            };
            self.pos += len;
        } else {
            self.pos += len;
            self.out.push_zeroes(len as usize);
        }
    }

    fn buffer(&mut self, len: u64) -> &mut [u8] {
        self.begin_data(len);
        self.out.extend_for_fill(len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::export::NbdExportBackend;
    use crate::nbd::memory_backend::Memory;

    /// A memory export whose reads fail from `bad` on.
    struct FailingFrom {
        mem: Memory,
        bad: u64,
    }

    impl ExportResolver for FailingFrom {
        fn with_backend(&mut self, _: &str, f: &mut dyn FnMut(&mut dyn NbdExportBackend)) -> bool {
            f(self);
            true
        }
    }

    impl NbdExportBackend for FailingFrom {
        fn size(&self) -> u64 {
            self.mem.size()
        }
        fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), NbdIoError> {
            if offset + buf.len() as u64 > self.bad {
                return Err(NbdIoError::new(libc::EIO));
            }
            self.mem.read(offset, buf)
        }
        fn write(&mut self, o: u64, d: &[u8], fua: bool) -> Result<(), NbdIoError> {
            self.mem.write(o, d, fua)
        }
        fn write_zeroes(&mut self, o: u64, l: u64, t: bool, f: bool) -> Result<(), NbdIoError> {
            self.mem.write_zeroes(o, l, t, f)
        }
        fn trim(&mut self, o: u64, l: u64) -> Result<(), NbdIoError> {
            self.mem.trim(o, l)
        }
        fn flush(&mut self) -> Result<(), NbdIoError> {
            Ok(())
        }
        fn block_status(&mut self, o: u64, l: u64) -> Result<Vec<(u64, u32)>, NbdIoError> {
            self.mem.block_status(o, l)
        }
    }

    fn session(structured: bool, size: u64) -> Session {
        Session {
            sel: Selected {
                export: "e".into(),
                backend: "e".into(),
                size,
                writable: true,
                flags: 0,
                structured,
                meta_context: None,
            },
        }
    }

    fn read_req(flags: u16, offset: u64, len: u32) -> Request {
        Request {
            flags,
            typ: proto::CMD_READ,
            cookie: 9,
            offset,
            len,
        }
    }

    /// Run a read to its end; returns the last step and the wire bytes.
    fn run_read(s: &Session, r: &Request, backend: &mut FailingFrom) -> (ReadStep, Vec<u8>) {
        let mut job = ReadJob::new(s, r);
        let mut out = OutputBuffer::default();
        let mut step = job.step(s, backend, &mut out);
        while step == ReadStep::More {
            step = job.step(s, backend, &mut out);
        }
        let mut wire = Vec::new();
        while let Ok(crate::nbd::iobuf::Transfer::Moved(_)) = out.write_to(&mut wire) {}
        (step, wire)
    }

    fn backend(bad: u64) -> FailingFrom {
        FailingFrom {
            mem: Memory(vec![7u8; 8 << 20]),
            bad,
        }
    }

    #[test]
    fn simple_read_failing_at_once_gets_an_error_reply() {
        let (step, wire) = run_read(
            &session(false, 8 << 20),
            &read_req(0, 0, 4096),
            &mut backend(0),
        );

        assert_eq!(step, ReadStep::Finished);
        assert_eq!(wire.len(), 16);
        assert_eq!(&wire[4..8], &proto::EIO.to_be_bytes());
    }

    #[test]
    fn simple_read_failing_after_the_first_piece_hangs_up() {
        let r = read_req(0, 0, 3 * READ_PIECE as u32);

        let (step, wire) = run_read(&session(false, 8 << 20), &r, &mut backend(READ_PIECE));

        assert_eq!(step, ReadStep::Fatal);
        assert_eq!(wire.len(), 16 + READ_PIECE as usize);
    }

    #[test]
    fn structured_read_failing_midway_ends_with_an_error_chunk() {
        let r = read_req(0, 0, 3 * READ_PIECE as u32);

        let (step, wire) = run_read(&session(true, 8 << 20), &r, &mut backend(READ_PIECE));

        assert_eq!(step, ReadStep::Finished);
        let data_chunk = commands::CHUNK_HEADER_LEN + 8 + READ_PIECE as usize;
        let err = &wire[data_chunk..];
        assert_eq!(&err[4..8], &[0, 1, 0x80, 1], "final NBD_REPLY_TYPE_ERROR");
        assert_eq!(&err[20..24], &proto::EIO.to_be_bytes());
    }

    #[test]
    fn do_not_fragment_read_failing_midway_pads_its_one_chunk() {
        let r = read_req(proto::CMD_FLAG_DF, 0, 3 * READ_PIECE as u32);

        let (step, wire) = run_read(&session(true, 8 << 20), &r, &mut backend(READ_PIECE));

        assert_eq!(step, ReadStep::Finished);
        let chunk = commands::CHUNK_HEADER_LEN + 8 + 3 * READ_PIECE as usize;
        assert_eq!(&wire[16..20], &((3 * READ_PIECE + 8) as u32).to_be_bytes());
        assert_eq!(wire[chunk - 1], 0, "padding");
        assert_eq!(&wire[chunk + 6..chunk + 8], &[0x80, 1]);
    }

    #[test]
    fn structured_read_of_zeroes_is_one_final_hole_chunk() {
        let mut b = FailingFrom {
            mem: Memory(vec![0u8; 1 << 20]),
            bad: u64::MAX,
        };

        let (_, wire) = run_read(&session(true, 1 << 20), &read_req(0, 0, 65536), &mut b);

        assert_eq!(wire.len(), commands::CHUNK_HEADER_LEN + 12);
        assert_eq!(&wire[4..8], &[0, 1, 0, 2], "DONE, OFFSET_HOLE");
        assert_eq!(&wire[28..32], &65536u32.to_be_bytes());
    }

    /// Hands out a fixed map for any read: 64 KiB of a host file, 64 KiB
    /// read into memory (7s), 128 KiB of zeroes, 64 KiB of the file again.
    struct Mapped {
        file: std::fs::File,
    }

    const K64: u64 = 64 * 1024;

    impl ExportResolver for Mapped {
        fn with_backend(&mut self, _: &str, f: &mut dyn FnMut(&mut dyn NbdExportBackend)) -> bool {
            f(self);
            true
        }
    }

    impl NbdExportBackend for Mapped {
        fn size(&self) -> u64 {
            8 << 20
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), NbdIoError> {
            Err(NbdIoError::new(libc::EIO))
        }
        fn read_to(&mut self, _: u64, _: u64, sink: &mut dyn MappedRead) -> Result<(), NbdIoError> {
            use std::os::fd::AsFd;
            let dup = || {
                self.file
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| NbdIoError::from_io(&e))
            };
            sink.host(dup()?, 0, K64);
            sink.buffer(K64).fill(7);
            sink.zeroes(K64);
            sink.zeroes(K64);
            sink.host(dup()?, K64, K64);
            Ok(())
        }
        fn write(&mut self, _: u64, _: &[u8], _: bool) -> Result<(), NbdIoError> {
            Ok(())
        }
        fn write_zeroes(&mut self, _: u64, _: u64, _: bool, _: bool) -> Result<(), NbdIoError> {
            Ok(())
        }
        fn trim(&mut self, _: u64, _: u64) -> Result<(), NbdIoError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), NbdIoError> {
            Ok(())
        }
        fn block_status(&mut self, _: u64, l: u64) -> Result<Vec<(u64, u32)>, NbdIoError> {
            Ok(vec![(l, 0)])
        }
    }

    fn mapped() -> Mapped {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("nbd-mapped-{}-{n}", std::process::id()));
        let data: Vec<u8> = (0..2 * K64).map(|i| (i / 4096) as u8 + 1).collect();
        std::fs::write(&path, &data).expect("write file");
        let file = std::fs::File::open(&path).expect("open file");
        let _ = std::fs::remove_file(&path);
        Mapped { file }
    }

    fn drain(out: &mut OutputBuffer) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Ok(crate::nbd::iobuf::Transfer::Moved(_)) = out.write_to(&mut wire) {}
        wire
    }

    fn expected_data() -> Vec<u8> {
        let mut v: Vec<u8> = (0..K64).map(|i| (i / 4096) as u8 + 1).collect();
        v.extend(std::iter::repeat_n(7, K64 as usize));
        v.extend(std::iter::repeat_n(0, 2 * K64 as usize));
        v.extend((K64..2 * K64).map(|i| (i / 4096) as u8 + 1));
        v
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn mapped_pieces_make_data_and_hole_chunks_of_a_sparse_reply() {
        let s = session(true, 8 << 20);
        let mut job = ReadJob::new(&s, &read_req(0, 4096, 5 * K64 as u32));
        let mut out = OutputBuffer::default();

        assert_eq!(job.step(&s, &mut mapped(), &mut out), ReadStep::Finished);
        let wire = drain(&mut out);

        let want = expected_data();
        let h = commands::CHUNK_HEADER_LEN;
        // File and memory pieces share one data chunk.
        assert_eq!(&wire[4..8], &[0, 0, 0, 1], "OFFSET_DATA, not final");
        assert_eq!(u32_at(&wire, 16), 2 * K64 as u32 + 8);
        assert_eq!(&wire[h..h + 8], &4096u64.to_be_bytes());
        assert_eq!(
            &wire[h + 8..h + 8 + 2 * K64 as usize],
            &want[..2 * K64 as usize]
        );
        let hole = &wire[h + 8 + 2 * K64 as usize..];
        assert_eq!(&hole[4..8], &[0, 0, 0, 2], "OFFSET_HOLE, not final");
        assert_eq!(&hole[h..h + 8], &(4096 + 2 * K64).to_be_bytes());
        assert_eq!(u32_at(hole, h + 8), 2 * K64 as u32);
        let last = &hole[h + 12..];
        assert_eq!(&last[4..8], &[0, 1, 0, 1], "OFFSET_DATA, final");
        assert_eq!(&last[h..h + 8], &(4096 + 4 * K64).to_be_bytes());
        assert_eq!(&last[h + 8..], &want[4 * K64 as usize..]);
    }

    #[test]
    fn mapped_pieces_fill_a_simple_reply_in_order() {
        let s = session(false, 8 << 20);
        let mut job = ReadJob::new(&s, &read_req(0, 0, 5 * K64 as u32));
        let mut out = OutputBuffer::default();

        assert_eq!(job.step(&s, &mut mapped(), &mut out), ReadStep::Finished);
        let wire = drain(&mut out);

        assert_eq!(&wire[4..8], &[0, 0, 0, 0], "no error");
        assert_eq!(&wire[16..], &expected_data()[..]);
    }

    #[test]
    fn mapped_pieces_fill_one_chunk_when_fragmenting_is_refused() {
        let s = session(true, 8 << 20);
        let mut job = ReadJob::new(&s, &read_req(proto::CMD_FLAG_DF, 0, 5 * K64 as u32));
        let mut out = OutputBuffer::default();

        assert_eq!(job.step(&s, &mut mapped(), &mut out), ReadStep::Finished);
        let wire = drain(&mut out);

        assert_eq!(&wire[4..8], &[0, 1, 0, 1], "one final OFFSET_DATA");
        assert_eq!(
            &wire[commands::CHUNK_HEADER_LEN + 8..],
            &expected_data()[..]
        );
    }

    #[test]
    fn a_map_shorter_than_the_request_fails_the_read_without_its_pieces() {
        let s = session(false, 8 << 20);
        let mut job = ReadJob::new(&s, &read_req(0, 0, 6 * K64 as u32));
        let mut out = OutputBuffer::default();

        assert_eq!(job.step(&s, &mut mapped(), &mut out), ReadStep::Finished);
        let wire = drain(&mut out);

        assert_eq!(wire.len(), 16, "an error reply alone");
        assert_eq!(&wire[4..8], &proto::EIO.to_be_bytes());
    }

    #[test]
    fn extents_are_clipped_merged_and_limited() {
        let e = [(100, 1), (0, 2), (50, 1), (200, 3), (1000, 0)];
        assert_eq!(clip_extents(&e, 300, 10), vec![(150, 1), (150, 3)]);
        assert_eq!(clip_extents(&e, 300, 1), vec![(150, 1)]);
        assert_eq!(clip_extents(&[], 300, 1), vec![]);
    }
}
