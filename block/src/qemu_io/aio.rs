//! Asynchronous requests of aio_read/aio_write as values: what to do, and
//! what to print and account once it is done. Without a submitter they run
//! at once; with one (a throttled backend under a virtual clock, say) they
//! complete whenever the submitter lets them, and `aio_flush` drains them.

use std::time::Instant;

use super::device::{Device, Errno};
use super::hooks::AcctEvent;
use crate::node::NodeRef;

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
}

/// Takes aio requests instead of running them at once.
pub trait AioSubmit: Send {
    /// Queues a request for `node`; the submitter executes it, completes it
    /// and prints `AioDone::text` when it is allowed to run.
    fn submit(&mut self, node: &NodeRef, req: AioRequest);
    /// Runs every queued request to completion, appending their texts to `out`.
    fn drain(&mut self, out: &mut String);
}
