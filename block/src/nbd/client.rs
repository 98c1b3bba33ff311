//! One client connection as a state machine: handshake, option haggling,
//! then requests in order. `ready()` does a bounded amount of work and never
//! blocks; `interest()` says which socket events should wake it next.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use super::commands::{self, Request};
use super::export::{with_backend, ExportResolver, NbdExport, NbdTicket};
use super::handshake;
use super::iobuf::{InputBuffer, OutputBuffer, Transfer};
use super::options::{self, Negotiation, OptionOutcome};
use super::proto;
use super::server::ClientId;
use super::socket::Stream;
use super::transmission::{Failure, ReadJob, ReadStep, Session};

/// Queued output above which we stop taking new work until the client reads.
const HIGH_WATER: usize = 2 * 1024 * 1024;
/// Unparsed input we read ahead of the message being assembled, so that
/// pipelined small requests cost one read() for several.
const READ_AHEAD: usize = 64 * 1024;
/// Queued output that is sent without waiting for the client's other
/// received requests to be served first.
const SEND_AT: usize = 64 * 1024;
/// Steps (socket transfers or messages) per `ready()` call: the bound that
/// keeps one busy client from starving the main loop.
const STEPS_PER_CALL: usize = 64;

enum Phase {
    ClientFlags,
    OptionHeader,
    OptionData {
        opt: u32,
        len: usize,
    },
    /// Skip an option we will not hold, then answer it with `reply`.
    SkipOption {
        opt: u32,
        remaining: u64,
        reply: u32,
    },
    RequestHeader,
    WritePayload(Request),
    /// Skip the payload of a refused write, then send the failure.
    SkipPayload {
        req: Request,
        remaining: u64,
        failure: Failure,
    },
    Reading(ReadJob),
    /// A request the throttle group holds back (`ExportResolver::admit`
    /// said no) until `resume(seq)` grants it. Nothing after it is parsed.
    Throttled {
        req: Request,
        seq: u64,
        granted: bool,
    },
    /// Send what is queued, then close.
    Closing,
}

/// What the state machine needs next.
enum Advance {
    /// Made progress; call again.
    Progressed,
    /// Needs more input, holding at most this many unread bytes.
    NeedInput(usize),
    /// Nothing more until the output drains (Closing) or the throttle
    /// group grants the held request (Throttled).
    Stalled,
}

pub(crate) struct Client {
    id: ClientId,
    /// Number of the last request given to `admit`.
    seq: u64,
    stream: Stream,
    inbuf: InputBuffer,
    out: OutputBuffer,
    phase: Phase,
    neg: Negotiation,
    session: Option<Session>,
}

/// The events a client wants to be woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Client {
    pub(crate) fn new(id: ClientId, stream: Stream) -> Self {
        let mut out = OutputBuffer::default();
        out.push(&handshake::greeting());
        Client {
            id,
            seq: 0,
            stream,
            inbuf: InputBuffer::default(),
            out,
            phase: Phase::ClientFlags,
            neg: Negotiation::default(),
            session: None,
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.stream.fd()
    }

    /// Name of the export in use, once in transmission.
    pub(crate) fn export(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.sel.export.as_str())
    }

    pub(crate) fn interest(&self) -> Interest {
        let closing = matches!(self.phase, Phase::Closing);
        let starved = self.needs_input();
        Interest {
            readable: starved && self.out.pending() < HIGH_WATER,
            // Writable also stands for "has work without input": the socket
            // is nearly always writable, so the loop calls back at once.
            writable: self.out.pending() > 0 || closing || (!starved && !self.parked()),
        }
    }

    /// Waiting for the throttle group: no input or output can change that.
    fn parked(&self) -> bool {
        matches!(self.phase, Phase::Throttled { granted: false, .. })
    }

    /// The held request `seq` may go; false if no such request waits.
    pub(crate) fn resume(&mut self, seq: u64) -> bool {
        match &mut self.phase {
            Phase::Throttled {
                seq: held, granted, ..
            } if *held == seq && !*granted => {
                *granted = true;
                true
            }
            _ => false,
        }
    }

    /// Whether the current phase can only go on after more input arrives.
    /// Derived from the state itself, never cached, so that buffered but
    /// unparsed input can never be forgotten while the socket is quiet.
    fn needs_input(&self) -> bool {
        let have = self.inbuf.len();
        match &self.phase {
            Phase::ClientFlags => have < 4,
            Phase::OptionHeader => have < options::OPTION_HEADER_LEN,
            Phase::OptionData { len, .. } => have < *len,
            Phase::SkipOption { remaining, .. } | Phase::SkipPayload { remaining, .. } => {
                have == 0 && *remaining > 0
            }
            Phase::RequestHeader => have < commands::REQUEST_LEN,
            Phase::WritePayload(req) => have < req.len as usize,
            Phase::Reading(_) | Phase::Throttled { .. } | Phase::Closing => false,
        }
    }

    /// Do a bounded amount of work. Returns false when the connection is over.
    pub(crate) fn ready(
        &mut self,
        exports: &BTreeMap<String, NbdExport>,
        resolver: &mut dyn ExportResolver,
    ) -> bool {
        for _ in 0..STEPS_PER_CALL {
            if matches!(self.phase, Phase::Closing) && self.out.pending() == 0 {
                return false;
            }
            let mut progressed = false;
            let must_send = self.out.pending() >= SEND_AT;
            if self.out.pending() < HIGH_WATER {
                match self.advance(exports, resolver) {
                    Advance::Progressed => progressed = true,
                    Advance::Stalled => {}
                    Advance::NeedInput(limit) => {
                        // Replies go out before we wait on the client, which
                        // may be waiting on them (its window of requests in
                        // flight is full).
                        if self.out.pending() > 0 {
                            match self.send(resolver) {
                                Ok(Transfer::Moved(_)) => progressed = true,
                                Ok(Transfer::Idle) | Ok(Transfer::WouldBlock) => {}
                                Ok(Transfer::Eof) | Err(_) => return false,
                            }
                        }
                        match self.inbuf.fill_from(&mut self.stream, limit) {
                            Ok(Transfer::Moved(_)) => progressed = true,
                            Ok(Transfer::Idle) | Ok(Transfer::WouldBlock) => {}
                            // The client hung up; a reply it can no longer
                            // read is not worth waiting for.
                            Ok(Transfer::Eof) | Err(_) => return false,
                        }
                    }
                }
            }
            // Small replies wait while requests already received are
            // served, so that a pipelined batch is answered with one send
            // (and wakes the client once); large ones go at once.
            if must_send || !progressed {
                match self.send(resolver) {
                    Ok(Transfer::Moved(_)) => progressed = true,
                    Ok(Transfer::Idle) | Ok(Transfer::WouldBlock) => {}
                    Ok(Transfer::Eof) | Err(_) => return false,
                }
            }
            if !progressed {
                // Woken while parked with nothing to send: only a hang-up
                // or socket error does that (the fd wants no events), and
                // level-triggered polling would repeat it until the grant.
                if self.parked() && self.out.pending() == 0 && self.stream.peer_gone() {
                    return false;
                }
                break;
            }
        }
        true
    }

    /// End the connection from our side: answer nothing more, send what is
    /// queued if the socket takes it now, then shut the socket down.
    pub(crate) fn shut(mut self) -> OwnedFd {
        // File ranges can no longer be checked for staleness here.
        self.out.cut_at_first_span();
        while let Ok(Transfer::Moved(_)) = self.out.write_to(&mut self.stream) {}
        self.stream.shutdown();
        self.stream.into_fd()
    }

    /// One send of queued output. File ranges handed out by the backend
    /// under an older mapping generation (storage may have been freed and
    /// reused since) are read again through the backend first.
    fn send(&mut self, resolver: &mut dyn ExportResolver) -> io::Result<Transfer> {
        let generation = resolver.mapping_generation();
        if self.out.has_stale(generation) {
            let out = &mut self.out;
            let Some(s) = &self.session else {
                return Err(io::Error::other("stale output without a session"));
            };
            let r = with_backend(resolver, &s.sel.backend, |b| {
                out.refresh(generation, |off, buf| b.read_again(off, buf))
            });
            match r {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(io::Error::from_raw_os_error(e.errno)),
                None => return Err(io::Error::other("export backend is gone")),
            }
        }
        self.out.write_to(&mut self.stream)
    }

    /// Bytes `n` of unread input if available, else the input limit to wait
    /// with: the message plus read-ahead, so that a write payload and the
    /// request headers after it come in with one read.
    fn need(&self, n: usize) -> Option<Advance> {
        (self.inbuf.len() < n).then(|| Advance::NeedInput(n + READ_AHEAD))
    }

    fn advance(
        &mut self,
        exports: &BTreeMap<String, NbdExport>,
        resolver: &mut dyn ExportResolver,
    ) -> Advance {
        let phase = std::mem::replace(&mut self.phase, Phase::Closing);
        let (next, adv) = self.advance_phase(phase, exports, resolver);
        self.phase = next;
        adv
    }

    fn advance_phase(
        &mut self,
        phase: Phase,
        exports: &BTreeMap<String, NbdExport>,
        resolver: &mut dyn ExportResolver,
    ) -> (Phase, Advance) {
        match phase {
            Phase::Closing => (Phase::Closing, Advance::Stalled),
            Phase::ClientFlags => {
                if let Some(a) = self.need(4) {
                    return (phase, a);
                }
                let b = self.inbuf.unread();
                let raw = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                self.inbuf.consume(4);
                match handshake::parse_client_flags(raw) {
                    Some(f) => {
                        self.neg.no_zeroes = f.no_zeroes;
                        (Phase::OptionHeader, Advance::Progressed)
                    }
                    None => self.hang_up(),
                }
            }
            Phase::OptionHeader => {
                if let Some(a) = self.need(options::OPTION_HEADER_LEN) {
                    return (phase, a);
                }
                let Some((opt, len)) = options::parse_option_header(self.inbuf.unread()) else {
                    return self.hang_up();
                };
                self.inbuf.consume(options::OPTION_HEADER_LEN);
                let known = options::is_known(opt);
                if known && len as usize <= options::MAX_OPTION_DATA {
                    (
                        Phase::OptionData {
                            opt,
                            len: len as usize,
                        },
                        Advance::Progressed,
                    )
                } else if opt == proto::OPT_EXPORT_NAME {
                    // No error reply exists for this option.
                    self.hang_up()
                } else {
                    let reply = if known {
                        proto::REP_ERR_TOO_BIG
                    } else {
                        proto::REP_ERR_UNSUP
                    };
                    (
                        Phase::SkipOption {
                            opt,
                            remaining: u64::from(len),
                            reply,
                        },
                        Advance::Progressed,
                    )
                }
            }
            Phase::SkipOption {
                opt,
                remaining,
                reply,
            } => {
                let n = self.skip(remaining);
                if n < remaining {
                    let a = if n == 0 {
                        Advance::NeedInput(READ_AHEAD)
                    } else {
                        Advance::Progressed
                    };
                    return (
                        Phase::SkipOption {
                            opt,
                            remaining: remaining - n,
                            reply,
                        },
                        a,
                    );
                }
                let msg = if reply == proto::REP_ERR_TOO_BIG {
                    "option too long"
                } else {
                    "unsupported option"
                };
                options::reply_error(&mut self.out, opt, reply, msg);
                (Phase::OptionHeader, Advance::Progressed)
            }
            Phase::OptionData { opt, len } => {
                if let Some(a) = self.need(len) {
                    return (phase, a);
                }
                let data = &self.inbuf.unread()[..len];
                let outcome = options::handle_option(
                    opt,
                    data,
                    exports,
                    resolver,
                    &mut self.neg,
                    &mut self.out,
                );
                self.inbuf.consume(len);
                match outcome {
                    OptionOutcome::Continue => (Phase::OptionHeader, Advance::Progressed),
                    OptionOutcome::Transmission(sel) => {
                        self.session = Some(Session { sel });
                        (Phase::RequestHeader, Advance::Progressed)
                    }
                    OptionOutcome::Finish => (Phase::Closing, Advance::Progressed),
                    OptionOutcome::Drop => self.hang_up(),
                }
            }
            Phase::RequestHeader => {
                if let Some(a) = self.need(commands::REQUEST_LEN) {
                    return (phase, a);
                }
                let Some(req) = commands::parse_request(self.inbuf.unread()) else {
                    return self.hang_up();
                };
                self.inbuf.consume(commands::REQUEST_LEN);
                self.start_request(req, resolver)
            }
            Phase::WritePayload(req) => {
                let len = req.len as usize;
                if let Some(a) = self.need(len) {
                    return (phase, a);
                }
                let alive = match &self.session {
                    Some(s) => {
                        s.execute(&req, &self.inbuf.unread()[..len], resolver, &mut self.out)
                    }
                    None => false,
                };
                self.inbuf.consume(len);
                self.after_request(alive)
            }
            Phase::SkipPayload {
                req,
                remaining,
                failure,
            } => {
                let n = self.skip(remaining);
                if n < remaining {
                    let a = if n == 0 {
                        Advance::NeedInput(READ_AHEAD)
                    } else {
                        Advance::Progressed
                    };
                    return (
                        Phase::SkipPayload {
                            req,
                            remaining: remaining - n,
                            failure,
                        },
                        a,
                    );
                }
                if let Some(s) = &self.session {
                    s.reply_failure(&mut self.out, req.cookie, &failure);
                }
                (Phase::RequestHeader, Advance::Progressed)
            }
            Phase::Throttled { req, seq, granted } => {
                if granted {
                    self.dispatch(req, resolver)
                } else {
                    (Phase::Throttled { req, seq, granted }, Advance::Stalled)
                }
            }
            Phase::Reading(mut job) => {
                let Some(s) = &self.session else {
                    return self.hang_up();
                };
                match job.step(s, resolver, &mut self.out) {
                    ReadStep::More => (Phase::Reading(job), Advance::Progressed),
                    ReadStep::Finished => (Phase::RequestHeader, Advance::Progressed),
                    ReadStep::Fatal => (Phase::Closing, Advance::Progressed),
                }
            }
        }
    }

    fn start_request(
        &mut self,
        req: Request,
        resolver: &mut dyn ExportResolver,
    ) -> (Phase, Advance) {
        let Some(s) = &self.session else {
            return self.hang_up();
        };
        if req.typ == proto::CMD_DISC {
            // Everything before it is answered; nothing after it is read.
            return (Phase::Closing, Advance::Progressed);
        }
        if let Err(failure) = s.validate(&req) {
            if req.typ == proto::CMD_WRITE {
                // The payload follows the header whatever we think of it;
                // skip it (without holding it) to stay in step.
                return (
                    Phase::SkipPayload {
                        req,
                        remaining: u64::from(req.len),
                        failure,
                    },
                    Advance::Progressed,
                );
            }
            s.reply_failure(&mut self.out, req.cookie, &failure);
            return (Phase::RequestHeader, Advance::Progressed);
        }
        // The requests QEMU's block backends throttle: data in or out,
        // zeroes counting as written bytes; discard and flush are not.
        let direction = match req.typ {
            proto::CMD_READ => Some(false),
            proto::CMD_WRITE | proto::CMD_WRITE_ZEROES => Some(true),
            _ => None,
        };
        if let Some(is_write) = direction {
            self.seq += 1;
            let ticket = NbdTicket {
                client: self.id,
                seq: self.seq,
            };
            if !resolver.admit(&s.sel.backend, ticket, is_write, u64::from(req.len)) {
                let held = Phase::Throttled {
                    req,
                    seq: self.seq,
                    granted: false,
                };
                return (held, Advance::Stalled);
            }
        }
        self.dispatch(req, resolver)
    }

    /// Run a validated, admitted request (or begin it: a write's payload
    /// and a read's data follow in later phases).
    fn dispatch(&mut self, req: Request, resolver: &mut dyn ExportResolver) -> (Phase, Advance) {
        let Some(s) = &self.session else {
            return self.hang_up();
        };
        match req.typ {
            proto::CMD_WRITE => (Phase::WritePayload(req), Advance::Progressed),
            proto::CMD_READ => (Phase::Reading(ReadJob::new(s, &req)), Advance::Progressed),
            _ => {
                let alive = s.execute(&req, &[], resolver, &mut self.out);
                self.after_request(alive)
            }
        }
    }

    fn after_request(&mut self, alive: bool) -> (Phase, Advance) {
        let next = if alive {
            Phase::RequestHeader
        } else {
            Phase::Closing
        };
        (next, Advance::Progressed)
    }

    /// Drop the connection now, discarding queued output too.
    fn hang_up(&mut self) -> (Phase, Advance) {
        self.out.clear();
        (Phase::Closing, Advance::Progressed)
    }

    /// Discard up to `n` buffered input bytes; returns how many.
    fn skip(&mut self, n: u64) -> u64 {
        let take = (self.inbuf.len() as u64).min(n);
        self.inbuf.consume(take as usize);
        take
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::nbd::export::NbdExportBackend;
    use crate::nbd::memory_backend::Memory;

    fn exports() -> BTreeMap<String, NbdExport> {
        let e = NbdExport {
            name: "m".into(),
            backend: "m".into(),
            description: String::new(),
            writable: true,
        };
        BTreeMap::from([("m".to_string(), e)])
    }

    /// A client's handshake up to NBD_OPT_EXPORT_NAME "m": what the
    /// transmission-phase tests send before their requests.
    fn select_export_m() -> Vec<u8> {
        let mut msg = 2u32.to_be_bytes().to_vec();
        msg.extend_from_slice(b"IHAVEOPT");
        msg.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
        msg.extend_from_slice(&1u32.to_be_bytes());
        msg.push(b'm');
        msg
    }

    fn flush_request(cookie: u64) -> Vec<u8> {
        let mut r = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&proto::CMD_FLUSH.to_be_bytes());
        r.extend_from_slice(&cookie.to_be_bytes());
        r.extend_from_slice(&[0u8; 12]);
        r
    }

    #[test]
    fn buffered_requests_keep_the_client_asking_to_be_called() {
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut client = Client::new(1, Stream::Unix(ours));
        let mut mem = Memory(vec![0; 4096]);
        let mut msg = select_export_m();
        for cookie in 0..1000 {
            msg.extend(flush_request(cookie));
        }
        peer.write_all(&msg).expect("send");

        // Call only when the reported interest says so, as a poller would,
        // and drain replies as they come.
        let mut replies = Vec::new();
        let mut calls = 0;
        let expected = handshake::GREETING_LEN + 10 + 1000 * 16;
        peer.set_nonblocking(true).expect("nonblocking");
        while replies.len() < expected && calls < 10_000 {
            let int = client.interest();
            assert!(int.writable || int.readable, "client asks for nothing");
            if client.inbuf.len() > 0 {
                assert!(int.writable, "unparsed input but not asking to be called");
            }
            assert!(client.ready(&exports(), &mut mem));
            let mut buf = [0u8; 65536];
            while let Ok(n) = peer.read(&mut buf) {
                if n == 0 {
                    break;
                }
                replies.extend_from_slice(&buf[..n]);
            }
            calls += 1;
        }

        assert_eq!(replies.len(), expected);
        let last = &replies[expected - 16..];
        assert_eq!(&last[8..16], &999u64.to_be_bytes());
    }

    /// A memory export behind a throttle that holds every request while
    /// `shut`, keeping the tickets, as a throttle group would.
    struct Gate {
        mem: Memory,
        shut: bool,
        held: Vec<(NbdTicket, bool, u64)>,
    }

    impl ExportResolver for Gate {
        fn with_backend(&mut self, b: &str, f: &mut dyn FnMut(&mut dyn NbdExportBackend)) -> bool {
            self.mem.with_backend(b, f)
        }
        fn admit(&mut self, _: &str, ticket: NbdTicket, is_write: bool, bytes: u64) -> bool {
            if self.shut {
                self.held.push((ticket, is_write, bytes));
            }
            !self.shut
        }
    }

    fn request(typ: u16, cookie: u64, offset: u64, len: u32, data: &[u8]) -> Vec<u8> {
        let mut r = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&typ.to_be_bytes());
        r.extend_from_slice(&cookie.to_be_bytes());
        r.extend_from_slice(&offset.to_be_bytes());
        r.extend_from_slice(&len.to_be_bytes());
        r.extend_from_slice(data);
        r
    }

    /// Call the client a few times as a poller would; returns what arrived.
    fn run(client: &mut Client, gate: &mut Gate, peer: &mut UnixStream) -> Vec<u8> {
        let mut got = Vec::new();
        for _ in 0..50 {
            let int = client.interest();
            if int.readable || int.writable {
                assert!(client.ready(&exports(), gate));
            }
            let mut buf = [0u8; 65536];
            while let Ok(n) = peer.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }

    fn cookies(replies: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 16 <= replies.len() {
            let c = &replies[at + 8..at + 16];
            out.push(u64::from_be_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
            // Only the read (cookie 2, 512 bytes) carries data here.
            at += if out.last() == Some(&2) { 16 + 512 } else { 16 };
        }
        out
    }

    #[test]
    fn a_throttled_request_holds_the_client_until_resumed_and_replies_keep_order() {
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        peer.set_nonblocking(true).expect("nonblocking");
        let mut client = Client::new(7, Stream::Unix(ours));
        let mut gate = Gate {
            mem: Memory(vec![0; 4096]),
            shut: true,
            held: Vec::new(),
        };
        let mut msg = select_export_m();
        msg.extend(request(proto::CMD_WRITE, 1, 0, 512, &[0xab; 512]));
        msg.extend(request(proto::CMD_READ, 2, 0, 512, &[]));
        msg.extend(flush_request(3));
        peer.write_all(&msg).expect("send");
        let handshake_len = handshake::GREETING_LEN + 10;

        let first = run(&mut client, &mut gate, &mut peer);
        let parked = client.interest();
        assert_eq!(first.len(), handshake_len, "nothing answered while held");
        assert_eq!(gate.held.len(), 1);
        assert_eq!(gate.held[0], (NbdTicket { client: 7, seq: 1 }, true, 512));
        assert!(!parked.readable && !parked.writable, "{parked:?}");
        assert!(!client.resume(99), "unknown ticket");
        assert_eq!(gate.mem.0[0], 0, "write payload not taken yet");

        assert!(client.resume(1));
        let second = run(&mut client, &mut gate, &mut peer);
        assert_eq!(cookies(&second), vec![1], "the read is held next");
        assert_eq!(gate.held[1], (NbdTicket { client: 7, seq: 2 }, false, 512));
        assert!(!client.resume(1), "a ticket is good once");

        gate.shut = false;
        assert!(client.resume(2));
        let third = run(&mut client, &mut gate, &mut peer);
        assert_eq!(cookies(&third), vec![2, 3]);
        assert_eq!(&third[16..16 + 512], &[0xab; 512][..]);
    }

    /// A file export whose reads are all handed out as file ranges; the
    /// mapping generation and `read_again`'s bytes are the test's to set.
    struct FileExport {
        file: std::fs::File,
        generation: u64,
        reads: usize,
        read_again: Vec<(u64, usize)>,
    }

    impl NbdExportBackend for FileExport {
        fn size(&self) -> u64 {
            8 << 20
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), crate::nbd::NbdIoError> {
            self.reads += 1;
            Err(crate::nbd::NbdIoError::new(libc::EIO))
        }
        fn read_to(
            &mut self,
            offset: u64,
            len: u64,
            sink: &mut dyn crate::node::MappedRead,
        ) -> Result<(), crate::nbd::NbdIoError> {
            use std::os::fd::AsFd;
            let fd = self.file.as_fd().try_clone_to_owned()?;
            sink.host(fd, offset, len);
            Ok(())
        }
        fn read_again(
            &mut self,
            offset: u64,
            buf: &mut [u8],
        ) -> Result<(), crate::nbd::NbdIoError> {
            self.read_again.push((offset, buf.len()));
            buf.fill(0x5a);
            Ok(())
        }
        fn write(&mut self, _: u64, _: &[u8], _: bool) -> Result<(), crate::nbd::NbdIoError> {
            Ok(())
        }
        fn write_zeroes(
            &mut self,
            _: u64,
            _: u64,
            _: bool,
            _: bool,
        ) -> Result<(), crate::nbd::NbdIoError> {
            Ok(())
        }
        fn trim(&mut self, _: u64, _: u64) -> Result<(), crate::nbd::NbdIoError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), crate::nbd::NbdIoError> {
            Ok(())
        }
        fn block_status(
            &mut self,
            _: u64,
            l: u64,
        ) -> Result<Vec<(u64, u32)>, crate::nbd::NbdIoError> {
            Ok(vec![(l, 0)])
        }
    }

    impl ExportResolver for FileExport {
        fn with_backend(&mut self, _: &str, f: &mut dyn FnMut(&mut dyn NbdExportBackend)) -> bool {
            f(self);
            true
        }
        fn mapping_generation(&self) -> u64 {
            self.generation
        }
    }

    const READ_LEN: usize = 4 << 20;

    /// A client over a socket pair with `READ_LEN` bytes of 0x11 behind
    /// it, sent a READ of them (cookie 1) and a FLUSH (cookie 2).
    fn reading_client() -> (Client, FileExport, UnixStream) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("nbd-client-file-{}-{n}", std::process::id()));
        std::fs::write(&path, vec![0x11u8; 8 << 20]).expect("write file");
        let file = std::fs::File::open(&path).expect("open file");
        let _ = std::fs::remove_file(&path);
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let client = Client::new(1, Stream::Unix(ours));
        let mut msg = select_export_m();
        msg.extend(request(proto::CMD_READ, 1, 0, READ_LEN as u32, &[]));
        msg.extend(flush_request(2));
        peer.write_all(&msg).expect("send");
        peer.set_nonblocking(true).expect("nonblocking");
        let export = FileExport {
            file,
            generation: 0,
            reads: 0,
            read_again: Vec::new(),
        };
        (client, export, peer)
    }

    /// Serve until the socket is full: the peer has read nothing.
    fn fill_socket(client: &mut Client, export: &mut FileExport) {
        for _ in 0..20 {
            if client.interest().writable {
                assert!(client.ready(&exports(), export));
            }
        }
    }

    /// Read everything the client sends, calling it as a poller would.
    fn drain_client(
        client: &mut Client,
        export: &mut FileExport,
        peer: &mut UnixStream,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..100_000 {
            let int = client.interest();
            if int.writable {
                assert!(client.ready(&exports(), export));
            }
            match peer.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ if !int.writable && client.out.pending() == 0 => break,
                _ => {}
            }
        }
        got
    }

    const REPLIES_START: usize = handshake::GREETING_LEN + 10;

    #[test]
    fn a_read_sent_with_sendfile_resumes_when_the_socket_drains_and_keeps_reply_order() {
        let (mut client, mut export, mut peer) = reading_client();

        fill_socket(&mut client, &mut export);
        let queued = client.out.pending();
        let got = drain_client(&mut client, &mut export, &mut peer);

        assert!(queued > 0, "the socket took everything at once");
        assert_eq!(export.reads, 0, "nothing went through memory");
        assert_eq!(got.len(), REPLIES_START + 16 + READ_LEN + 16);
        let r = &got[REPLIES_START..];
        assert_eq!(&r[8..16], &1u64.to_be_bytes());
        assert!(r[16..16 + READ_LEN].iter().all(|&b| b == 0x11));
        assert_eq!(&r[16 + READ_LEN + 8..], &2u64.to_be_bytes());
    }

    #[test]
    fn file_ranges_gone_stale_before_they_are_sent_are_read_again() {
        let (mut client, mut export, mut peer) = reading_client();
        fill_socket(&mut client, &mut export);

        // Storage was freed somewhere: the unsent ranges may hold other data.
        export.generation += 1;
        let got = drain_client(&mut client, &mut export, &mut peer);

        assert_eq!(got.len(), REPLIES_START + 16 + READ_LEN + 16);
        let data = &got[REPLIES_START + 16..REPLIES_START + 16 + READ_LEN];
        let sent_before = data.iter().take_while(|&&b| b == 0x11).count();
        assert!(sent_before < READ_LEN);
        assert!(data[sent_before..].iter().all(|&b| b == 0x5a));
        let again: usize = export.read_again.iter().map(|r| r.1).sum();
        assert_eq!(again, READ_LEN - sent_before, "only the unsent bytes");
        assert!(export.read_again.iter().all(|r| r.0 >= sent_before as u64));
    }

    #[test]
    fn a_held_client_whose_peer_hung_up_is_dropped_when_woken() {
        let (ours, mut peer) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("nonblocking");
        let mut client = Client::new(1, Stream::Unix(ours));
        let mut gate = Gate {
            mem: Memory(vec![0; 4096]),
            shut: true,
            held: Vec::new(),
        };
        let mut msg = select_export_m();
        msg.extend(request(proto::CMD_READ, 1, 0, 512, &[]));
        peer.write_all(&msg).expect("send");
        peer.set_nonblocking(true).expect("nonblocking");
        let _ = run(&mut client, &mut gate, &mut peer);
        assert_eq!(gate.held.len(), 1);

        drop(peer);

        assert!(!client.ready(&exports(), &mut gate), "still open");
    }
}
