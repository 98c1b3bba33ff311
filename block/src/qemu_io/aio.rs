//! Asynchronous requests of aio_read/aio_write as values: what to do, and
//! what to print and account once it is done. Without a submitter they run
//! at once; with one (a throttled backend under a virtual clock, say) they
//! complete whenever the submitter lets them, and `aio_flush` drains them.

use std::time::Instant;

use super::device::{Device, Errno};
use super::hooks::{Accounting, AcctEvent};
use crate::node::{lock, NodeRef, ReadOp, WriteOp};
use crate::request::{AsyncRequest, Poll, ReqKind};

/// The I/O an aio request performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AioOp {
    Read { len: u64 },
    Write { data: Vec<u8>, fua: bool },
    WriteZeroes { len: u64, unmap: bool, fua: bool },
}

/// What a completed request prints (stdout text, possibly empty) and the
/// accounting record the backend's statistics take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AioDone {
    pub text: String,
    pub acct: Option<AcctEvent>,
}

type Completion = Box<dyn FnOnce(Result<Vec<u8>, Errno>, Instant) -> AioDone + Send>;

/// One submitted aio request.
pub struct AioRequest {
    pub offset: u64,
    pub op: AioOp,
    submitted: Instant,
    completion: Completion,
}

impl AioRequest {
    pub(super) fn new(offset: u64, op: AioOp, completion: Completion) -> AioRequest {
        AioRequest {
            offset,
            op,
            submitted: Instant::now(),
            completion,
        }
    }

    /// Performs the I/O with the reference's backend checks (size limit,
    /// bounds, medium); a read returns the data.
    pub fn execute(&self, node: Option<&NodeRef>) -> Result<Vec<u8>, Errno> {
        let dev = Device::new(node);
        match &self.op {
            AioOp::Read { len } => {
                dev.precheck(self.offset, *len)?;
                let n = usize::try_from(*len).map_err(|_| libc::ENOMEM)?;
                let mut buf = Vec::new();
                buf.try_reserve_exact(n).map_err(|_| libc::ENOMEM)?;
                buf.resize(n, 0xab);
                dev.read(self.offset, &mut buf)?;
                Ok(buf)
            }
            AioOp::Write { data, fua } => dev.write(self.offset, data, *fua).map(|_| Vec::new()),
            AioOp::WriteZeroes { len, unmap, fua } => dev
                .write_zeroes(self.offset, *len, *unmap, *fua)
                .map(|_| Vec::new()),
        }
    }

    /// Finishes the request with the I/O's result: what qemu-io prints now.
    pub fn complete(self, result: Result<Vec<u8>, Errno>) -> AioDone {
        (self.completion)(result, self.submitted)
    }

    /// Executes and completes at once.
    pub fn run(self, node: Option<&NodeRef>) -> AioDone {
        let r = self.execute(node);
        self.complete(r)
    }

    /// The request as one the `Inflight` queue polls, so it can stop at a
    /// breakpoint or behind another request; it books its result in `acct`.
    pub fn into_async(
        self,
        node: Option<NodeRef>,
        acct: Option<Box<dyn Accounting>>,
    ) -> Box<dyn AsyncRequest> {
        let (op, buf) = match &self.op {
            AioOp::Read { len } => {
                let buf = usize::try_from(*len)
                    .ok()
                    .and_then(|n| {
                        let mut b = Vec::new();
                        b.try_reserve_exact(n).ok()?;
                        b.resize(n, 0xab);
                        Some(b)
                    })
                    .unwrap_or_default();
                (InflightOp::Read(ReadOp::new(self.offset)), buf)
            }
            AioOp::Write { fua, .. } => (
                InflightOp::Write(WriteOp::new(self.offset, ReqKind::Write { fua: *fua })),
                Vec::new(),
            ),
            AioOp::WriteZeroes { len, unmap, .. } => (
                InflightOp::Write(WriteOp::new(
                    self.offset,
                    ReqKind::WriteZeroes {
                        len: *len,
                        may_unmap: *unmap,
                    },
                )),
                Vec::new(),
            ),
        };
        Box::new(AioInflight {
            node,
            req: Some(self),
            op,
            buf,
            started: false,
            acct,
        })
    }
}

/// The node's part of an aio request in flight.
enum InflightOp {
    Read(ReadOp),
    Write(WriteOp),
}

/// An aio request in the `Inflight` queue.
struct AioInflight {
    node: Option<NodeRef>,
    /// Taken when the request completes.
    req: Option<AioRequest>,
    op: InflightOp,
    /// Where a read lands.
    buf: Vec<u8>,
    /// The backend's checks passed and the node's request began.
    started: bool,
    acct: Option<Box<dyn Accounting>>,
}

impl AioInflight {
    /// The backend's checks, as `execute` makes them; Err ends the request.
    fn precheck(&self, req: &AioRequest) -> Result<(), Errno> {
        let dev = Device::new(self.node.as_ref());
        let len = match &req.op {
            AioOp::Read { len } | AioOp::WriteZeroes { len, .. } => *len,
            AioOp::Write { data, .. } => data.len() as u64,
        };
        dev.precheck(req.offset, len)?;
        if matches!(req.op, AioOp::Read { .. }) && self.buf.len() as u64 != len {
            return Err(libc::ENOMEM);
        }
        Ok(())
    }

    /// Polls the node's request; None while it is stopped.
    fn poll_node(&mut self, req: &AioRequest) -> Option<Result<Vec<u8>, Errno>> {
        let Some(node) = &self.node else {
            return Some(Err(libc::ENOMEDIUM));
        };
        let mut n = lock(node);
        let r = match (&mut self.op, &req.op) {
            (InflightOp::Read(op), _) => n.poll_read(op, &mut self.buf),
            (InflightOp::Write(op), AioOp::Write { data, .. }) => n.poll_write(op, data),
            (InflightOp::Write(op), _) => n.poll_write(op, &[]),
        };
        let r = match r {
            Poll::Pending => return None,
            Poll::Ready(r) => r.map_err(|e| e.errno_value()),
        };
        // A write-zeroes with FUA flushes afterwards, as `execute` does.
        let r = match &req.op {
            AioOp::WriteZeroes { fua: true, .. } => {
                r.and_then(|_| n.flush().map_err(|e| e.errno_value()))
            }
            _ => r,
        };
        Some(r.map(|_| std::mem::take(&mut self.buf)))
    }
}

impl AsyncRequest for AioInflight {
    fn poll(&mut self) -> Poll<String> {
        let Some(req) = self.req.take() else {
            return Poll::Ready(String::new());
        };
        let result = if !self.started {
            self.started = true;
            match self.precheck(&req) {
                Ok(()) => self.poll_node(&req),
                Err(e) => Some(Err(e)),
            }
        } else {
            self.poll_node(&req)
        };
        let Some(result) = result else {
            self.req = Some(req);
            return Poll::Pending;
        };
        let done = req.complete(result);
        if let (Some(a), Some(ev)) = (self.acct.as_mut(), done.acct) {
            a.account(ev);
        }
        Poll::Ready(done.text)
    }

    fn node(&self) -> Option<NodeRef> {
        self.node.clone()
    }
}

/// Takes aio requests instead of running them at once.
pub trait AioSubmit: Send {
    /// Queues a request for `node`; the submitter executes it, completes it
    /// and prints `AioDone::text` when it is allowed to run.
    fn submit(&mut self, node: &NodeRef, req: AioRequest);
    /// Runs every queued request to completion, appending their texts to `out`.
    fn drain(&mut self, out: &mut String);
}
