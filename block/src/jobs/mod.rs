//! Block jobs (QEMU's blockjob.c and block/{backup,mirror,commit,stream}.c as
//! main-loop state machines). `JobList` owns every running job; the main loop
//! calls `JobList::step` for one job at a time and schedules the next step as
//! the returned `Step` says. No threads, no coroutines: a step does bounded,
//! synchronous I/O. Jobs never call up into the process; they raise
//! `JobEvent`s that the monitor side turns into QMP events.

pub mod backup;
pub mod commit;
pub mod copy;
pub mod job;
pub mod mirror;
pub mod stream;

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::error::{BlockError, BlockResult};
use crate::graph::BlockGraph;
use crate::node::NodeRef;

pub use job::{
    ErrorAction, IoStatus, JobCore, JobDriver, JobEvent, JobInfo, JobIoError, JobStatus, JobType,
    OnError, Progress, Step,
};

/// How long a job with nothing to do (a synced mirror) sleeps between looks.
pub const IDLE_POLL_NS: u64 = 100_000_000;

/// Errors of the job control commands.
#[derive(Debug)]
pub enum JobCmdError {
    /// No job with that id (QMP class DeviceNotActive).
    NotActive(String),
    /// Anything else (GenericError).
    Generic(String),
}

impl std::fmt::Display for JobCmdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobCmdError::NotActive(m) | JobCmdError::Generic(m) => f.write_str(m),
        }
    }
}

/// One job: common state plus its kind-specific driver.
pub struct Job {
    pub core: JobCore,
    driver: Box<dyn JobDriver>,
    /// Waiting on a timer (rate limit or idle), so not busy.
    sleeping: bool,
    /// Grouped completion (transaction completion-mode=grouped): jobs of one
    /// group commit together, and one failing cancels the others.
    txn: Option<u64>,
    /// Finished its work; waits for the rest of its group.
    txn_done: bool,
}

impl Job {
    pub fn kind(&self) -> JobType {
        self.driver.kind()
    }

    /// BlockJobInfo as query-block-jobs shows it in 2.8.
    pub fn query(&self) -> Value {
        let c = &self.core;
        json!({
            "type": self.kind().as_str(),
            "device": c.id,
            "len": c.len,
            "offset": c.offset,
            "busy": !c.user_paused && !self.sleeping,
            "paused": c.user_paused,
            "speed": c.speed,
            "io-status": c.io_status.as_str(),
            "ready": c.ready,
        })
    }
}

/// Every job of the process.
pub struct JobList {
    jobs: Vec<Job>,
    events: Vec<JobEvent>,
    epoch: Instant,
    /// Source of wake epochs, unique over all jobs ever run (a stale timer
    /// of an ended job must not drive a new job with the same id).
    next_wake: u64,
    next_txn: u64,
}

impl Default for JobList {
    fn default() -> Self {
        JobList {
            jobs: Vec::new(),
            events: Vec::new(),
            epoch: Instant::now(),
            next_wake: 1,
            next_txn: 1,
        }
    }
}

/// QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'.
pub fn id_wellformed(id: &str) -> bool {
    let mut c = id.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic())
        && c.all(|x| x.is_ascii_alphanumeric() || "-._".contains(x))
}

impl JobList {
    pub fn new() -> JobList {
        JobList::default()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub fn ids(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.core.id.clone()).collect()
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.core.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.core.id == id)
    }

    /// The job using `node`, if any.
    pub fn job_of_node(&self, node: &NodeRef) -> Option<&Job> {
        self.jobs
            .iter()
            .find(|j| j.driver.nodes().iter().any(|n| Arc::ptr_eq(n, node)))
    }

    /// Op-blocker check: refuses a node that a job works on. `display` is the
    /// device or node name QEMU prints.
    pub fn check_node_free(&self, node: &NodeRef, display: &str) -> BlockResult<()> {
        match self.job_of_node(node) {
            Some(j) => Err(BlockError::Generic(format!(
                "Node '{}' is busy: block device is in use by block job: {}",
                display,
                j.kind().as_str()
            ))),
            None => Ok(()),
        }
    }

    /// block_job_create's id rules: `device` is the backend name of the node
    /// ("" when it has none).
    pub fn new_job_id(&self, requested: Option<&str>, device: &str) -> BlockResult<String> {
        let id = match requested {
            Some(id) => id,
            None if device.is_empty() => {
                return Err(BlockError::Generic(
                    "An explicit job ID is required for this node".into(),
                ))
            }
            None => device,
        };
        if !id_wellformed(id) {
            return Err(BlockError::Generic(format!("Invalid job ID '{}'", id)));
        }
        if self.get(id).is_some() {
            return Err(BlockError::Generic(format!(
                "Job ID '{}' already in use",
                id
            )));
        }
        Ok(id.to_string())
    }

    /// Adds a started job; the caller schedules its first step.
    pub fn add(&mut self, mut core: JobCore, driver: Box<dyn JobDriver>) {
        core.status = JobStatus::Running;
        core.wake_epoch = self.next_wake;
        self.next_wake += 1;
        self.jobs.push(Job {
            core,
            driver,
            sleeping: false,
            txn: None,
            txn_done: false,
        });
    }

    /// query-block-jobs.
    pub fn query(&self) -> Value {
        Value::Array(self.jobs.iter().map(Job::query).collect())
    }

    fn find_mut(&mut self, id: &str) -> Result<&mut Job, JobCmdError> {
        self.get_mut(id)
            .ok_or_else(|| JobCmdError::NotActive(format!("Block job '{}' not found", id)))
    }

    /// block-job-set-speed.
    pub fn set_speed(&mut self, id: &str, speed: i64) -> Result<(), JobCmdError> {
        let j = self.find_mut(id)?;
        if speed < 0 {
            return Err(JobCmdError::Generic("Invalid parameter 'speed'".into()));
        }
        j.core.speed = speed as u64;
        j.core.limit.set_speed(speed as u64);
        Ok(())
    }

    /// block-job-cancel.
    pub fn cancel(&mut self, id: &str, force: bool) -> Result<(), JobCmdError> {
        let j = self.find_mut(id)?;
        if j.core.user_paused && !force {
            return Err(JobCmdError::Generic(format!(
                "The block job for device '{}' is currently paused",
                id
            )));
        }
        j.core.cancelled = true;
        j.core.force |= force;
        j.core.io_status = IoStatus::Ok;
        Ok(())
    }

    /// block-job-pause (a second pause does nothing).
    pub fn pause(&mut self, id: &str) -> Result<(), JobCmdError> {
        let j = self.find_mut(id)?;
        j.core.user_paused = true;
        Ok(())
    }

    /// block-job-resume: also clears the io-status of a job stopped by an error.
    pub fn resume(&mut self, id: &str) -> Result<(), JobCmdError> {
        let j = self.find_mut(id)?;
        if !j.core.user_paused {
            return Ok(());
        }
        j.core.user_paused = false;
        j.core.io_status = IoStatus::Ok;
        Ok(())
    }

    /// block-job-complete.
    pub fn complete(&mut self, id: &str) -> Result<(), JobCmdError> {
        let j = self.find_mut(id)?;
        if !j.core.ready || j.core.should_complete || j.core.cancelled {
            return Err(JobCmdError::Generic(format!(
                "The active block job '{}' cannot be completed",
                id
            )));
        }
        j.driver
            .complete(&mut j.core)
            .map_err(|e| JobCmdError::Generic(e.to_string()))?;
        j.core.should_complete = true;
        Ok(())
    }

    /// A new completion group.
    pub fn new_txn(&mut self) -> u64 {
        self.next_txn += 1;
        self.next_txn
    }

    /// Puts job `id` into completion group `txn`.
    pub fn set_txn(&mut self, id: &str, txn: u64) {
        if let Some(j) = self.get_mut(id) {
            j.txn = Some(txn);
        }
    }

    /// Ends a job and, when it failed inside a group, cancels the rest of
    /// the group (block_job_completed_txn_abort).
    fn conclude_or_group(
        &mut self,
        idx: usize,
        graph: &mut BlockGraph,
        ok: bool,
        error: Option<String>,
    ) {
        let txn = self.jobs[idx].txn;
        let failed = !ok || self.jobs[idx].core.cancelled;
        self.conclude(idx, graph, ok, error);
        let Some(t) = txn else { return };
        if !failed {
            return;
        }
        while let Some(i) = self.jobs.iter().position(|j| j.txn == Some(t)) {
            self.jobs[i].core.cancelled = true;
            self.conclude(i, graph, false, None);
        }
    }

    /// A grouped job finished its work: the group commits once all have.
    fn finish_in_group(&mut self, idx: usize, graph: &mut BlockGraph) {
        let Some(t) = self.jobs[idx].txn else {
            self.conclude(idx, graph, true, None);
            return;
        };
        self.jobs[idx].txn_done = true;
        self.jobs[idx].core.scheduled = false;
        if self.jobs.iter().any(|j| j.txn == Some(t) && !j.txn_done) {
            return;
        }
        while let Some(i) = self.jobs.iter().position(|j| j.txn == Some(t)) {
            self.conclude(i, graph, true, None);
        }
    }

    /// Events raised since the last call.
    pub fn take_events(&mut self) -> Vec<JobEvent> {
        std::mem::take(&mut self.events)
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Ends a job: its driver commits or rolls back, then the event goes out.
    fn conclude(&mut self, idx: usize, graph: &mut BlockGraph, ok: bool, error: Option<String>) {
        let mut job = self.jobs.remove(idx);
        job.core.status = JobStatus::Completing;
        let cancelled = job.core.cancelled;
        let r = job.driver.finish(&mut job.core, graph, ok && !cancelled);
        job.core.status = JobStatus::Concluded;
        let info = job.core.info(job.kind());
        let ev = if cancelled {
            JobEvent::Cancelled(info)
        } else {
            let error = error.or_else(|| r.err().map(|e| e.strerror()));
            JobEvent::Completed { info, error }
        };
        self.events.push(ev);
    }

    /// Runs one step of job `id`.
    pub fn step(&mut self, id: &str, graph: &mut BlockGraph) -> Step {
        let now = self.now_ns();
        let Some(idx) = self.jobs.iter().position(|j| j.core.id == id) else {
            return Step::Done;
        };
        let job = &mut self.jobs[idx];
        job.sleeping = false;
        if job.txn_done {
            return Step::Done;
        }
        if job.core.cancelled && !(job.core.ready && job.driver.drains_on_cancel()) {
            self.conclude_or_group(idx, graph, false, None);
            return Step::Done;
        }
        if job.core.user_paused && !job.core.cancelled {
            job.core.status = JobStatus::Paused;
            job.core.scheduled = false;
            return Step::Paused;
        }
        job.core.status = if job.core.ready {
            JobStatus::Ready
        } else {
            JobStatus::Running
        };
        match job.driver.step(&mut job.core) {
            Ok(Progress::Worked(n)) => {
                let delay = job.core.limit.account(now, n);
                if delay > 0 {
                    job.sleeping = true;
                    Step::Wait(delay)
                } else {
                    Step::Continue
                }
            }
            Ok(Progress::Idle) => {
                job.sleeping = true;
                Step::Wait(IDLE_POLL_NS)
            }
            Ok(Progress::Ready) => {
                if !job.core.ready {
                    job.core.ready = true;
                    let info = job.core.info(job.kind());
                    self.events.push(JobEvent::Ready(info));
                }
                Step::Continue
            }
            Ok(Progress::Finished) => {
                self.finish_in_group(idx, graph);
                Step::Done
            }
            Err(e) => self.handle_error(idx, graph, e),
        }
    }

    fn handle_error(&mut self, idx: usize, graph: &mut BlockGraph, e: JobIoError) -> Step {
        let job = &mut self.jobs[idx];
        let policy = if e.is_read {
            job.core.on_source_error
        } else {
            job.core.on_target_error
        };
        let errno = e.err.errno_value();
        let action = policy.action(errno);
        self.events.push(JobEvent::Error {
            id: job.core.id.clone(),
            is_read: e.is_read,
            action,
        });
        match action {
            ErrorAction::Report => {
                self.conclude_or_group(idx, graph, false, Some(e.err.strerror()));
                Step::Done
            }
            ErrorAction::Ignore => {
                job.driver.skip_failed(&mut job.core, errno);
                Step::Continue
            }
            ErrorAction::Stop => {
                job.core.user_paused = true;
                job.core.status = JobStatus::Paused;
                job.core.scheduled = false;
                if job.core.io_status == IoStatus::Ok {
                    job.core.io_status = if errno == libc::ENOSPC {
                        IoStatus::Nospace
                    } else {
                        IoStatus::Failed
                    };
                }
                Step::Paused
            }
        }
    }

    /// Jobs that can run but have no step scheduled, with the wake epoch
    /// their step must carry; marks them scheduled.
    pub fn take_unscheduled(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for j in &mut self.jobs {
            if !j.core.scheduled && !j.txn_done && (!j.core.user_paused || j.core.cancelled) {
                j.core.scheduled = true;
                out.push((j.core.id.clone(), j.core.wake_epoch));
            }
        }
        out
    }

    /// Wakes a job now, whatever step it waits for (QEMU's block_job_enter):
    /// the pending step goes stale. Returns the epoch of the new step.
    pub fn kick(&mut self, id: &str) -> Option<u64> {
        let wake = self.next_wake;
        let j = self.get_mut(id)?;
        if j.core.user_paused && !j.core.cancelled {
            return None;
        }
        self.next_wake += 1;
        let j = self.get_mut(id)?;
        j.core.wake_epoch = wake;
        j.core.scheduled = true;
        Some(j.core.wake_epoch)
    }

    /// True when a step scheduled under `epoch` is still the job's current one.
    pub fn is_current(&self, id: &str, epoch: u64) -> bool {
        self.get(id).is_some_and(|j| j.core.wake_epoch == epoch)
    }

    /// Cancels job `id` and ends it now (block_job_cancel_sync).
    pub fn cancel_sync(&mut self, id: &str, graph: &mut BlockGraph) {
        if let Some(i) = self.jobs.iter().position(|j| j.core.id == id) {
            self.jobs[i].core.cancelled = true;
            self.conclude_or_group(i, graph, false, None);
        }
    }

    /// Cancels every job and runs it to its end (process exit, QEMU's
    /// bdrv_close_all cancelling jobs).
    pub fn cancel_all(&mut self, graph: &mut BlockGraph) {
        while !self.jobs.is_empty() {
            self.jobs[0].core.cancelled = true;
            self.conclude(0, graph, false, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backup::{BackupParams, SyncMode};
    use super::*;
    use crate::node::lock;
    use serde_json::json;

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("rqemu-jobs-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_string()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn create(path: &str, size: u64, backing: Option<&str>) {
        let o = crate::CreateOptions {
            backing_file: backing.map(str::to_string),
            backing_fmt: backing.map(|_| "qcow2".to_string()),
            ..Default::default()
        };
        crate::create_image("qcow2", path, Some(size), &o).unwrap();
    }

    fn open(g: &mut BlockGraph, path: &str, blkdebug: Option<serde_json::Value>) -> NodeRef {
        let file = match blkdebug {
            Some(rules) => json!({"driver": "blkdebug", "inject-error": rules,
                                  "image": {"driver": "file", "filename": path}}),
            None => json!({"driver": "file", "filename": path}),
        };
        let o = json!({"driver": "qcow2", "file": file});
        g.open(o.as_object().unwrap()).unwrap()
    }

    fn run(jobs: &mut JobList, g: &mut BlockGraph, id: &str) -> Step {
        for _ in 0..100_000 {
            match jobs.step(id, g) {
                Step::Continue | Step::Wait(_) => continue,
                s => return s,
            }
        }
        panic!("job {id} never stopped");
    }

    fn read(n: &NodeRef, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        lock(n).read(off, &mut b).unwrap();
        b
    }

    fn backup(
        jobs: &mut JobList,
        id: &str,
        src: &NodeRef,
        dst: &NodeRef,
        on_target_error: OnError,
    ) {
        let mut core = JobCore::new(id.into(), src.clone(), 0);
        core.on_target_error = on_target_error;
        let p = BackupParams {
            sync: SyncMode::Full,
            bitmap: None,
            compress: false,
            owned_target: false,
        };
        let job = backup::start(&mut core, src.clone(), dst.clone(), p).unwrap();
        jobs.add(core, Box::new(job));
    }

    #[test]
    fn stream_pulls_backing_data_into_the_top_and_drops_the_backing_file() {
        let d = Dir::new("stream");
        create(&d.path("base"), 1 << 20, None);
        create(&d.path("top"), 1 << 20, Some(&d.path("base")));
        let mut setup = BlockGraph::new();
        let base = open(&mut setup, &d.path("base"), None);
        lock(&base).write(4096, &[3u8; 4096], false).unwrap();
        setup.close_all();
        let mut g = BlockGraph::new();
        let top = open(&mut g, &d.path("top"), None);
        let mut jobs = JobList::new();
        let mut core = JobCore::new("s".into(), top.clone(), 0);
        let job = stream::start(&mut core, top.clone(), None, None).unwrap();
        jobs.add(core, Box::new(job));

        assert_eq!(run(&mut jobs, &mut g, "s"), Step::Done);

        assert!(lock(&top).backing().is_none());
        assert_eq!(lock(&top).backing_file(), None);
        assert!(read(&top, 4096, 4096).iter().all(|&b| b == 3));
    }

    #[test]
    fn intermediate_commit_moves_data_down_and_relinks_the_overlay() {
        let d = Dir::new("commit");
        create(&d.path("base"), 1 << 20, None);
        create(&d.path("mid"), 1 << 20, Some(&d.path("base")));
        create(&d.path("top"), 1 << 20, Some(&d.path("mid")));
        let mut g = BlockGraph::new();
        let top = open(&mut g, &d.path("top"), None);
        let mid = lock(&top).backing().unwrap();
        let base = lock(&mid).backing().unwrap();
        lock(&mid).set_read_only(false).unwrap();
        lock(&mid).write(0, &[9u8; 512], false).unwrap();
        let mut jobs = JobList::new();
        let mut core = JobCore::new("c".into(), top.clone(), 0);
        let job = commit::start(&mut core, mid, base.clone(), top.clone(), None).unwrap();
        jobs.add(core, Box::new(job));

        assert_eq!(run(&mut jobs, &mut g, "c"), Step::Done);

        assert!(Arc::ptr_eq(&lock(&top).backing().unwrap(), &base));
        assert!(read(&base, 0, 512).iter().all(|&b| b == 9));
        assert_eq!(lock(&top).backing_file().unwrap().0, d.path("base"));
    }

    #[test]
    fn stop_policy_pauses_with_failed_io_status_and_resume_finishes() {
        let d = Dir::new("stop");
        create(&d.path("src"), 1 << 20, None);
        create(&d.path("dst"), 1 << 20, None);
        let mut g = BlockGraph::new();
        let src = open(&mut g, &d.path("src"), None);
        lock(&src).write(0, &[1u8; 65536], false).unwrap();
        let rules = json!([{"event": "write_aio", "errno": 5, "once": true}]);
        let dst = open(&mut g, &d.path("dst"), Some(rules));
        let mut jobs = JobList::new();
        backup(&mut jobs, "b", &src, &dst, OnError::Stop);

        assert_eq!(run(&mut jobs, &mut g, "b"), Step::Paused);
        let q = jobs.query();
        assert_eq!(q[0]["io-status"], "failed");
        assert_eq!(q[0]["paused"], true);
        jobs.resume("b").unwrap();
        assert_eq!(run(&mut jobs, &mut g, "b"), Step::Done);

        let evs = jobs.take_events();
        assert_eq!(evs.len(), 2);
        assert!(matches!(
            evs[0],
            JobEvent::Error {
                action: ErrorAction::Stop,
                is_read: false,
                ..
            }
        ));
        assert!(matches!(evs[1], JobEvent::Completed { error: None, .. }));
        assert!(read(&dst, 0, 65536).iter().all(|&b| b == 1));
    }

    #[test]
    fn a_failing_job_cancels_the_rest_of_its_group() {
        let d = Dir::new("group");
        for f in ["a", "b", "ta", "tb"] {
            create(&d.path(f), 1 << 20, None);
        }
        let mut g = BlockGraph::new();
        let a = open(&mut g, &d.path("a"), None);
        let b = open(&mut g, &d.path("b"), None);
        lock(&b).write(0, &[1u8; 4096], false).unwrap();
        let ta = open(&mut g, &d.path("ta"), None);
        let tb = open(&mut g, &d.path("tb"), Some(json!([{"event": "write_aio"}])));
        let mut jobs = JobList::new();
        backup(&mut jobs, "ja", &a, &ta, OnError::Report);
        backup(&mut jobs, "jb", &b, &tb, OnError::Report);
        let t = jobs.new_txn();
        jobs.set_txn("ja", t);
        jobs.set_txn("jb", t);

        assert_eq!(run(&mut jobs, &mut g, "ja"), Step::Done);
        assert!(jobs.get("ja").is_some());
        assert_eq!(run(&mut jobs, &mut g, "jb"), Step::Done);

        assert!(jobs.is_empty());
        let names: Vec<_> = jobs.take_events().iter().map(|e| e.to_qmp().0).collect();
        assert_eq!(
            names,
            [
                "BLOCK_JOB_ERROR",
                "BLOCK_JOB_COMPLETED",
                "BLOCK_JOB_CANCELLED"
            ]
        );
    }

    #[test]
    fn stream_with_ignored_read_error_finishes_with_the_error_and_keeps_its_backing() {
        let d = Dir::new("stream-ignore");
        create(&d.path("base"), 1 << 20, None);
        create(&d.path("top"), 1 << 20, Some(&d.path("base")));
        let mut setup = BlockGraph::new();
        let base = open(&mut setup, &d.path("base"), None);
        lock(&base).write(0, &[3u8; 4096], false).unwrap();
        setup.close_all();
        let mut g = BlockGraph::new();
        let o = json!({"driver": "qcow2",
            "file": {"driver": "file", "filename": d.path("top")},
            "backing": {"driver": "qcow2", "file": {"driver": "blkdebug",
                "inject-error": [{"event": "read_aio", "once": true}],
                "image": {"driver": "file", "filename": d.path("base")}}}});
        let top = g.open(o.as_object().unwrap()).unwrap();
        let mut jobs = JobList::new();
        let mut core = JobCore::new("s".into(), top.clone(), 0);
        core.on_source_error = OnError::Ignore;
        let job = stream::start(&mut core, top.clone(), None, None).unwrap();
        jobs.add(core, Box::new(job));

        assert_eq!(run(&mut jobs, &mut g, "s"), Step::Done);

        let evs = jobs.take_events();
        assert!(matches!(
            evs[0],
            JobEvent::Error {
                action: ErrorAction::Ignore,
                is_read: true,
                ..
            }
        ));
        assert!(
            matches!(&evs[1], JobEvent::Completed { error: Some(e), .. } if e == "Input/output error")
        );
        assert!(lock(&top).backing().is_some());
    }

    #[test]
    fn job_ids_follow_qemu_rules() {
        let jobs = JobList::new();
        assert_eq!(jobs.new_job_id(None, "drive0").unwrap(), "drive0");
        assert_eq!(
            jobs.new_job_id(None, "").unwrap_err().to_string(),
            "An explicit job ID is required for this node"
        );
        assert_eq!(
            jobs.new_job_id(Some("0x"), "d").unwrap_err().to_string(),
            "Invalid job ID '0x'"
        );
    }
}
