//! What every block job shares: its identity, QEMU's run states, progress,
//! the rate limit, the error policy and io-status. The per-kind copying logic
//! lives in `backup.rs`, `mirror.rs`, `commit.rs` and `stream.rs` behind the
//! `JobDriver` trait; this file never does I/O itself.

use crate::error::BlockError;
use crate::graph::BlockGraph;
use crate::node::NodeRef;

/// The job kinds of QEMU 2.8 (`BlockJobType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    Commit,
    Stream,
    Mirror,
    Backup,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Commit => "commit",
            JobType::Stream => "stream",
            JobType::Mirror => "mirror",
            JobType::Backup => "backup",
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Created,
    Running,
    Paused,
    Ready,
    Completing,
    Concluded,
}

/// `BlockdevOnError`: what a job does when a request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    #[default]
    Report,
    Ignore,
    /// Stop only when the error is ENOSPC, else report.
    Enospc,
    Stop,
}

impl OnError {
    pub fn parse(s: &str) -> Option<OnError> {
        Some(match s {
            "report" => OnError::Report,
            "ignore" => OnError::Ignore,
            "enospc" => OnError::Enospc,
            "stop" => OnError::Stop,
            _ => return None,
        })
    }

    /// The action taken for an error with `errno`.
    pub fn action(self, errno: i32) -> ErrorAction {
        match self {
            OnError::Report => ErrorAction::Report,
            OnError::Ignore => ErrorAction::Ignore,
            OnError::Stop => ErrorAction::Stop,
            OnError::Enospc if errno == libc::ENOSPC => ErrorAction::Stop,
            OnError::Enospc => ErrorAction::Report,
        }
    }
}

/// `BlockErrorAction`, as BLOCK_JOB_ERROR reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    Ignore,
    Report,
    Stop,
}

impl ErrorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorAction::Ignore => "ignore",
            ErrorAction::Report => "report",
            ErrorAction::Stop => "stop",
        }
    }
}

/// `BlockDeviceIoStatus` of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoStatus {
    #[default]
    Ok,
    Failed,
    Nospace,
}

impl IoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IoStatus::Ok => "ok",
            IoStatus::Failed => "failed",
            IoStatus::Nospace => "nospace",
        }
    }
}

/// What the main loop does after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the next step as soon as possible (a bottom half).
    Continue,
    /// Run the next step after this many nanoseconds (rate limit, idle poll).
    Wait(u64),
    /// Paused: nothing to run until resumed.
    Paused,
    /// The job is gone.
    Done,
}

/// A failed request inside a job.
#[derive(Debug)]
pub struct JobIoError {
    /// True for a read (source) error, false for a write (target) error.
    pub is_read: bool,
    pub err: BlockError,
}

impl JobIoError {
    pub fn read(err: BlockError) -> JobIoError {
        JobIoError { is_read: true, err }
    }

    pub fn write(err: BlockError) -> JobIoError {
        JobIoError {
            is_read: false,
            err,
        }
    }
}

/// What one driver step achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Processed this many bytes (counted against the rate limit).
    Worked(u64),
    /// Nothing to do right now (a synced mirror waiting for writes).
    Idle,
    /// The bulk copy is done and the job waits for block-job-complete.
    Ready,
    /// All work is done; the job may finish.
    Finished,
}

/// The kind-specific part of a job.
pub trait JobDriver: Send {
    fn kind(&self) -> JobType;

    /// One bounded piece of work.
    fn step(&mut self, core: &mut JobCore) -> Result<Progress, JobIoError>;

    /// block-job-complete; only mirror and active commit accept it.
    fn complete(&mut self, core: &mut JobCore) -> Result<(), BlockError> {
        Err(BlockError::Generic(format!(
            "The active block job '{}' cannot be completed",
            core.id
        )))
    }

    /// Error action `ignore`: returns true when the driver skipped the
    /// failed range itself (stream, which then ends with the error); false
    /// retries the same range on the next step.
    fn skip_failed(&mut self, _core: &mut JobCore, _errno: i32) -> bool {
        false
    }

    /// A cancel after READY copies what is left and ends as completed
    /// (mirror and active commit), instead of stopping at once.
    fn drains_on_cancel(&self) -> bool {
        false
    }

    /// Called once when the job ends: `ok` is false on error or cancel. Graph
    /// changes (pivot, dropping intermediate nodes) happen here.
    fn finish(
        &mut self,
        core: &mut JobCore,
        graph: &mut BlockGraph,
        ok: bool,
    ) -> Result<(), BlockError>;

    /// Nodes the job works on (a node may be in at most one job).
    fn nodes(&self) -> Vec<NodeRef>;
}

/// Token-bucket style limit on bytes per 100 ms slice (QEMU's ratelimit.h).
#[derive(Debug, Clone, Default)]
pub struct RateLimit {
    quota: u64,
    dispatched: u64,
    slice_end_ns: u64,
}

/// Length of a rate-limit slice.
pub const SLICE_NS: u64 = 100_000_000;

impl RateLimit {
    /// `speed` bytes per second; 0 means unlimited.
    pub fn set_speed(&mut self, speed: u64) {
        // Debt owed under the old limit is forgiven: a new slice starts.
        self.dispatched = 0;
        self.slice_end_ns = 0;
        self.quota = speed.saturating_mul(SLICE_NS) / 1_000_000_000;
        if speed > 0 && self.quota == 0 {
            self.quota = 1;
        }
    }

    /// Accounts `n` bytes done at `now_ns`; returns how long to wait before
    /// the next request.
    pub fn account(&mut self, now_ns: u64, n: u64) -> u64 {
        if self.quota == 0 {
            return 0;
        }
        if self.slice_end_ns <= now_ns {
            self.slice_end_ns = now_ns + SLICE_NS;
            self.dispatched = 0;
        }
        self.dispatched += n;
        if self.dispatched <= self.quota {
            return 0;
        }
        // Over quota: the excess is owed in later slices.
        let excess_slices = (self.dispatched - 1) / self.quota;
        self.dispatched -= excess_slices * self.quota;
        let wait = self.slice_end_ns - now_ns + (excess_slices - 1) * SLICE_NS;
        self.slice_end_ns += excess_slices * SLICE_NS;
        wait
    }
}

/// State common to every job (what query-block-jobs shows and more).
pub struct JobCore {
    pub id: String,
    /// The node the job was started on (`bs` in QEMU).
    pub bs: NodeRef,
    pub len: u64,
    pub offset: u64,
    pub speed: u64,
    pub limit: RateLimit,
    pub status: JobStatus,
    /// Paused by the user or by an error with action stop.
    pub user_paused: bool,
    pub cancelled: bool,
    pub force: bool,
    pub ready: bool,
    /// block-job-complete was accepted.
    pub should_complete: bool,
    pub io_status: IoStatus,
    pub on_source_error: OnError,
    pub on_target_error: OnError,
    /// A step is scheduled on the main loop (kept by the driver in `src`).
    pub scheduled: bool,
    /// Bumped when the job is woken early (cancel, complete, resume): a
    /// step scheduled under an older value is stale and does nothing.
    pub wake_epoch: u64,
}

impl JobCore {
    pub fn new(id: String, bs: NodeRef, speed: u64) -> JobCore {
        let mut limit = RateLimit::default();
        limit.set_speed(speed);
        JobCore {
            id,
            bs,
            len: 0,
            offset: 0,
            speed,
            limit,
            status: JobStatus::Created,
            user_paused: false,
            cancelled: false,
            force: false,
            ready: false,
            should_complete: false,
            io_status: IoStatus::Ok,
            on_source_error: OnError::Report,
            on_target_error: OnError::Report,
            scheduled: false,
            wake_epoch: 0,
        }
    }

    /// Bytes one step may copy: `max` when unlimited, else about one
    /// rate-limit slice's quota in whole `unit`s (at least one), so a slow
    /// job moves in small steps instead of bursts.
    pub fn step_budget(&self, max: u64, unit: u64) -> u64 {
        if self.speed == 0 || unit == 0 {
            return max;
        }
        let quota = self.speed.saturating_mul(SLICE_NS) / 1_000_000_000;
        ((quota / unit).max(1) * unit).min(max)
    }

    /// The fields query-block-jobs and the job events share.
    pub fn info(&self, kind: JobType) -> JobInfo {
        JobInfo {
            kind,
            id: self.id.clone(),
            len: self.len,
            offset: self.offset,
            speed: self.speed,
        }
    }
}

/// Identity and progress of a job, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub kind: JobType,
    pub id: String,
    pub len: u64,
    pub offset: u64,
    pub speed: u64,
}

/// Events jobs raise (BLOCK_JOB_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    Completed {
        info: JobInfo,
        error: Option<String>,
    },
    Cancelled(JobInfo),
    Ready(JobInfo),
    Error {
        id: String,
        is_read: bool,
        action: ErrorAction,
    },
}

impl JobEvent {
    /// QMP event name and data, as QEMU 2.8 sends them.
    pub fn to_qmp(&self) -> (&'static str, serde_json::Value) {
        use serde_json::json;
        let base = |i: &JobInfo| {
            json!({"type": i.kind.as_str(), "device": i.id, "len": i.len,
                   "offset": i.offset, "speed": i.speed})
        };
        match self {
            JobEvent::Completed { info, error } => {
                let mut v = base(info);
                if let Some(e) = error {
                    v["error"] = json!(e);
                }
                ("BLOCK_JOB_COMPLETED", v)
            }
            JobEvent::Cancelled(i) => ("BLOCK_JOB_CANCELLED", base(i)),
            JobEvent::Ready(i) => ("BLOCK_JOB_READY", base(i)),
            JobEvent::Error {
                id,
                is_read,
                action,
            } => (
                "BLOCK_JOB_ERROR",
                json!({"device": id,
                       "operation": if *is_read { "read" } else { "write" },
                       "action": action.as_str()}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_rate_never_waits() {
        let mut r = RateLimit::default();
        r.set_speed(0);
        assert_eq!(r.account(0, u64::MAX / 2), 0);
    }

    #[test]
    fn rate_limit_waits_for_the_next_slice_once_the_quota_is_used() {
        let mut r = RateLimit::default();
        r.set_speed(10 << 20); // 1 MiB per slice
        assert_eq!(r.account(0, 512 << 10), 0);
        assert_eq!(r.account(10, 512 << 10), 0);
        assert_eq!(r.account(20, 1), SLICE_NS - 20);
    }

    #[test]
    fn rate_limit_spreads_a_large_chunk_over_several_slices() {
        let mut r = RateLimit::default();
        r.set_speed(10 << 20);
        assert_eq!(r.account(0, 3 << 20), 2 * SLICE_NS);
    }

    #[test]
    fn enospc_policy_stops_only_on_enospc() {
        assert_eq!(OnError::Enospc.action(libc::ENOSPC), ErrorAction::Stop);
        assert_eq!(OnError::Enospc.action(libc::EIO), ErrorAction::Report);
        assert_eq!(OnError::Stop.action(libc::EIO), ErrorAction::Stop);
    }

    #[test]
    fn error_event_has_qemu_fields() {
        let ev = JobEvent::Error {
            id: "drive0".into(),
            is_read: true,
            action: ErrorAction::Stop,
        };
        let (name, data) = ev.to_qmp();
        assert_eq!(name, "BLOCK_JOB_ERROR");
        assert_eq!(
            data,
            serde_json::json!({"device": "drive0", "operation": "read", "action": "stop"})
        );
    }
}
