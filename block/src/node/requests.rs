//! Reads and writes through a node as requests that can stop (see
//! `crate::request`): the node's checks and hooks, the events the generic
//! layer signals on the node itself, then the driver's part. The
//! synchronous `Node::read`/`write`/`write_zeroes` are the same requests
//! polled once.
//!
//! A node whose driver wants aligned requests (`Driver::request_alignment`
//! above 1) registers each request in its tracked list (`tracked.rs`) and,
//! as QEMU 2.8's block/io.c, pads unaligned ones: a read reads the aligned
//! range and copies its part out; a write reads the blocks its head and tail
//! only partly cover (read-modify-write, signalling pwritev_rmw_* around each
//! read) and writes whole blocks. Such a write is serialising: overlapping
//! requests wait until it is done, and it waits for them.

use std::cell::Cell;

use super::tracked::TrackGuard;
use super::{is_zero, lock, mappings_may_change, DetectZeroes, Node, NodeRef};
use crate::driver::Children;
use crate::drivers::blkdebug::{self, BlkdebugEvent};
use crate::error::{BlockError, BlockResult};
use crate::request::{breakpoint, with_state, DriverReq, Poll, ReqKind, Wait};

/// Which partly covered block of an unaligned write a step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Head,
    Tail,
}

impl Edge {
    /// The events signalled before and after the block is read.
    fn events(self) -> (BlkdebugEvent, BlkdebugEvent) {
        match self {
            Edge::Head => (
                BlkdebugEvent::PwritevRmwHead,
                BlkdebugEvent::PwritevRmwAfterHead,
            ),
            Edge::Tail => (
                BlkdebugEvent::PwritevRmwTail,
                BlkdebugEvent::PwritevRmwAfterTail,
            ),
        }
    }
}

/// Where the bytes of an aligned write come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The caller's request as it came (its data, or zeroes).
    Caller,
    /// The read-modify-write buffer, written as data.
    Bounce,
    /// Zeroes: the aligned middle of an unaligned write-zeroes.
    Zeroes,
}

/// One step of a write through a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Reads the block at `at` into the buffer at `buf_off`.
    Pad { edge: Edge, at: u64, buf_off: usize },
    /// Puts the caller's data into the buffer at `buf_off`.
    CopyIn { buf_off: usize },
    /// Zeroes `from..to` of the buffer.
    Zero { from: usize, to: usize },
    /// Writes `len` bytes at `at` (both aligned).
    Write { at: u64, len: u64, src: Src },
}

/// How far the current step of a write has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing done yet.
    Start,
    /// At the start of the current step.
    Step,
    /// Pad: the event before the read is signalled.
    PadRead,
    /// Pad: the driver's read is under way.
    Reading,
    /// Write: checks, hooks and the write event done: the driver's turn.
    Driver,
    /// Write: the driver is done and pwritev_done signalled.
    Done,
}

/// A read-modify-write plan and its buffer (unaligned writes only).
struct Rmw {
    align: u64,
    steps: Vec<Step>,
    next: usize,
    buf: Vec<u8>,
    /// The read of the current `Pad` step.
    read: Option<DriverReq>,
}

/// A write (or write-zeroes) through one node.
pub struct WriteOp {
    offset: u64,
    /// The request as submitted.
    kind: ReqKind,
    /// Bytes it covers (known once polled).
    len: u64,
    /// The driver's part of the current aligned write.
    dreq: DriverReq,
    phase: Phase,
    /// What the node layer waits for: a breakpoint on one of its events,
    /// or an overlapping request.
    gate: Wait,
    /// Its entry in the node's tracked requests (alignment above 1).
    track: Option<TrackGuard>,
    rmw: Option<Box<Rmw>>,
    /// The driver's result while a breakpoint on pwritev_done holds it
    /// (boxed: a rare case that leaves the common one less to drop).
    held: Option<Box<BlockResult<()>>>,
}

impl WriteOp {
    /// A write of the caller's data (`ReqKind::Write`) or of zeroes.
    pub fn new(offset: u64, kind: ReqKind) -> WriteOp {
        WriteOp {
            offset,
            kind,
            len: 0,
            dreq: DriverReq::new(offset, kind),
            phase: Phase::Start,
            gate: Wait::none(),
            track: None,
            rmw: None,
            held: None,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The step the write is at.
    fn step(&self) -> Option<Step> {
        match &self.rmw {
            Some(r) => r.steps.get(r.next).copied(),
            None => Some(Step::Write {
                at: self.offset,
                len: self.len,
                src: Src::Caller,
            }),
        }
    }

    /// Moves to the next step; false when there is none.
    fn advance(&mut self) -> bool {
        self.phase = Phase::Step;
        match &mut self.rmw {
            Some(r) => {
                r.next += 1;
                r.next < r.steps.len()
            }
            None => false,
        }
    }

    /// The driver request of an aligned write from `src`.
    fn kind_for(&self, src: Src, len: u64) -> ReqKind {
        match (src, self.kind) {
            (Src::Caller, k) => k,
            (Src::Bounce, ReqKind::Write { fua }) => ReqKind::Write { fua },
            (Src::Bounce, _) => ReqKind::Write { fua: false },
            (Src::Zeroes, ReqKind::WriteZeroes { may_unmap, .. }) => {
                ReqKind::WriteZeroes { len, may_unmap }
            }
            (Src::Zeroes, _) => ReqKind::WriteZeroes {
                len,
                may_unmap: false,
            },
        }
    }
}

/// The bytes an aligned write from `src` passes to the driver.
fn src_bytes<'a>(rmw: &'a Option<Box<Rmw>>, src: Src, data: &'a [u8]) -> &'a [u8] {
    match (src, rmw) {
        (Src::Bounce, Some(r)) => &r.buf,
        (Src::Caller, _) => data,
        _ => &[],
    }
}

/// A zeroed buffer, or ENOMEM instead of aborting on a huge request.
fn zeroed(len: u64) -> BlockResult<Vec<u8>> {
    let oom = || BlockError::errno("Could not allocate bounce buffer", libc::ENOMEM);
    let n = usize::try_from(len).map_err(|_| oom())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    v.resize(n, 0);
    Ok(v)
}

fn align_down(x: u64, align: u64) -> u64 {
    x & !(align - 1)
}

fn align_up(x: u64, align: u64) -> BlockResult<u64> {
    x.checked_next_multiple_of(align)
        .ok_or_else(|| BlockError::InvalidArgument("Request out of range".into()))
}

/// The read-modify-write plan of an unaligned data write (bdrv_co_pwritev):
/// read the head block, then the tail block unless the head block already
/// covers the end, then write the whole blocks.
fn plan_data_write(offset: u64, len: u64, align: u64) -> BlockResult<Rmw> {
    let start = align_down(offset, align);
    let end = offset
        .checked_add(len)
        .ok_or_else(|| BlockError::InvalidArgument("Request out of range".into()))?;
    let aligned_end = align_up(end, align)?;
    let mut steps = Vec::with_capacity(4);
    let head = offset != start;
    if head {
        steps.push(Step::Pad {
            edge: Edge::Head,
            at: start,
            buf_off: 0,
        });
    }
    let tail_at = align_down(end, align);
    if end != aligned_end && !(head && tail_at == start) {
        steps.push(Step::Pad {
            edge: Edge::Tail,
            at: tail_at,
            buf_off: (tail_at - start) as usize,
        });
    }
    steps.push(Step::CopyIn {
        buf_off: (offset - start) as usize,
    });
    steps.push(Step::Write {
        at: start,
        len: aligned_end - start,
        src: Src::Bounce,
    });
    Ok(Rmw {
        align,
        steps,
        next: 0,
        buf: zeroed(aligned_end - start)?,
        read: None,
    })
}

/// The plan of an unaligned write-zeroes (bdrv_co_do_zero_pwritev): the
/// partly covered head block read, zeroed in part and written as data, the
/// aligned middle as a zero write, then the tail block as the head.
fn plan_zero_write(offset: u64, len: u64, align: u64) -> BlockResult<Rmw> {
    let mut steps = Vec::with_capacity(7);
    let (mut at, mut rest) = (offset, len);
    let head_pad = offset - align_down(offset, align);
    if head_pad != 0 {
        let n = rest.min(align - head_pad);
        let block = at - head_pad;
        steps.push(Step::Pad {
            edge: Edge::Head,
            at: block,
            buf_off: 0,
        });
        steps.push(Step::Zero {
            from: head_pad as usize,
            to: (head_pad + n) as usize,
        });
        steps.push(Step::Write {
            at: block,
            len: align,
            src: Src::Bounce,
        });
        at += n;
        rest -= n;
    }
    if rest >= align {
        let n = align_down(rest, align);
        steps.push(Step::Write {
            at,
            len: n,
            src: Src::Zeroes,
        });
        at += n;
        rest -= n;
    }
    if rest > 0 {
        steps.push(Step::Pad {
            edge: Edge::Tail,
            at,
            buf_off: 0,
        });
        steps.push(Step::Zero {
            from: 0,
            to: rest as usize,
        });
        steps.push(Step::Write {
            at,
            len: align,
            src: Src::Bounce,
        });
    }
    Ok(Rmw {
        align,
        steps,
        next: 0,
        buf: zeroed(align)?,
        read: None,
    })
}

/// What a write step leads to.
enum Flow {
    /// On to the next step (or phase).
    Go,
    /// Stopped: poll again once the gates are over.
    Stop,
    /// Finished with this result.
    End(BlockResult<()>),
}

/// How far a read through a node has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPhase {
    Start,
    /// Waiting for overlapping serialising requests.
    Wait,
    /// The driver's turn.
    Driver,
}

/// A read through one node.
pub struct ReadOp {
    offset: u64,
    dreq: DriverReq,
    phase: ReadPhase,
    /// An overlapping serialising request the read waits for.
    gate: Wait,
    /// Alignment above 1 only (boxed: a read elsewhere has nothing there
    /// to drop).
    aligned: Option<Box<AlignedRead>>,
}

/// A read's part at a node that wants aligned requests.
#[derive(Default)]
struct AlignedRead {
    /// Its entry in the node's tracked requests (none for an unserialised read).
    track: Option<TrackGuard>,
    /// The aligned range an unaligned read reads.
    bounce: Option<Vec<u8>>,
}

impl ReadOp {
    pub fn new(offset: u64) -> ReadOp {
        ReadOp {
            offset,
            dreq: DriverReq::new(offset, ReqKind::Read),
            phase: ReadPhase::Start,
            gate: Wait::none(),
            aligned: None,
        }
    }
}

macro_rules! ready_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Poll::Ready(Err(e)),
        }
    };
}

impl Node {
    /// Polls a write; `data` is the same buffer on every poll (empty for
    /// write-zeroes).
    pub fn poll_write(&mut self, op: &mut WriteOp, data: &[u8]) -> Poll<BlockResult<()>> {
        if !op.gate.is_over() {
            return Poll::Pending;
        }
        if op.phase == Phase::Start {
            ready_try!(self.check_usable());
            ready_try!(self.check_writable());
            op.len = match op.kind {
                ReqKind::WriteZeroes { len, .. } => len,
                _ => data.len() as u64,
            };
            if op.len == 0 {
                return Poll::Ready(Ok(()));
            }
            ready_try!(self.plan_write(op));
            op.phase = Phase::Step;
        }
        loop {
            match self.write_step(op, data) {
                Flow::Go => {}
                // A corruption found before the driver stopped is reported now.
                Flow::Stop => {
                    self.note_corruption();
                    return Poll::Pending;
                }
                Flow::End(r) => {
                    if let Some(g) = op.track.take() {
                        self.tracked.end(g);
                    }
                    self.note_corruption();
                    return Poll::Ready(r);
                }
            }
        }
    }

    /// Registers the write when the driver wants alignment, and plans the
    /// read-modify-write of an unaligned one.
    fn plan_write(&mut self, op: &mut WriteOp) -> BlockResult<()> {
        let align = self.align;
        if align <= 1 {
            return Ok(());
        }
        let end = op.offset.saturating_add(op.len);
        if !op.offset.is_multiple_of(align) || !end.is_multiple_of(align) {
            op.rmw = Some(Box::new(match op.kind {
                ReqKind::WriteZeroes { .. } => plan_zero_write(op.offset, op.len, align)?,
                _ => plan_data_write(op.offset, op.len, align)?,
            }));
        }
        op.track = Some(self.tracked.begin(op.offset, op.len));
        Ok(())
    }

    /// Runs the write's current step as far as it can.
    fn write_step(&mut self, op: &mut WriteOp, data: &[u8]) -> Flow {
        match op.step() {
            Some(Step::Write { at, len, src }) => self.aligned_write(op, at, len, src, data),
            Some(step) => self.rmw_step(op, step, data),
            None => Flow::End(Ok(())),
        }
    }

    /// Runs a read-modify-write step that is not a write (kept out of line:
    /// the plain write path stays small).
    #[inline(never)]
    fn rmw_step(&mut self, op: &mut WriteOp, step: Step, data: &[u8]) -> Flow {
        match (step, op.phase) {
            (Step::Pad { edge, .. }, Phase::Step) => {
                if let (Some(g), Some(r)) = (&op.track, &op.rmw) {
                    self.tracked.mark_serialising(g, r.align);
                }
                if self.must_wait(op.track.as_ref(), &mut op.gate) {
                    return Flow::Stop;
                }
                op.phase = Phase::PadRead;
                self.stop_after(edge.events().0, &mut op.gate)
            }
            (Step::Pad { at, .. }, Phase::PadRead) => {
                // QEMU's aligned read waits for overlapping requests once more.
                if self.must_wait(op.track.as_ref(), &mut op.gate) {
                    return Flow::Stop;
                }
                if let Some(r) = op.rmw.as_deref_mut() {
                    r.read = Some(DriverReq::new(at, ReqKind::Read));
                }
                op.phase = Phase::Reading;
                Flow::Go
            }
            (Step::Pad { edge, buf_off, .. }, Phase::Reading) => {
                let Some(r) = op.rmw.as_deref_mut() else {
                    return Flow::End(Err(lost_step()));
                };
                let (Some(rd), Some(block)) = (
                    r.read.as_mut(),
                    r.buf.get_mut(buf_off..buf_off + r.align as usize),
                ) else {
                    return Flow::End(Err(lost_step()));
                };
                if !rd.gate.is_over() {
                    return Flow::Stop;
                }
                match self.driver.poll_read(&self.children, rd, block) {
                    Poll::Pending => Flow::Stop,
                    Poll::Ready(Err(e)) => Flow::End(Err(e)),
                    Poll::Ready(Ok(())) => {
                        r.read = None;
                        op.advance();
                        self.stop_after(edge.events().1, &mut op.gate)
                    }
                }
            }
            (Step::CopyIn { buf_off }, _) => {
                if let Some(dst) = op
                    .rmw
                    .as_deref_mut()
                    .and_then(|r| r.buf.get_mut(buf_off..buf_off + data.len()))
                {
                    dst.copy_from_slice(data);
                }
                op.advance();
                Flow::Go
            }
            (Step::Zero { from, to }, _) => {
                if let Some(dst) = op.rmw.as_deref_mut().and_then(|r| r.buf.get_mut(from..to)) {
                    dst.fill(0);
                }
                op.advance();
                Flow::Go
            }
            (Step::Write { .. }, _)
            | (Step::Pad { .. }, Phase::Start | Phase::Driver | Phase::Done) => {
                Flow::End(Err(lost_step()))
            }
        }
    }

    /// A `Write` step: checks, hooks and the write event, the driver's
    /// write, pwritev_done; each phase runs on into the next unless the
    /// request stops there.
    fn aligned_write(
        &mut self,
        op: &mut WriteOp,
        at: u64,
        len: u64,
        src: Src,
        data: &[u8],
    ) -> Flow {
        if op.phase == Phase::Step {
            // Requests that overlap a serialising one wait for it too.
            if self.must_wait(op.track.as_ref(), &mut op.gate) {
                return Flow::Stop;
            }
            op.dreq.restart(at, op.kind_for(src, len));
            let bytes = src_bytes(&op.rmw, src, data);
            let ev = match self.prepare_write(&mut op.dreq, bytes, len, (op.offset, op.len)) {
                Ok(ev) => ev,
                Err(e) => return Flow::End(Err(e)),
            };
            op.phase = Phase::Driver;
            if let Some(w) = self.catch_here(|n| n.write_begin(op.offset, op.len, ev)) {
                op.gate = w;
                return Flow::Stop;
            }
        }
        let r = match op.phase {
            Phase::Driver => {
                if !op.dreq.gate.is_over() {
                    return Flow::Stop;
                }
                let bytes = src_bytes(&op.rmw, src, data);
                let r = match self.driver.poll_write(&self.children, &mut op.dreq, bytes) {
                    Poll::Pending => return Flow::Stop,
                    Poll::Ready(r) => r,
                };
                op.phase = Phase::Done;
                if let Some(w) = self.catch_here(|n| n.debug_event(BlkdebugEvent::PwritevDone)) {
                    op.gate = w;
                    op.held = Some(Box::new(r));
                    return Flow::Stop;
                }
                r
            }
            Phase::Done => op.held.take().map_or(Ok(()), |r| *r),
            _ => return Flow::End(Err(lost_step())),
        };
        self.tracking.after_write(at, len, false);
        if r.is_err() || !op.advance() {
            return Flow::End(r);
        }
        Flow::Go
    }

    /// True when the tracked request must wait behind another one; the
    /// other's ticket goes into `gate`.
    #[inline(always)]
    fn must_wait(&mut self, track: Option<&TrackGuard>, gate: &mut Wait) -> bool {
        let Some(g) = track else {
            return false;
        };
        match self.tracked.wait_for(g) {
            Some(t) => {
                *gate = Wait::on(t);
                true
            }
            None => false,
        }
    }

    /// Signals `ev` on this node: a point the request can stop right after.
    fn stop_after(&mut self, ev: BlkdebugEvent, gate: &mut Wait) -> Flow {
        match self.catch_here(|n| n.debug_event(ev)) {
            Some(w) => {
                *gate = w;
                Flow::Stop
            }
            None => Flow::Go,
        }
    }

    /// Runs `f`, which signals an event on this node; Some: the breakpoints
    /// it hit, where the request stops. Only a node that observes events
    /// has any.
    #[inline]
    fn catch_here(&mut self, f: impl FnOnce(&mut Node)) -> Option<Wait> {
        if !self.observes_events {
            f(self);
            return None;
        }
        catch_observed(self, f)
    }

    /// The generic layer's work before a write reaches the driver: the
    /// probed-raw guard, copy-before-write, detect-zeroes (which may turn
    /// the request into a zero write). `hook` is the range the caller
    /// asked for, which copy-before-write sees. Returns the event to signal.
    fn prepare_write(
        &mut self,
        dreq: &mut DriverReq,
        data: &[u8],
        len: u64,
        hook: (u64, u64),
    ) -> BlockResult<BlkdebugEvent> {
        let offset = dreq.offset;
        match dreq.kind {
            ReqKind::Write { .. } => {
                if self.probed && offset < 512 {
                    self.check_probed_first_sector(offset, data)?;
                }
                self.run_before_write(hook.0, hook.1)?;
                if self.opts.detect_zeroes != DetectZeroes::Off && is_zero(data) {
                    let may_unmap = self.opts.detect_zeroes == DetectZeroes::Unmap;
                    dreq.kind = ReqKind::WriteZeroes { len, may_unmap };
                    return Ok(self.prepare_zero_write(dreq));
                }
                self.note_remapping_write();
                Ok(BlkdebugEvent::Pwritev)
            }
            // QEMU 2.8's raw driver checks only data writes against probing,
            // not zero writes (which reach it after detect-zeroes, too).
            _ => {
                self.run_before_write(hook.0, hook.1)?;
                Ok(self.prepare_zero_write(dreq))
            }
        }
    }

    fn prepare_zero_write(&mut self, dreq: &mut DriverReq) -> BlkdebugEvent {
        mappings_may_change();
        if let ReqKind::WriteZeroes { may_unmap, .. } = &mut dreq.kind {
            *may_unmap = *may_unmap && self.opts.discard_unmap;
        }
        BlkdebugEvent::PwritevZero
    }

    /// Polls a read into `buf` (the same buffer on every poll).
    pub fn poll_read(&mut self, op: &mut ReadOp, buf: &mut [u8]) -> Poll<BlockResult<()>> {
        if !op.gate.is_over() {
            return Poll::Pending;
        }
        if op.phase == ReadPhase::Start {
            ready_try!(self.check_usable());
            if buf.is_empty() {
                return Poll::Ready(Ok(()));
            }
            ready_try!(self.plan_read(op, buf.len() as u64));
            op.phase = ReadPhase::Wait;
        }
        if op.phase == ReadPhase::Wait {
            let track = op.aligned.as_deref().and_then(|a| a.track.as_ref());
            if self.must_wait(track, &mut op.gate) {
                return Poll::Pending;
            }
            op.phase = ReadPhase::Driver;
        }
        if !op.dreq.gate.is_over() {
            return Poll::Pending;
        }
        let target = match op
            .aligned
            .as_deref_mut()
            .and_then(|a| a.bounce.as_deref_mut())
        {
            Some(b) => b,
            None => &mut *buf,
        };
        let r = match self.driver.poll_read(&self.children, &mut op.dreq, target) {
            Poll::Pending => {
                self.note_corruption();
                return Poll::Pending;
            }
            Poll::Ready(r) => r,
        };
        if let Some(a) = op.aligned.take() {
            if let (Ok(()), Some(b)) = (&r, &a.bounce) {
                let skip = (op.offset - op.dreq.offset) as usize;
                if let Some(src) = b.get(skip..skip + buf.len()) {
                    buf.copy_from_slice(src);
                }
            }
            if let Some(g) = a.track {
                self.tracked.end(g);
            }
        }
        self.note_corruption();
        Poll::Ready(r)
    }

    /// Registers the read when the driver wants alignment and widens an
    /// unaligned one to whole blocks (bdrv_co_preadv).
    fn plan_read(&mut self, op: &mut ReadOp, len: u64) -> BlockResult<()> {
        let align = self.align;
        if align <= 1 {
            return Ok(());
        }
        let end = op
            .offset
            .checked_add(len)
            .ok_or_else(|| BlockError::InvalidArgument("Request out of range".into()))?;
        let (start, aligned_end) = (align_down(op.offset, align), align_up(end, align)?);
        let a = op.aligned.insert(Box::default());
        if start != op.offset || aligned_end != end {
            a.bounce = Some(zeroed(aligned_end - start)?);
            op.dreq.offset = start;
        }
        if !UNSERIALISED.with(Cell::get) {
            a.track = Some(self.tracked.begin(start, aligned_end - start));
        }
        Ok(())
    }
}

thread_local! {
    /// Reads issued now neither register nor wait (see `unserialised`).
    static UNSERIALISED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with reads that do not wait for serialising requests, as QEMU's
/// BDRV_REQ_NO_SERIALISING: copy-before-write reads what the write that
/// runs it is about to change, on whatever node below.
pub(super) fn unserialised<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            UNSERIALISED.with(|u| u.set(self.0));
        }
    }
    let _restore = Restore(UNSERIALISED.with(|u| u.replace(true)));
    f()
}

/// `Node::catch_here` on a node that observes events, out of line: the
/// path of every other node stays small.
#[inline(never)]
fn catch_observed(n: &mut Node, f: impl FnOnce(&mut Node)) -> Option<Wait> {
    let ((), w) = breakpoint::catch(|| f(n));
    (!w.is_empty()).then_some(w)
}

/// A write whose state lost track of its step: a bug, reported as an error
/// rather than a panic.
fn lost_step() -> BlockError {
    BlockError::Generic("write request in an inconsistent state".into())
}

/// A driver's request handed on to `child` at `offset` (raw, blkdebug): `ev`,
/// if any, is signalled on the driver's file child first, and the request
/// stops right after it when a breakpoint fires there. The child's request
/// is the driver's state, on the stack unless it stops.
pub fn pass_write(
    req: &mut DriverReq,
    c: &Children,
    ev: Option<BlkdebugEvent>,
    child: &NodeRef,
    offset: u64,
    data: &[u8],
) -> Poll<BlockResult<()>> {
    let kind = req.kind;
    if req.state.is_none() {
        if let Some(w) = signal_stop(c, ev) {
            req.gate = w;
            req.state = Some(Box::new(WriteOp::new(offset, kind)));
            return Poll::Pending;
        }
    }
    with_state(
        &mut req.state,
        || WriteOp::new(offset, kind),
        |op| lock(child).poll_write(op, data),
    )
}

/// `pass_write` for reads.
pub fn pass_read(
    req: &mut DriverReq,
    c: &Children,
    ev: Option<BlkdebugEvent>,
    child: &NodeRef,
    offset: u64,
    buf: &mut [u8],
) -> Poll<BlockResult<()>> {
    if req.state.is_none() {
        if let Some(w) = signal_stop(c, ev) {
            req.gate = w;
            req.state = Some(Box::new(ReadOp::new(offset)));
            return Poll::Pending;
        }
    }
    with_state(
        &mut req.state,
        || ReadOp::new(offset),
        |op| lock(child).poll_read(op, buf),
    )
}

/// Signals `ev` on the file child; Some when a breakpoint stopped the request there.
#[inline]
pub fn signal_stop(c: &Children, ev: Option<BlkdebugEvent>) -> Option<Wait> {
    match ev {
        Some(ev) if c.file_observes_events() => signal_observed(c, ev),
        _ => None,
    }
}

/// `signal_stop` on a file child that observes events, out of line like
/// `catch_observed`.
#[inline(never)]
fn signal_observed(c: &Children, ev: BlkdebugEvent) -> Option<Wait> {
    let ((), w) = breakpoint::catch(|| blkdebug::signal(c, ev));
    (!w.is_empty()).then_some(w)
}

#[cfg(test)]
mod tests;
