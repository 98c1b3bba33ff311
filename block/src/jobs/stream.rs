//! The stream job (block-stream): copies into the active layer everything
//! its backing chain above `base` provides, then makes `base` the active
//! layer's backing file (none when the whole chain was streamed).

use crate::error::{BlockError, BlockResult};
use crate::graph::BlockGraph;
use crate::jobs::copy::{copy_range, WriteMode};
use crate::jobs::job::{JobCore, JobDriver, JobIoError, JobType, Progress};
use crate::node::{lock, NodeRef};

/// Bytes one step copies at most.
const STEP_BYTES: u64 = 1 << 20;

pub struct StreamJob {
    top: NodeRef,
    base: Option<NodeRef>,
    /// Backing file name written into `top` at the end.
    backing_file: Option<String>,
    pos: u64,
    len: u64,
    buf: Vec<u8>,
    /// Length of the range the current step works on.
    chunk: u64,
    /// First error skipped under on-error=ignore; the job ends with it and
    /// keeps its backing file.
    skipped: Option<i32>,
}

/// Starts streaming into `top` from its chain down to (not including) `base`.
pub fn start(
    core: &mut JobCore,
    top: NodeRef,
    base: Option<NodeRef>,
    backing_file: Option<String>,
) -> BlockResult<StreamJob> {
    let len = lock(&top).length()?;
    core.len = len;
    Ok(StreamJob {
        top,
        base,
        backing_file,
        pos: 0,
        len,
        buf: Vec::new(),
        chunk: 0,
        skipped: None,
    })
}

impl StreamJob {
    /// (copy?, length) for the range at `pos`.
    fn needs_copy(&self, pos: u64, want: u64) -> Result<(bool, u64), JobIoError> {
        let mut t = lock(&self.top);
        let e = t.block_status(pos, want).map_err(JobIoError::read)?;
        let n = e.len.clamp(1, want);
        if e.allocated {
            return Ok((false, n));
        }
        let Some(backing) = t.backing() else {
            return Ok((false, n));
        };
        drop(t);
        if self
            .base
            .as_ref()
            .is_some_and(|b| std::sync::Arc::ptr_eq(b, &backing))
        {
            return Ok((false, n));
        }
        let mut b = lock(&backing);
        let blen = b.length().map_err(JobIoError::read)?;
        if pos >= blen {
            return Ok((false, n));
        }
        let (alloc, m) = b
            .is_allocated_above(self.base.as_ref(), pos, n.min(blen - pos))
            .map_err(JobIoError::read)?;
        Ok((alloc, m.clamp(1, n)))
    }
}

impl JobDriver for StreamJob {
    fn kind(&self) -> JobType {
        JobType::Stream
    }

    fn step(&mut self, core: &mut JobCore) -> Result<Progress, JobIoError> {
        if self.pos >= self.len {
            return Ok(Progress::Finished);
        }
        let want = (self.len - self.pos).min(core.step_budget(STEP_BYTES, 65536));
        self.chunk = want;
        let (copy, n) = self.needs_copy(self.pos, want)?;
        self.chunk = n;
        if copy {
            // Zeroes from the chain must be written explicitly: without the
            // backing file they would read as whatever `top` had.
            let mode = WriteMode {
                compress_cluster: None,
                unmap: false,
            };
            copy_range(&self.top, &self.top, self.pos, n, &mut self.buf, mode)?;
        }
        self.pos += n;
        core.offset = self.pos;
        Ok(Progress::Worked(if copy { n } else { 0 }))
    }

    fn skip_failed(&mut self, core: &mut JobCore, errno: i32) -> bool {
        self.skipped.get_or_insert(errno);
        self.pos = (self.pos + self.chunk.max(1)).min(self.len);
        core.offset = self.pos;
        true
    }

    fn finish(
        &mut self,
        _core: &mut JobCore,
        graph: &mut BlockGraph,
        ok: bool,
    ) -> Result<(), BlockError> {
        if let Some(errno) = self.skipped {
            return Err(BlockError::errno("stream", errno));
        }
        if !ok {
            return Ok(());
        }
        let (name, fmt) = match &self.base {
            Some(b) => {
                let g = lock(b);
                (
                    Some(
                        self.backing_file
                            .clone()
                            .unwrap_or_else(|| g.filename().to_string()),
                    ),
                    Some(g.driver_name().to_string()),
                )
            }
            None => (None, None),
        };
        lock(&self.top).change_backing_file(name.as_deref(), fmt.as_deref())?;
        graph.set_backing(&self.top, self.base.clone())
    }

    fn nodes(&self) -> Vec<NodeRef> {
        let mut v = vec![self.top.clone()];
        v.extend(self.base.clone());
        v
    }
}
