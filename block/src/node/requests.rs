//! Reads and writes through a node as requests that can stop (see
//! `crate::request`): the node's checks and hooks, the events the generic
//! layer signals on the node itself, then the driver's part. The
//! synchronous `Node::read`/`write`/`write_zeroes` are the same requests
//! polled once.

use super::{is_zero, lock, mappings_may_change, DetectZeroes, Node, NodeRef};
use crate::driver::Children;
use crate::drivers::blkdebug::{self, BlkdebugEvent};
use crate::error::BlockResult;
use crate::request::{breakpoint, DriverReq, Poll, ReqKind, Wait};

/// Where a write through a node has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteStage {
    /// Nothing done yet.
    Start,
    /// Checks and hooks done, the node's write event signalled: the driver's turn.
    Driver,
}

/// A write (or write-zeroes) through one node.
pub struct WriteOp {
    dreq: DriverReq,
    stage: WriteStage,
    /// A breakpoint on the node's own write event.
    gate: Wait,
}

impl WriteOp {
    /// A write of the caller's data (`ReqKind::Write`) or of zeroes.
    pub fn new(offset: u64, kind: ReqKind) -> WriteOp {
        WriteOp {
            dreq: DriverReq::new(offset, kind),
            stage: WriteStage::Start,
            gate: Wait::none(),
        }
    }

    pub fn offset(&self) -> u64 {
        self.dreq.offset
    }

    /// Bytes the request covers, given the data passed to every poll.
    fn len(&self, data: &[u8]) -> u64 {
        match self.dreq.kind {
            ReqKind::WriteZeroes { len, .. } => len,
            _ => data.len() as u64,
        }
    }
}

/// A read through one node.
pub struct ReadOp {
    dreq: DriverReq,
    started: bool,
}

impl ReadOp {
    pub fn new(offset: u64) -> ReadOp {
        ReadOp {
            dreq: DriverReq::new(offset, ReqKind::Read),
            started: false,
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
        let offset = op.dreq.offset;
        let len = op.len(data);
        if op.stage == WriteStage::Start {
            ready_try!(self.check_usable());
            ready_try!(self.check_writable());
            if len == 0 {
                return Poll::Ready(Ok(()));
            }
            let ev = ready_try!(self.prepare_write(op, data, len));
            op.stage = WriteStage::Driver;
            let ((), w) = breakpoint::catch(|| self.write_begin(offset, len, ev));
            if !w.is_empty() {
                op.gate = w;
                return Poll::Pending;
            }
        }
        if !op.dreq.gate.is_over() {
            return Poll::Pending;
        }
        match self.driver.poll_write(&self.children, &mut op.dreq, data) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.write_end(offset, len, false);
                self.note_corruption();
                Poll::Ready(r)
            }
        }
    }

    /// The generic layer's work before a write reaches the driver: the
    /// probed-raw guard, copy-before-write, detect-zeroes (which may turn
    /// the request into a zero write). Returns the event to signal.
    fn prepare_write(
        &mut self,
        op: &mut WriteOp,
        data: &[u8],
        len: u64,
    ) -> BlockResult<BlkdebugEvent> {
        let offset = op.dreq.offset;
        match op.dreq.kind {
            ReqKind::Write { .. } => {
                if self.probed && offset < 512 {
                    self.check_probed_first_sector(offset, data)?;
                }
                self.run_before_write(offset, len)?;
                if self.opts.detect_zeroes != DetectZeroes::Off && is_zero(data) {
                    let may_unmap = self.opts.detect_zeroes == DetectZeroes::Unmap;
                    op.dreq.kind = ReqKind::WriteZeroes { len, may_unmap };
                    return Ok(self.prepare_zero_write(op));
                }
                self.note_remapping_write();
                Ok(BlkdebugEvent::Pwritev)
            }
            // QEMU 2.8's raw driver checks only data writes against probing,
            // not zero writes (which reach it after detect-zeroes, too).
            _ => {
                self.run_before_write(offset, len)?;
                Ok(self.prepare_zero_write(op))
            }
        }
    }

    fn prepare_zero_write(&mut self, op: &mut WriteOp) -> BlkdebugEvent {
        mappings_may_change();
        if let ReqKind::WriteZeroes { may_unmap, .. } = &mut op.dreq.kind {
            *may_unmap = *may_unmap && self.opts.discard_unmap;
        }
        BlkdebugEvent::PwritevZero
    }

    /// Polls a read into `buf` (the same buffer on every poll).
    pub fn poll_read(&mut self, op: &mut ReadOp, buf: &mut [u8]) -> Poll<BlockResult<()>> {
        if !op.started {
            ready_try!(self.check_usable());
            if buf.is_empty() {
                return Poll::Ready(Ok(()));
            }
            op.started = true;
        }
        if !op.dreq.gate.is_over() {
            return Poll::Pending;
        }
        match self.driver.poll_read(&self.children, &mut op.dreq, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.note_corruption();
                Poll::Ready(r)
            }
        }
    }
}

/// A child's part of a request kept by a filter-like driver between polls.
enum ChildOp {
    Write(WriteOp),
    Read(ReadOp),
}

/// A driver's request handed on to `child` at `offset` (raw, blkdebug): `ev`,
/// if any, is signalled on the driver's file child first, and the request
/// stops right after it when a breakpoint fires there.
pub fn pass_write(
    req: &mut DriverReq,
    c: &Children,
    ev: Option<BlkdebugEvent>,
    child: &NodeRef,
    offset: u64,
    data: &[u8],
) -> Poll<BlockResult<()>> {
    let mut op = match req.state.take().map(|s| s.downcast::<ChildOp>()) {
        Some(Ok(s)) => match *s {
            ChildOp::Write(op) => op,
            ChildOp::Read(_) => WriteOp::new(offset, req.kind),
        },
        _ => {
            let op = WriteOp::new(offset, req.kind);
            if let Some(w) = signal_stop(c, ev) {
                req.gate = w;
                req.state = Some(Box::new(ChildOp::Write(op)));
                return Poll::Pending;
            }
            op
        }
    };
    let r = lock(child).poll_write(&mut op, data);
    if matches!(r, Poll::Pending) {
        req.state = Some(Box::new(ChildOp::Write(op)));
    }
    r
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
    let mut op = match req.state.take().map(|s| s.downcast::<ChildOp>()) {
        Some(Ok(s)) => match *s {
            ChildOp::Read(op) => op,
            ChildOp::Write(_) => ReadOp::new(offset),
        },
        _ => {
            let op = ReadOp::new(offset);
            if let Some(w) = signal_stop(c, ev) {
                req.gate = w;
                req.state = Some(Box::new(ChildOp::Read(op)));
                return Poll::Pending;
            }
            op
        }
    };
    let r = lock(child).poll_read(&mut op, buf);
    if matches!(r, Poll::Pending) {
        req.state = Some(Box::new(ChildOp::Read(op)));
    }
    r
}

/// Signals `ev` on the file child; Some when a breakpoint stopped the request there.
pub fn signal_stop(c: &Children, ev: Option<BlkdebugEvent>) -> Option<Wait> {
    let ev = ev?;
    let ((), w) = breakpoint::catch(|| blkdebug::signal(c, ev));
    (!w.is_empty()).then_some(w)
}
