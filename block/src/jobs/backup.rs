//! The backup job (drive-backup, blockdev-backup): copies the source as it
//! was when the job started to a target. A copy-before-write hook on the
//! source saves every cluster's old contents to the target before a write
//! changes it, so the target is a point-in-time image while writes go on.
//! Sync modes: full, top (only what the top layer allocates), none (only what
//! writes are about to change, until cancelled) and incremental (what a dirty
//! bitmap marks; the bitmap is frozen for the job and cleared only when the
//! job succeeds).

use std::sync::{Arc, Mutex};

use crate::error::{BlockError, BlockResult};
use crate::graph::BlockGraph;
use crate::jobs::copy::{copy, read_source, write_target, Source, Target, WriteMode};
use crate::jobs::job::{JobCore, JobDriver, JobIoError, JobType, Progress};
use crate::node::{lock, BeforeWrite, Node, NodeRef};

/// `MirrorSyncMode` as backup uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Full,
    Top,
    None,
    Incremental,
}

impl SyncMode {
    pub fn parse(s: &str) -> Option<SyncMode> {
        Some(match s {
            "full" => SyncMode::Full,
            "top" => SyncMode::Top,
            "none" => SyncMode::None,
            "incremental" => SyncMode::Incremental,
            _ => return None,
        })
    }
}

/// Smallest unit backup copies (QEMU's BACKUP_CLUSTER_SIZE_DEFAULT).
pub const BACKUP_CLUSTER: u64 = 64 * 1024;
/// Clusters one job step copies at most.
const CLUSTERS_PER_STEP: u64 = 64;

/// Which clusters already hold their point-in-time data on the target.
struct Copied {
    words: Vec<u64>,
}

impl Copied {
    fn new(clusters: u64) -> Copied {
        Copied {
            words: vec![0; clusters.div_ceil(64) as usize],
        }
    }

    fn get(&self, c: u64) -> bool {
        self.words
            .get((c / 64) as usize)
            .is_some_and(|w| w & (1 << (c % 64)) != 0)
    }

    fn set(&mut self, c: u64) {
        if let Some(w) = self.words.get_mut((c / 64) as usize) {
            *w |= 1 << (c % 64);
        }
    }
}

/// The copy-before-write state shared by the hook and the job.
pub struct CbwState {
    target: NodeRef,
    cluster: u64,
    len: u64,
    mode: WriteMode,
    copied: Mutex<Copied>,
    /// Bytes the hook copied (reported as job progress).
    hook_bytes: Mutex<u64>,
}

impl CbwState {
    fn is_copied(&self, c: u64) -> bool {
        match self.copied.lock() {
            Ok(g) => g.get(c),
            Err(p) => p.into_inner().get(c),
        }
    }

    fn mark_copied(&self, c: u64) {
        match self.copied.lock() {
            Ok(mut g) => g.set(c),
            Err(p) => p.into_inner().set(c),
        }
    }

    fn cluster_range(&self, c: u64) -> (u64, u64) {
        let off = c * self.cluster;
        (off, self.cluster.min(self.len.saturating_sub(off)))
    }
}

struct CbwHook(Arc<CbwState>);

impl BeforeWrite for CbwHook {
    fn before_write(&self, node: &mut Node, offset: u64, len: u64) -> BlockResult<()> {
        let s = &self.0;
        if len == 0 || offset >= s.len {
            return Ok(());
        }
        let first = offset / s.cluster;
        let last = offset.saturating_add(len - 1).min(s.len - 1) / s.cluster;
        let mut buf = Vec::new();
        for c in first..=last {
            if s.is_copied(c) {
                continue;
            }
            let (off, n) = s.cluster_range(c);
            copy(
                Source::Locked(&mut *node),
                Target::Node(&s.target),
                off,
                n,
                &mut buf,
                s.mode,
            )
            .map_err(|e| e.err)?;
            s.mark_copied(c);
            if let Ok(mut b) = s.hook_bytes.lock() {
                *b += n;
            }
        }
        Ok(())
    }
}

/// True when `node` is in `top`'s backing chain.
fn backing_chain_holds(top: &NodeRef, node: &NodeRef) -> bool {
    let mut cur = lock(top).backing();
    while let Some(b) = cur {
        if Arc::ptr_eq(&b, node) {
            return true;
        }
        cur = lock(&b).backing();
    }
    false
}

/// Arguments of a backup job once the monitor resolved them.
pub struct BackupParams {
    pub sync: SyncMode,
    /// The frozen bitmap for incremental sync.
    pub bitmap: Option<String>,
    pub compress: bool,
    /// The target was opened by the command (drive-backup) and is closed at the end.
    pub owned_target: bool,
}

pub struct BackupJob {
    source: NodeRef,
    target: NodeRef,
    state: Arc<CbwState>,
    sync: SyncMode,
    bitmap: Option<String>,
    owned_target: bool,
    /// The target's backing chain holds the source (image fleecing): a
    /// target write may read the source, so the job must not hold it locked.
    target_reads_source: bool,
    next_cluster: u64,
    buf: Vec<u8>,
}

/// Starts a backup: checks, freezes the bitmap, installs the hook. `core.len`
/// is set here.
pub fn start(
    core: &mut JobCore,
    source: NodeRef,
    target: NodeRef,
    p: BackupParams,
) -> BlockResult<BackupJob> {
    if Arc::ptr_eq(&source, &target) {
        return Err(BlockError::Generic(
            "Source and target cannot be the same".into(),
        ));
    }
    let compress_cluster = if p.compress {
        let t = lock(&target);
        if t.driver_name() != "qcow2" {
            return Err(BlockError::Generic(format!(
                "Compression is not supported for this drive {}",
                t.name()
            )));
        }
        t.cluster_size()
    } else {
        None
    };
    match (p.sync, &p.bitmap) {
        (SyncMode::Incremental, None) => {
            return Err(BlockError::Generic(
                "must provide a valid bitmap name for \"incremental\" sync mode".into(),
            ))
        }
        (SyncMode::Incremental, Some(_)) => {}
        (s, Some(_)) => {
            return Err(BlockError::Generic(format!(
            "a sync_bitmap was provided to backup_run, but received an incompatible sync_mode ({})",
            match s {
                SyncMode::Full => "full",
                SyncMode::Top => "top",
                _ => "none",
            }
        )))
        }
        _ => {}
    }
    let len = lock(&source).length().map_err(|e| {
        BlockError::Generic(format!(
            "unable to get length for '{}': {}",
            core.id,
            e.strerror()
        ))
    })?;
    let target_cluster = lock(&target).cluster_size().unwrap_or(0);
    let cluster = BACKUP_CLUSTER.max(target_cluster);
    if let Some(name) = &p.bitmap {
        lock(&source)
            .tracking_mut()
            .bitmaps
            .lookup_mut(name)?
            .create_successor()?;
    }
    let state = Arc::new(CbwState {
        target: target.clone(),
        cluster,
        len,
        mode: WriteMode {
            compress_cluster,
            unmap: true,
        },
        copied: Mutex::new(Copied::new(len.div_ceil(cluster))),
        hook_bytes: Mutex::new(0),
    });
    lock(&source).set_before_write(Some(Arc::new(CbwHook(state.clone()))));
    let target_reads_source = backing_chain_holds(&target, &source);
    core.len = len;
    Ok(BackupJob {
        source,
        target,
        state,
        sync: p.sync,
        bitmap: p.bitmap,
        owned_target: p.owned_target,
        target_reads_source,
        next_cluster: 0,
        buf: Vec::new(),
    })
}

impl BackupJob {
    /// Whether the job itself must copy cluster `c`.
    fn wanted(&self, c: u64) -> Result<bool, JobIoError> {
        let (off, n) = self.state.cluster_range(c);
        match self.sync {
            SyncMode::Full => Ok(true),
            SyncMode::None => Ok(false),
            SyncMode::Top => {
                let mut g = lock(&self.source);
                let mut pos = off;
                while pos < off + n {
                    let e = g
                        .block_status(pos, off + n - pos)
                        .map_err(JobIoError::read)?;
                    if e.allocated {
                        return Ok(true);
                    }
                    pos += e.len.max(1);
                }
                Ok(false)
            }
            SyncMode::Incremental => {
                let g = lock(&self.source);
                let name = self.bitmap.as_deref().unwrap_or("");
                Ok(g.tracking()
                    .bitmaps
                    .get(name)
                    .and_then(|b| b.dirty_ranges(off).next())
                    .is_some_and(|(d, _)| d < off + n))
            }
        }
    }

    /// First cluster at or after `c` an incremental backup has to look at.
    fn next_dirty_cluster(&self, c: u64) -> u64 {
        let g = lock(&self.source);
        let name = self.bitmap.as_deref().unwrap_or("");
        let off = c * self.state.cluster;
        match g
            .tracking()
            .bitmaps
            .get(name)
            .and_then(|b| b.dirty_ranges(off).next())
        {
            Some((d, _)) => (d / self.state.cluster).max(c),
            None => u64::MAX,
        }
    }
}

impl JobDriver for BackupJob {
    fn kind(&self) -> JobType {
        JobType::Backup
    }

    fn step(&mut self, core: &mut JobCore) -> Result<Progress, JobIoError> {
        let clusters = self.state.len.div_ceil(self.state.cluster);
        if self.sync == SyncMode::None {
            // Only the hook copies; the job lives until it is cancelled.
            core.offset = self.hook_progress();
            return Ok(Progress::Idle);
        }
        if self.sync == SyncMode::Incremental {
            self.next_cluster = self.next_dirty_cluster(self.next_cluster);
        }
        if self.next_cluster >= clusters {
            core.offset = core.len;
            return Ok(Progress::Finished);
        }
        let mut done = 0u64;
        let cs = self.state.cluster;
        let per_step = core.step_budget(CLUSTERS_PER_STEP * cs, cs) / cs;
        let end = (self.next_cluster + per_step.max(1)).min(clusters);
        while self.next_cluster < end {
            let c = self.next_cluster;
            if self.state.is_copied(c) || !self.wanted(c)? {
                self.next_cluster += 1;
                continue;
            }
            // One request for the whole run of clusters still to copy.
            let mut e = c + 1;
            while e < end && !self.state.is_copied(e) && self.wanted(e)? {
                e += 1;
            }
            let off = c * self.state.cluster;
            let n = (e * self.state.cluster).min(self.state.len) - off;
            if self.target_reads_source {
                // The data read is the data written: a guest write between
                // the two finds the clusters not yet copied and saves them first.
                self.buf.resize(n as usize, 0);
                read_source(&self.source, off, &mut self.buf)?;
                write_target(&self.state.target, off, &self.buf, self.state.mode)?;
            } else {
                // The source stays locked from looking at the range to writing
                // it, so the copy-before-write hook cannot slip in between.
                copy(
                    Source::Locked(&mut lock(&self.source)),
                    Target::Node(&self.state.target),
                    off,
                    n,
                    &mut self.buf,
                    self.state.mode,
                )?;
            }
            for k in c..e {
                self.state.mark_copied(k);
            }
            done += n;
            self.next_cluster = e;
        }
        core.offset = (self.next_cluster * self.state.cluster).min(core.len);
        Ok(Progress::Worked(done.max(1)))
    }

    fn finish(
        &mut self,
        _core: &mut JobCore,
        graph: &mut BlockGraph,
        ok: bool,
    ) -> Result<(), BlockError> {
        let mut result = lock(&self.target).flush();
        {
            let mut src = lock(&self.source);
            src.set_before_write(None);
            if let Some(name) = &self.bitmap {
                if let Ok(b) = src.tracking_mut().bitmaps.lookup_mut(name) {
                    let r = if ok && result.is_ok() {
                        b.abdicate()
                    } else {
                        b.reclaim()
                    };
                    result = result.and(r);
                }
            }
        }
        if self.owned_target {
            let name = lock(&self.target).name().to_string();
            let _ = graph.remove_node(&name);
        }
        result
    }

    fn nodes(&self) -> Vec<NodeRef> {
        vec![self.source.clone(), self.target.clone()]
    }
}

impl BackupJob {
    fn hook_progress(&self) -> u64 {
        self.state.hook_bytes.lock().map(|b| *b).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobList;
    use serde_json::json;

    fn null_node(g: &mut BlockGraph, name: &str, size: u64) -> NodeRef {
        let o = json!({"driver": "null-co", "node-name": name, "size": size,
                       "read-zeroes": true});
        g.open(o.as_object().unwrap()).unwrap()
    }

    fn qcow2_node(g: &mut BlockGraph, dir: &std::path::Path, name: &str, size: u64) -> NodeRef {
        let path = dir.join(format!("{name}.qcow2"));
        let path = path.to_str().unwrap();
        crate::create_image("qcow2", path, Some(size), &Default::default()).unwrap();
        let o = json!({"driver": "qcow2", "node-name": name,
                       "file": {"driver": "file", "filename": path}});
        g.open(o.as_object().unwrap()).unwrap()
    }

    fn run_to_end(jobs: &mut JobList, g: &mut BlockGraph, id: &str) {
        for _ in 0..100_000 {
            if jobs.step(id, g) == crate::jobs::Step::Done {
                return;
            }
        }
        panic!("job did not finish");
    }

    fn plain(sync: SyncMode) -> BackupParams {
        BackupParams {
            sync,
            bitmap: None,
            compress: false,
            owned_target: false,
        }
    }

    /// Image fleecing: a target backed by the source, both 1 MiB + 4 KiB
    /// (a partial last cluster), the source's last 4 KiB holding 3s.
    fn fleecing(tag: &str) -> (std::path::PathBuf, BlockGraph, NodeRef, NodeRef) {
        let dir = tmpdir(tag);
        let mut g = BlockGraph::new();
        let size = (1 << 20) + 4096;
        let src = qcow2_node(&mut g, &dir, "src", size);
        let dst = qcow2_node(&mut g, &dir, "dst", size);
        g.set_backing(&dst, Some(src.clone())).unwrap();
        lock(&src).write(1 << 20, &[3u8; 4096], false).unwrap();
        (dir, g, src, dst)
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rqemu-backup-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_during_backup_leave_the_point_in_time_image_on_the_target() {
        let dir = tmpdir("pit");
        let mut g = BlockGraph::new();
        let src = qcow2_node(&mut g, &dir, "src", 4 << 20);
        let dst = qcow2_node(&mut g, &dir, "dst", 4 << 20);
        lock(&src).write(3 << 20, &[7u8; 4096], false).unwrap();
        let mut jobs = JobList::new();
        let mut core = JobCore::new("j".into(), src.clone(), 0);
        let p = plain(SyncMode::Full);
        let job = start(&mut core, src.clone(), dst.clone(), p).unwrap();
        jobs.add(core, Box::new(job));

        jobs.step("j", &mut g);
        lock(&src).write(3 << 20, &[9u8; 4096], false).unwrap();
        run_to_end(&mut jobs, &mut g, "j");

        let mut buf = vec![0u8; 4096];
        lock(&dst).read(3 << 20, &mut buf).unwrap();
        assert_eq!(buf, vec![7u8; 4096]);
        let evs = jobs.take_events();
        assert!(matches!(
            &evs[..],
            [crate::jobs::JobEvent::Completed { error: None, .. }]
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn backup_into_a_target_backed_by_the_source_finishes_its_partial_last_cluster() {
        // Image fleecing: the target reads through to the source, and the
        // last cluster is partial, so writing it reads the source.
        let (dir, mut g, src, dst) = fleecing("fleece");
        let mut jobs = JobList::new();
        let mut core = JobCore::new("j".into(), src.clone(), 0);
        let p = plain(SyncMode::Full);
        let job = start(&mut core, src.clone(), dst.clone(), p).unwrap();
        jobs.add(core, Box::new(job));

        run_to_end(&mut jobs, &mut g, "j");

        lock(&src).write(1 << 20, &[4u8; 4096], false).unwrap();
        let mut buf = vec![0u8; 4096];
        lock(&dst).read(1 << 20, &mut buf).unwrap();
        assert_eq!(buf, vec![3u8; 4096]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_guest_write_to_the_partial_last_cluster_of_a_fleecing_source_does_not_deadlock() {
        // sync=none: only copy-before-write fills the target, and it runs
        // inside the source's write with the source locked, while the
        // target's backing is that same source.
        let (dir, _graph, src, dst) = fleecing("fleece-cbw");
        let mut core = JobCore::new("j".into(), src.clone(), 0);
        let p = plain(SyncMode::None);
        let _job = start(&mut core, src.clone(), dst.clone(), p).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = src.clone();
        std::thread::spawn(move || {
            let r = lock(&writer).write(1 << 20, &[4u8; 512], false);
            let _ = tx.send(r.is_ok());
        });
        let done = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(done, Ok(true), "the guest write finished");
        let mut buf = vec![0u8; 4096];
        lock(&dst).read(1 << 20, &mut buf).unwrap();
        assert_eq!(buf, vec![3u8; 4096], "the target kept the old data");
        lock(&src).read(1 << 20, &mut buf).unwrap();
        assert_eq!(&buf[..512], &[4u8; 512][..]);
        assert_eq!(&buf[512..], &[3u8; 3584][..]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn incremental_backup_copies_only_dirty_clusters_and_clears_the_bitmap() {
        let mut g = BlockGraph::new();
        let dir = tmpdir("inc");
        let src = qcow2_node(&mut g, &dir, "src", 1 << 20);
        let dst = qcow2_node(&mut g, &dir, "dst", 1 << 20);
        lock(&src).dirty_bitmap_add("b", Some(65536)).unwrap();
        lock(&src).write(131072, &[1u8; 512], false).unwrap();
        let mut jobs = JobList::new();
        let mut core = JobCore::new("j".into(), src.clone(), 0);
        let p = BackupParams {
            sync: SyncMode::Incremental,
            bitmap: Some("b".into()),
            compress: false,
            owned_target: false,
        };
        let job = start(&mut core, src.clone(), dst.clone(), p).unwrap();
        jobs.add(core, Box::new(job));

        run_to_end(&mut jobs, &mut g, "j");

        let alloc0 = lock(&dst).block_status(0, 65536).unwrap().allocated;
        let alloc2 = lock(&dst).block_status(131072, 65536).unwrap().allocated;
        assert!(!alloc0);
        assert!(alloc2);
        assert_eq!(
            lock(&src)
                .tracking()
                .bitmaps
                .get("b")
                .unwrap()
                .count_bytes(),
            0
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cancelled_incremental_backup_keeps_the_bitmap_dirty() {
        let mut g = BlockGraph::new();
        let src = null_node(&mut g, "src", 1 << 20);
        let dst = null_node(&mut g, "dst", 1 << 20);
        lock(&src).dirty_bitmap_add("b", Some(65536)).unwrap();
        lock(&src).write(0, &[1u8; 512], false).unwrap();
        let mut jobs = JobList::new();
        let mut core = JobCore::new("j".into(), src.clone(), 0);
        let p = BackupParams {
            sync: SyncMode::Incremental,
            bitmap: Some("b".into()),
            compress: false,
            owned_target: false,
        };
        let job = start(&mut core, src.clone(), dst, p).unwrap();
        jobs.add(core, Box::new(job));
        lock(&src).write(524288, &[1u8; 512], false).unwrap();

        jobs.cancel("j", false).unwrap();
        run_to_end(&mut jobs, &mut g, "j");

        let b = lock(&src);
        let bm = b.tracking().bitmaps.get("b").unwrap();
        assert_eq!(bm.count_bytes(), 2 * 65536);
        assert!(!bm.is_frozen());
    }
}
