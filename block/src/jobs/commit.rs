//! The intermediate commit job (block-commit with a top below the active
//! layer): copies what `top` and the layers between it and `base` allocate
//! into `base`, then the overlay above `top` takes `base` as its backing file
//! and the committed layers leave the chain. Committing the active layer is
//! a mirror (see `mirror::start_active_commit`).

use crate::error::{BlockError, BlockResult};
use crate::graph::BlockGraph;
use crate::jobs::copy::{copy_range, WriteMode};
use crate::jobs::job::{JobCore, JobDriver, JobIoError, JobType, Progress};
use crate::node::{lock, NodeRef};

/// Bytes one step copies at most.
const STEP_BYTES: u64 = 1 << 20;

pub struct CommitJob {
    top: NodeRef,
    base: NodeRef,
    /// The node whose backing is `top`.
    overlay: NodeRef,
    /// Backing file name written into the overlay.
    backing_file: String,
    base_was_read_only: bool,
    overlay_was_read_only: bool,
    pos: u64,
    len: u64,
    buf: Vec<u8>,
}

/// Starts committing `top` into `base`; `overlay` is `top`'s parent.
pub fn start(
    core: &mut JobCore,
    top: NodeRef,
    base: NodeRef,
    overlay: NodeRef,
    backing_file: Option<String>,
) -> BlockResult<CommitJob> {
    let len = lock(&top).length()?;
    let base_was_read_only = lock(&base).is_read_only();
    let overlay_was_read_only = lock(&overlay).is_read_only();
    lock(&base).set_read_only(false)?;
    if let Err(e) = lock(&overlay).set_read_only(false) {
        if base_was_read_only {
            let _ = lock(&base).set_read_only(true);
        }
        return Err(e);
    }
    let grown = (|| -> BlockResult<()> {
        let mut b = lock(&base);
        if b.length()? < len {
            b.truncate(len)?;
        }
        Ok(())
    })();
    let job = CommitJob {
        backing_file: backing_file.unwrap_or_else(|| lock(&base).filename().to_string()),
        top,
        base,
        overlay,
        base_was_read_only,
        overlay_was_read_only,
        pos: 0,
        len,
        buf: Vec::new(),
    };
    if let Err(e) = grown {
        job.restore_flags();
        return Err(e);
    }
    core.len = len;
    Ok(job)
}

impl CommitJob {
    fn restore_flags(&self) {
        if self.base_was_read_only {
            let _ = lock(&self.base).set_read_only(true);
        }
        if self.overlay_was_read_only {
            let _ = lock(&self.overlay).set_read_only(true);
        }
    }
}

impl JobDriver for CommitJob {
    fn kind(&self) -> JobType {
        JobType::Commit
    }

    fn step(&mut self, core: &mut JobCore) -> Result<Progress, JobIoError> {
        if self.pos >= self.len {
            return Ok(Progress::Finished);
        }
        let want = (self.len - self.pos).min(core.step_budget(STEP_BYTES, 65536));
        let (alloc, n) = lock(&self.top)
            .is_allocated_above(Some(&self.base), self.pos, want)
            .map_err(JobIoError::read)?;
        let n = n.clamp(1, want);
        if alloc {
            copy_range(
                &self.top,
                &self.base,
                self.pos,
                n,
                &mut self.buf,
                WriteMode::default(),
            )?;
        }
        self.pos += n;
        core.offset = self.pos;
        Ok(Progress::Worked(if alloc { n } else { 0 }))
    }

    fn finish(
        &mut self,
        _core: &mut JobCore,
        graph: &mut BlockGraph,
        ok: bool,
    ) -> Result<(), BlockError> {
        let mut r = lock(&self.base).flush();
        if ok && r.is_ok() {
            let fmt = lock(&self.base).driver_name().to_string();
            r = lock(&self.overlay).change_backing_file(Some(&self.backing_file), Some(&fmt));
            if r.is_ok() {
                r = graph.set_backing(&self.overlay, Some(self.base.clone()));
            }
        }
        self.restore_flags();
        r
    }

    fn nodes(&self) -> Vec<NodeRef> {
        vec![self.top.clone(), self.base.clone(), self.overlay.clone()]
    }
}

/// HMP `commit` (bdrv_commit): synchronously copies what the top layer of
/// `top` allocates into its backing node. Errors carry QEMU's errno.
pub fn commit_sync(top: &NodeRef) -> BlockResult<()> {
    let backing = lock(top)
        .backing()
        .ok_or_else(|| BlockError::errno("commit", libc::ENOTSUP))?;
    let was_ro = lock(&backing).is_read_only();
    lock(&backing)
        .set_read_only(false)
        .map_err(|_| BlockError::errno("commit", libc::EACCES))?;
    let r = (|| -> BlockResult<()> {
        let len = lock(top).length()?;
        {
            let mut b = lock(&backing);
            if b.length()? < len {
                b.truncate(len)?;
            }
        }
        let mut pos = 0;
        let mut buf = Vec::new();
        while pos < len {
            let want = (len - pos).min(STEP_BYTES);
            let e = lock(top).block_status(pos, want)?;
            let n = e.len.clamp(1, want);
            if e.allocated {
                copy_range(top, &backing, pos, n, &mut buf, WriteMode::default())
                    .map_err(|e| e.err)?;
            }
            pos += n;
        }
        lock(&backing).flush()
    })();
    if was_ro {
        let _ = lock(&backing).set_read_only(true);
    }
    r
}
