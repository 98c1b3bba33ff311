//! The mirror job (drive-mirror, blockdev-mirror) and active commit, which
//! is a mirror from the active layer into a base node of its own chain.
//! An anonymous dirty bitmap on the source records every write; the job
//! first marks what the sync mode wants copied, then copies dirty ranges
//! until none are left (READY), and keeps copying new writes until
//! block-job-complete, when the target takes the source's place (pivot).

use std::sync::Arc;

use crate::error::{BlockError, BlockResult};
use crate::graph::BlockGraph;
use crate::jobs::copy::{copy_range, WriteMode};
use crate::jobs::job::{JobCore, JobDriver, JobIoError, JobType, Progress};
use crate::node::{lock, NodeRef};

/// `MirrorSyncMode` without incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorSync {
    Full,
    Top,
    None,
}

/// What the target's backing is after a pivot (QEMU's BlockMirrorBackingMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackingMode {
    /// The target takes the source's chain: its base (top), the source
    /// itself (none), or nothing (full).
    SourceChain,
    /// The target keeps the chain it was opened with.
    Leave,
}

/// Default copy buffer (QEMU's DEFAULT_MIRROR_BUF_SIZE).
pub const DEFAULT_BUF_SIZE: u64 = 16 << 20;
/// Most bytes one step copies.
const STEP_BYTES: u64 = 4 << 20;
/// Extents the initial scan looks at per step.
const SCAN_EXTENTS: usize = 256;

/// Arguments of a mirror once the monitor resolved them.
pub struct MirrorParams {
    pub sync: MirrorSync,
    /// 0 picks the default from the target's cluster size.
    pub granularity: u64,
    /// 0 picks the default.
    pub buf_size: u64,
    pub unmap: bool,
    pub backing_mode: BackingMode,
    /// The node the target replaces on completion (default: the source).
    pub replaces: Option<NodeRef>,
    /// The target was opened by the command and is closed if it does not pivot.
    pub owned_target: bool,
}

/// Extra state of an active commit.
struct ActiveCommit {
    /// Base was read-only before the job.
    base_was_read_only: bool,
}

pub struct MirrorJob {
    source: NodeRef,
    target: NodeRef,
    /// For top: the source's backing, never copied.
    base: Option<NodeRef>,
    sync: MirrorSync,
    granularity: u64,
    /// Copy unit: the larger of granularity and the target's cluster size.
    align: u64,
    chunk: u64,
    unmap: bool,
    backing_mode: BackingMode,
    replaces: Option<NodeRef>,
    owned_target: bool,
    /// Scan position; None once the initial marking is done.
    scan: Option<u64>,
    /// Where the next copy looks first (so one hot range cannot starve the rest).
    cursor: u64,
    len: u64,
    zero_init: bool,
    commit: Option<ActiveCommit>,
    buf: Vec<u8>,
}

/// The default granularity for a target (cluster size within 4K..64K).
fn default_granularity(target: &NodeRef) -> u64 {
    match lock(target).cluster_size() {
        Some(c) => c.clamp(4096, 65536),
        None => 65536,
    }
}

fn install_bitmap(source: &NodeRef, granularity: u64, len: u64) -> BlockResult<()> {
    let mut s = lock(source);
    s.tracking_mut().bitmaps.add_anonymous(granularity, len)?;
    Ok(())
}

/// Starts a mirror from `source` to `target`.
pub fn start(
    core: &mut JobCore,
    source: NodeRef,
    target: NodeRef,
    p: MirrorParams,
) -> BlockResult<MirrorJob> {
    if Arc::ptr_eq(&source, &target) {
        return Err(BlockError::Generic("Can't mirror node into itself".into()));
    }
    if p.buf_size > 0 && p.buf_size < p.granularity {
        return Err(BlockError::Generic("Invalid parameter 'buf-size'".into()));
    }
    let granularity = if p.granularity == 0 {
        default_granularity(&target)
    } else {
        p.granularity
    };
    let buf_size = if p.buf_size == 0 {
        DEFAULT_BUF_SIZE
    } else {
        p.buf_size
    };
    let len = lock(&source).length()?;
    let sync = match p.sync {
        MirrorSync::Top if lock(&source).backing().is_none() => MirrorSync::Full,
        s => s,
    };
    let base = match sync {
        MirrorSync::Top => lock(&source).backing(),
        _ => None,
    };
    let zero_init = lock(&target).has_zero_init() && lock(&target).backing().is_none();
    let align = granularity.max(lock(&target).cluster_size().unwrap_or(0));
    install_bitmap(&source, granularity, len)?;
    core.len = len;
    Ok(MirrorJob {
        source,
        target,
        base,
        sync,
        granularity,
        align,
        chunk: buf_size.min(STEP_BYTES).max(granularity),
        unmap: p.unmap,
        backing_mode: p.backing_mode,
        replaces: p.replaces,
        owned_target: p.owned_target,
        scan: if sync == MirrorSync::None {
            None
        } else {
            Some(0)
        },
        cursor: 0,
        len,
        zero_init,
        commit: None,
        buf: Vec::new(),
    })
}

/// Starts an active commit of `top` (the active layer) into `base`; `base`
/// is reopened read-write and grown to `top`'s size when smaller.
pub fn start_active_commit(
    core: &mut JobCore,
    top: NodeRef,
    base: NodeRef,
) -> BlockResult<MirrorJob> {
    let base_was_read_only = lock(&base).is_read_only();
    lock(&base).set_read_only(false)?;
    let grow = (|| -> BlockResult<()> {
        let top_len = lock(&top).length()?;
        let mut b = lock(&base);
        if b.length()? < top_len {
            b.truncate(top_len)?;
        }
        Ok(())
    })();
    if let Err(e) = grow {
        if base_was_read_only {
            let _ = lock(&base).set_read_only(true);
        }
        return Err(e);
    }
    let p = MirrorParams {
        sync: MirrorSync::Top,
        granularity: 0,
        buf_size: 0,
        unmap: false,
        backing_mode: BackingMode::Leave,
        replaces: None,
        owned_target: false,
    };
    let mut job = start(core, top, base.clone(), p)?;
    // Everything above base is copied: the chain between is the "top".
    job.sync = MirrorSync::Top;
    job.base = Some(base);
    job.scan = Some(0);
    job.zero_init = false;
    job.commit = Some(ActiveCommit { base_was_read_only });
    Ok(job)
}

impl MirrorJob {
    fn with_bitmap<T>(
        &self,
        f: impl FnOnce(&mut crate::dirty_bitmap::DirtyBitmap) -> T,
    ) -> Option<T> {
        let mut s = lock(&self.source);
        let b = s
            .tracking_mut()
            .bitmaps
            .all_mut()
            .iter_mut()
            .find(|b| b.name().is_none() && !b.is_frozen())?;
        Some(f(b))
    }

    fn dirty_bytes(&self) -> u64 {
        self.with_bitmap(|b| b.count_bytes()).unwrap_or(0)
    }

    /// Marks part of the initial copy set; returns true when the scan is done.
    fn scan_step(&mut self, pos: u64) -> Result<bool, JobIoError> {
        let mut pos = pos;
        let mark_all = self.sync == MirrorSync::Full && !self.zero_init;
        for _ in 0..SCAN_EXTENTS {
            if pos >= self.len {
                self.scan = None;
                return Ok(true);
            }
            let want = (self.len - pos).min(1 << 30);
            let (alloc, n) = if mark_all {
                (true, want)
            } else {
                lock(&self.source)
                    .is_allocated_above(self.base.as_ref(), pos, want)
                    .map_err(JobIoError::read)?
            };
            let n = n.max(1).min(want);
            if alloc {
                self.with_bitmap(|b| b.set_range(pos, n));
            }
            pos += n;
        }
        self.scan = Some(pos);
        Ok(false)
    }

    /// The next dirty range to copy (at most one chunk), bits cleared.
    /// Ranges are widened to whole target clusters: a partial cluster
    /// write would make the target fill the rest from a backing file it may
    /// not have yet (QEMU's cow_bitmap does the same job).
    fn take_dirty(&mut self, chunk: u64) -> Option<(u64, u64)> {
        let cursor = self.cursor;
        let align = self.align;
        let len = self.len;
        self.with_bitmap(|b| {
            let r = b
                .dirty_ranges(cursor)
                .next()
                .or_else(|| b.dirty_ranges(0).next())?;
            if r.0 >= len {
                // Past the end the job started with (the device grew).
                b.reset_range(r.0, r.1);
                return Some((r.0, 0));
            }
            let n = r.1.min(chunk.max(align));
            let start = r.0 / align * align;
            let end = (r.0 + n).div_ceil(align).saturating_mul(align).min(len);
            b.reset_range(start, end - start);
            Some((start, end - start))
        })
        .flatten()
    }

    fn copy(&mut self, off: u64, n: u64) -> Result<(), JobIoError> {
        let mode = WriteMode {
            compress_cluster: None,
            unmap: self.unmap,
        };
        copy_range(&self.source, &self.target, off, n, &mut self.buf, mode)
    }

    fn remove_bitmap(&self) {
        let mut s = lock(&self.source);
        let bms = &mut s.tracking_mut().bitmaps;
        if let Some(i) = bms
            .all()
            .iter()
            .position(|b| b.name().is_none() && !b.is_frozen())
        {
            bms.remove_index(i);
        }
    }

    /// The target takes `old`'s place in every backend and parent.
    fn pivot(&self, graph: &mut BlockGraph) -> BlockResult<()> {
        if self.backing_mode == BackingMode::SourceChain {
            let backing = match self.sync {
                MirrorSync::None => Some(self.source.clone()),
                MirrorSync::Top => self.base.clone(),
                MirrorSync::Full => None,
            };
            graph.set_backing(&self.target, backing)?;
        }
        let old = self.replaces.clone().unwrap_or_else(|| self.source.clone());
        replace_node(graph, &old, &self.target)?;
        let name = lock(&old).name().to_string();
        if !graph.is_in_use(&old) {
            let _ = graph.remove_node(&name);
        }
        Ok(())
    }
}

/// Points every backend and parent that uses `old` at `new` instead.
pub fn replace_node(graph: &mut BlockGraph, old: &NodeRef, new: &NodeRef) -> BlockResult<()> {
    let names: Vec<String> = graph
        .backends()
        .iter()
        .filter(|b| b.root().is_some_and(|r| Arc::ptr_eq(&r, old)))
        .map(|b| b.name().to_string())
        .collect();
    for n in names {
        if let Some(b) = graph.backend_mut(&n) {
            b.remove_medium();
            b.insert_medium(new.clone())?;
        }
    }
    let parents: Vec<NodeRef> = graph
        .nodes()
        .iter()
        .filter(|p| !Arc::ptr_eq(p, new))
        .filter(|p| lock(p).backing().is_some_and(|b| Arc::ptr_eq(&b, old)))
        .cloned()
        .collect();
    for p in parents {
        graph.set_backing(&p, Some(new.clone()))?;
    }
    Ok(())
}

impl JobDriver for MirrorJob {
    fn kind(&self) -> JobType {
        if self.commit.is_some() {
            JobType::Commit
        } else {
            JobType::Mirror
        }
    }

    fn step(&mut self, core: &mut JobCore) -> Result<Progress, JobIoError> {
        if let Some(pos) = self.scan {
            self.scan_step(pos)?;
            core.len = core.offset + self.dirty_bytes();
            return Ok(Progress::Worked(0));
        }
        let chunk = core.step_budget(self.chunk, self.granularity);
        match self.take_dirty(chunk) {
            Some((off, n)) => {
                if let Err(e) = self.copy(off, n) {
                    self.with_bitmap(|b| b.set_range(off, n));
                    return Err(e);
                }
                self.cursor = off + n;
                core.offset += n;
                core.len = core.offset + self.dirty_bytes();
                Ok(Progress::Worked(n))
            }
            None if !core.ready => {
                if let Err(e) = lock(&self.target).flush() {
                    return Err(JobIoError::write(e));
                }
                Ok(Progress::Ready)
            }
            None if core.should_complete => {
                // A cancel after block-job-complete does not stop the pivot.
                core.cancelled = false;
                Ok(Progress::Finished)
            }
            None if core.cancelled => {
                // Synced: a cancel now leaves a consistent copy and counts
                // as a successful end, without the pivot.
                core.cancelled = false;
                Ok(Progress::Finished)
            }
            None => Ok(Progress::Idle),
        }
    }

    fn complete(&mut self, _core: &mut JobCore) -> Result<(), BlockError> {
        Ok(())
    }

    fn drains_on_cancel(&self) -> bool {
        true
    }

    fn finish(
        &mut self,
        core: &mut JobCore,
        graph: &mut BlockGraph,
        ok: bool,
    ) -> Result<(), BlockError> {
        self.remove_bitmap();
        let flushed = lock(&self.target).flush();
        let pivot = ok && core.should_complete && flushed.is_ok();
        let r = if pivot { self.pivot(graph) } else { flushed };
        if let Some(c) = &self.commit {
            if !(pivot && r.is_ok()) && c.base_was_read_only {
                let _ = lock(&self.target).set_read_only(true);
            }
        }
        if self.owned_target && !(pivot && r.is_ok()) {
            let name = lock(&self.target).name().to_string();
            let _ = graph.remove_node(&name);
        }
        r
    }

    fn nodes(&self) -> Vec<NodeRef> {
        vec![self.source.clone(), self.target.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobEvent, JobList, Step};
    use serde_json::json;

    fn qcow2_node(g: &mut BlockGraph, dir: &std::path::Path, name: &str, size: u64) -> NodeRef {
        let path = dir.join(format!("{name}.qcow2"));
        let path = path.to_str().unwrap();
        crate::create_image("qcow2", path, Some(size), &Default::default()).unwrap();
        let o = json!({"driver": "qcow2", "node-name": name,
                       "file": {"driver": "file", "filename": path}});
        g.open(o.as_object().unwrap()).unwrap()
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rqemu-mirror-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn params() -> MirrorParams {
        MirrorParams {
            sync: MirrorSync::Full,
            granularity: 0,
            buf_size: 0,
            unmap: true,
            backing_mode: BackingMode::SourceChain,
            replaces: None,
            owned_target: false,
        }
    }

    #[test]
    fn mirror_gets_ready_copies_later_writes_and_pivots_on_complete() {
        let dir = tmpdir("pivot");
        let mut g = BlockGraph::new();
        let src = qcow2_node(&mut g, &dir, "src", 2 << 20);
        let dst = qcow2_node(&mut g, &dir, "dst", 2 << 20);
        g.add_backend("drive0", Some(src.clone())).unwrap();
        lock(&src).write(65536, &[5u8; 4096], false).unwrap();
        let mut jobs = JobList::new();
        let mut core = JobCore::new("drive0".into(), src.clone(), 0);
        let job = start(&mut core, src.clone(), dst.clone(), params()).unwrap();
        jobs.add(core, Box::new(job));
        while !jobs.get("drive0").unwrap().core.ready {
            jobs.step("drive0", &mut g);
        }

        g.backend("drive0")
            .unwrap()
            .write(1 << 20, &[6u8; 512], false)
            .unwrap();
        jobs.complete("drive0").unwrap();
        while jobs.step("drive0", &mut g) != Step::Done {}

        let root = g.backend("drive0").unwrap().root().unwrap();
        assert!(Arc::ptr_eq(&root, &dst));
        let mut buf = vec![0u8; 512];
        lock(&dst).read(1 << 20, &mut buf).unwrap();
        assert_eq!(buf, vec![6u8; 512]);
        let evs = jobs.take_events();
        assert!(matches!(evs[0], JobEvent::Ready(_)));
        assert!(matches!(evs[1], JobEvent::Completed { error: None, .. }));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn complete_before_ready_is_refused() {
        let dir = tmpdir("notready");
        let mut g = BlockGraph::new();
        let src = qcow2_node(&mut g, &dir, "src", 1 << 20);
        let dst = qcow2_node(&mut g, &dir, "dst", 1 << 20);
        let mut jobs = JobList::new();
        let mut core = JobCore::new("m".into(), src.clone(), 0);
        let job = start(&mut core, src, dst, params()).unwrap();
        jobs.add(core, Box::new(job));

        let e = jobs.complete("m").unwrap_err();

        assert_eq!(
            e.to_string(),
            "The active block job 'm' cannot be completed"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
