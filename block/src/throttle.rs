//! I/O throttling limits (block_set_io_throttle, -drive throttling.*): QEMU's
//! leaky-bucket algorithm. Each of the six buckets (bytes and operations; total,
//! read, write) fills by the request size and leaks at `avg` units a second; a
//! request must wait while a bucket is over `max * burst_length`, and, with a
//! burst length above one second, while a second bucket leaking at `max` is over
//! a tenth of `max`.
//!
//! Nothing here reads a clock: callers pass `now` from a `ThrottleClock`, which
//! is the virtual clock under qtest (it moves only with `clock_step`) and the
//! realtime clock otherwise. Shared groups and request queues live in
//! `throttle_group`.

use serde_json::{json, Map, Value};

use crate::error::{BlockError, BlockResult};
use crate::options::Options;

/// The clock throttling runs on; the caller chooses which.
pub trait ThrottleClock {
    fn now_ns(&self) -> i64;
}

/// Largest value a limit may take.
pub const THROTTLE_VALUE_MAX: f64 = 1e15;

const NS_PER_SEC: f64 = 1e9;

/// Bucket indexes, in QEMU's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketType {
    BpsTotal = 0,
    BpsRead = 1,
    BpsWrite = 2,
    OpsTotal = 3,
    OpsRead = 4,
    OpsWrite = 5,
}

const ALL: [BucketType; 6] = [
    BucketType::BpsTotal,
    BucketType::BpsRead,
    BucketType::BpsWrite,
    BucketType::OpsTotal,
    BucketType::OpsRead,
    BucketType::OpsWrite,
];

/// QMP names of each bucket's avg, max and burst-length fields
/// (block_set_io_throttle / query-block).
const QMP_NAMES: [(&str, &str, &str); 6] = [
    ("bps", "bps_max", "bps_max_length"),
    ("bps_rd", "bps_rd_max", "bps_rd_max_length"),
    ("bps_wr", "bps_wr_max", "bps_wr_max_length"),
    ("iops", "iops_max", "iops_max_length"),
    ("iops_rd", "iops_rd_max", "iops_rd_max_length"),
    ("iops_wr", "iops_wr_max", "iops_wr_max_length"),
];

/// -drive `throttling.*` names of the same fields.
const DRIVE_NAMES: [&str; 6] = [
    "bps-total",
    "bps-read",
    "bps-write",
    "iops-total",
    "iops-read",
    "iops-write",
];

/// One leaky bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyBucket {
    /// Average goal, units per second.
    pub avg: f64,
    /// Burst rate, units per second (0: none set).
    pub max: f64,
    /// Units performed and not yet leaked.
    pub level: f64,
    /// Units performed in the current burst (leaks at `max`).
    pub burst_level: f64,
    /// How long, in seconds, a burst at `max` may last.
    pub burst_length: u64,
}

impl Default for LeakyBucket {
    fn default() -> Self {
        LeakyBucket {
            avg: 0.0,
            max: 0.0,
            level: 0.0,
            burst_level: 0.0,
            burst_length: 1,
        }
    }
}

impl LeakyBucket {
    fn leak(&mut self, delta_ns: i64) {
        let d = delta_ns as f64;
        self.level = (self.level - self.avg * d / NS_PER_SEC).max(0.0);
        if self.burst_length > 1 {
            self.burst_level = (self.burst_level - self.max * d / NS_PER_SEC).max(0.0);
        }
    }

    /// Nanoseconds to wait before the next request may go (0: go now).
    pub fn wait_ns(&self) -> i64 {
        if self.avg == 0.0 {
            return 0;
        }
        let extra = self.level - self.max * self.burst_length as f64;
        if extra > 0.0 {
            return (extra * NS_PER_SEC / self.avg) as i64;
        }
        if self.burst_length > 1 {
            // Within a burst, keep to `max` per second in steps of a tenth.
            let extra = self.burst_level - self.max / 10.0;
            if extra > 0.0 {
                return (extra * NS_PER_SEC / self.max) as i64;
            }
        }
        0
    }
}

/// A set of limits (ThrottleConfig).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ThrottleConfig {
    pub buckets: [LeakyBucket; 6],
    /// `iops_size`: a request larger than this counts as several operations.
    pub op_size: u64,
}

fn num(v: &Value, key: &str) -> BlockResult<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| bad_type(key)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| bad_type(key)),
        _ => Err(bad_type(key)),
    }
}

fn bad_type(key: &str) -> BlockError {
    BlockError::InvalidArgument(format!(
        "Invalid parameter type for '{}', expected: integer",
        key
    ))
}

impl ThrottleConfig {
    pub fn bucket(&self, t: BucketType) -> &LeakyBucket {
        &self.buckets[t as usize]
    }

    pub fn bucket_mut(&mut self, t: BucketType) -> &mut LeakyBucket {
        &mut self.buckets[t as usize]
    }

    /// Limits from block_set_io_throttle arguments (already type-checked by the
    /// schema; absent optional members keep their defaults).
    pub fn from_qmp(args: &Map<String, Value>) -> BlockResult<ThrottleConfig> {
        let mut cfg = ThrottleConfig::default();
        for (i, (avg, max, len)) in QMP_NAMES.iter().enumerate() {
            let b = &mut cfg.buckets[i];
            if let Some(v) = args.get(*avg) {
                b.avg = num(v, avg)?;
            }
            if let Some(v) = args.get(*max) {
                b.max = num(v, max)?;
            }
            if let Some(v) = args.get(*len) {
                let l = num(v, len)?;
                b.burst_length = if l < 0.0 { u64::MAX } else { l as u64 };
            }
        }
        if let Some(v) = args.get("iops_size") {
            cfg.op_size = num(v, "iops_size")?.max(0.0) as u64;
        }
        Ok(cfg)
    }

    /// Limits and group from -drive options, in either the `throttling.*` form
    /// or the legacy `bps`/`iops_rd`/... names. Keys may be dotted or nested.
    pub fn from_drive_options(opts: &Options) -> BlockResult<(ThrottleConfig, Option<String>)> {
        let nested = opts.get("throttling").and_then(Value::as_object);
        let get = |k: &str| -> Option<&Value> {
            nested
                .and_then(|n| n.get(k))
                .or_else(|| opts.get(&format!("throttling.{}", k)))
        };
        let mut cfg = ThrottleConfig::default();
        for (i, name) in DRIVE_NAMES.iter().enumerate() {
            let legacy = QMP_NAMES[i];
            let b = &mut cfg.buckets[i];
            if let Some(v) = get(name).or_else(|| opts.get(legacy.0)) {
                b.avg = num(v, name)?;
            }
            let maxk = format!("{}-max", name);
            if let Some(v) = get(&maxk).or_else(|| opts.get(legacy.1)) {
                b.max = num(v, &maxk)?;
            }
            let lenk = format!("{}-max-length", name);
            if let Some(v) = get(&lenk) {
                let l = num(v, &lenk)?;
                b.burst_length = if l < 0.0 { u64::MAX } else { l as u64 };
            }
        }
        if let Some(v) = get("iops-size").or_else(|| opts.get("iops_size")) {
            cfg.op_size = num(v, "iops-size")?.max(0.0) as u64;
        }
        let group = match get("group").or_else(|| opts.get("group")) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        Ok((cfg, group))
    }

    /// QEMU's throttle_is_valid, with its messages.
    pub fn validate(&self) -> BlockResult<()> {
        let b = |t: BucketType| self.bucket(t);
        let conflict =
            |tot: BucketType, rd: BucketType, wr: BucketType, f: fn(&LeakyBucket) -> f64| {
                f(b(tot)) != 0.0 && (f(b(rd)) != 0.0 || f(b(wr)) != 0.0)
            };
        use BucketType::*;
        if conflict(BpsTotal, BpsRead, BpsWrite, |x| x.avg)
            || conflict(OpsTotal, OpsRead, OpsWrite, |x| x.avg)
            || conflict(BpsTotal, BpsRead, BpsWrite, |x| x.max)
            || conflict(OpsTotal, OpsRead, OpsWrite, |x| x.max)
        {
            return Err(BlockError::InvalidArgument(
                "bps/iops/max total values and read/write values cannot be used at the same time"
                    .into(),
            ));
        }
        if self.op_size != 0
            && b(OpsTotal).avg == 0.0
            && b(OpsRead).avg == 0.0
            && b(OpsWrite).avg == 0.0
        {
            return Err(BlockError::InvalidArgument(
                "iops size requires an iops value to be set".into(),
            ));
        }
        for t in ALL {
            let k = b(t);
            if k.avg < 0.0
                || k.max < 0.0
                || k.avg > THROTTLE_VALUE_MAX
                || k.max > THROTTLE_VALUE_MAX
            {
                return Err(BlockError::InvalidArgument(
                    "bps/iops/max values must be within [0, 1000000000000000]".into(),
                ));
            }
            if k.burst_length == 0 {
                return Err(BlockError::InvalidArgument(
                    "the burst length cannot be 0".into(),
                ));
            }
            if k.burst_length > 1 && k.max == 0.0 {
                return Err(BlockError::InvalidArgument(
                    "burst length set without burst rate".into(),
                ));
            }
            if k.max != 0.0 && k.avg == 0.0 {
                return Err(BlockError::InvalidArgument(
                    "bps_max/iops_max require corresponding bps/iops values".into(),
                ));
            }
            if k.max != 0.0 && k.max < k.avg {
                return Err(BlockError::InvalidArgument(
                    "bps_max/iops_max cannot be lower than bps/iops".into(),
                ));
            }
        }
        Ok(())
    }

    /// True when any limit is set (all zero means "throttling off").
    pub fn enabled(&self) -> bool {
        self.buckets.iter().any(|b| b.avg > 0.0)
    }

    /// The throttle members of query-block's BlockDeviceInfo (without `group`),
    /// in schema order, optional ones present as QEMU 2.8 decides.
    pub fn query_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (i, (avg, _, _)) in QMP_NAMES.iter().enumerate() {
            m.insert((*avg).into(), json!(self.buckets[i].avg as i64));
        }
        // QEMU tests the (double) burst rate for presence but reports it
        // truncated: iops=1 gives "iops_max": 0 (its avg/10 default).
        for (i, (_, max, _)) in QMP_NAMES.iter().enumerate() {
            if self.buckets[i].max != 0.0 {
                m.insert((*max).into(), json!(self.buckets[i].max as i64));
            }
        }
        for (i, (_, _, len)) in QMP_NAMES.iter().enumerate() {
            if self.buckets[i].max != 0.0 {
                m.insert((*len).into(), json!(self.buckets[i].burst_length));
            }
        }
        if self.op_size != 0 {
            m.insert("iops_size".into(), json!(self.op_size));
        }
        m
    }
}

/// The running state of one set of limits (shared by a throttle group).
#[derive(Debug, Clone)]
pub struct ThrottleState {
    cfg: ThrottleConfig,
    previous_leak: i64,
}

impl ThrottleState {
    /// Applies `cfg`: bucket levels start empty, and a bucket without a burst
    /// rate gets a tenth of its average (QEMU's smoothing, visible in
    /// query-block as `*_max`).
    pub fn new(cfg: &ThrottleConfig, now: i64) -> ThrottleState {
        let mut cfg = *cfg;
        for b in &mut cfg.buckets {
            b.level = 0.0;
            b.burst_level = 0.0;
            if b.avg != 0.0 && b.max == 0.0 {
                b.max = b.avg / 10.0;
            }
        }
        ThrottleState {
            cfg,
            previous_leak: now,
        }
    }

    /// The effective configuration (as query-block reports it).
    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    fn leak(&mut self, now: i64) {
        let delta = now - self.previous_leak;
        self.previous_leak = now;
        if delta <= 0 {
            return;
        }
        for b in &mut self.cfg.buckets {
            b.leak(delta);
        }
    }

    /// Leaks the buckets up to `now`; returns how long (ns) a request in the
    /// given direction must wait, 0 if it may go now.
    pub fn compute_wait(&mut self, is_write: bool, now: i64) -> i64 {
        self.leak(now);
        let dir = if is_write {
            [BucketType::BpsWrite, BucketType::OpsWrite]
        } else {
            [BucketType::BpsRead, BucketType::OpsRead]
        };
        [BucketType::BpsTotal, BucketType::OpsTotal, dir[0], dir[1]]
            .iter()
            .map(|t| self.cfg.bucket(*t).wait_ns())
            .max()
            .unwrap_or(0)
    }

    /// Books a request of `bytes` that is about to be issued.
    pub fn account(&mut self, is_write: bool, bytes: u64) {
        let units = if self.cfg.op_size != 0 && bytes > self.cfg.op_size {
            bytes as f64 / self.cfg.op_size as f64
        } else {
            1.0
        };
        let (bps, ops) = if is_write {
            (BucketType::BpsWrite, BucketType::OpsWrite)
        } else {
            (BucketType::BpsRead, BucketType::OpsRead)
        };
        for (t, amount) in [
            (BucketType::BpsTotal, bytes as f64),
            (bps, bytes as f64),
            (BucketType::OpsTotal, units),
            (ops, units),
        ] {
            let b = self.cfg.bucket_mut(t);
            b.level += amount;
            if b.burst_length > 1 {
                b.burst_level += amount;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> ThrottleConfig {
        ThrottleConfig::from_qmp(v.as_object().unwrap()).unwrap()
    }

    fn err(v: Value) -> String {
        cfg(v).validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_messages_match_qemu() {
        assert_eq!(
            err(json!({"bps": 100, "bps_rd": 10})),
            "bps/iops/max total values and read/write values cannot be used at the same time"
        );
        assert_eq!(
            err(json!({"iops_size": 512})),
            "iops size requires an iops value to be set"
        );
        assert_eq!(
            err(json!({"bps": -1})),
            "bps/iops/max values must be within [0, 1000000000000000]"
        );
        assert_eq!(
            err(json!({"bps": 10, "bps_max": 20, "bps_max_length": 0})),
            "the burst length cannot be 0"
        );
        assert_eq!(
            err(json!({"bps": 10, "bps_max_length": 5})),
            "burst length set without burst rate"
        );
        assert_eq!(
            err(json!({"bps_max": 10})),
            "bps_max/iops_max require corresponding bps/iops values"
        );
        assert_eq!(
            err(json!({"bps": 100, "bps_max": 10})),
            "bps_max/iops_max cannot be lower than bps/iops"
        );
        assert!(
            cfg(json!({"bps": 100, "bps_max": 1000, "bps_max_length": 10}))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn iops_limit_spaces_requests_on_the_given_clock() {
        // 10 iops, default burst = 1 op: the first two go, then one per 100 ms.
        let mut s = ThrottleState::new(&cfg(json!({"iops": 10})), 0);
        assert_eq!(s.compute_wait(false, 0), 0);
        s.account(false, 4096);
        assert_eq!(s.compute_wait(false, 0), 0);
        s.account(false, 4096);
        let w = s.compute_wait(false, 0);
        assert_eq!(w, 100_000_000);
        assert_eq!(s.compute_wait(false, w), 0);
    }

    #[test]
    fn bps_burst_allows_max_rate_for_burst_length() {
        // 1000 B/s average, bursts of 10000 B/s for 2 s: bucket holds 20000 B.
        let mut s = ThrottleState::new(
            &cfg(json!({"bps": 1000, "bps_max": 10000, "bps_max_length": 2})),
            0,
        );
        s.account(true, 1000);
        // Burst bucket: 1000 B over max/10 = 1000: no wait yet.
        assert_eq!(s.compute_wait(true, 0), 0);
        s.account(true, 500);
        // 500 B over max/10 at 10000 B/s -> 50 ms.
        assert_eq!(s.compute_wait(true, 0), 50_000_000);
        assert_eq!(s.compute_wait(true, 50_000_000), 0);
    }

    #[test]
    fn reads_do_not_wait_for_write_limits() {
        let mut s = ThrottleState::new(&cfg(json!({"bps_wr": 512})), 0);
        s.account(true, 1 << 20);
        assert!(s.compute_wait(true, 0) > 0);
        assert_eq!(s.compute_wait(false, 0), 0);
    }

    #[test]
    fn iops_size_counts_large_requests_as_several_ops() {
        let mut s = ThrottleState::new(&cfg(json!({"iops": 10, "iops_size": 4096})), 0);
        s.account(false, 4 * 4096);
        // level 4 ops, bucket holds 1: wait (4 - 1) / 10 s.
        assert_eq!(s.compute_wait(false, 0), 300_000_000);
    }

    #[test]
    fn query_fields_show_a_burst_below_one_as_zero() {
        // iops=1 smooths with max 0.1: present, but reported truncated.
        let s = ThrottleState::new(&cfg(json!({"iops": 1})), 0);
        let q = Value::Object(s.config().query_fields());
        assert_eq!(q["iops_max"], 0);
        assert_eq!(q["iops_max_length"], 1);
    }

    #[test]
    fn query_fields_show_the_smoothing_burst_as_qemu_2_8() {
        let s = ThrottleState::new(&cfg(json!({"bps": 1000})), 0);
        let q = Value::Object(s.config().query_fields());
        assert_eq!(q["bps"], 1000);
        assert_eq!(q["bps_max"], 100);
        assert_eq!(q["bps_max_length"], 1);
        assert!(q.get("iops_max").is_none());
        assert!(q.get("iops_size").is_none());
    }

    #[test]
    fn drive_options_accept_both_spellings() {
        let o = json!({"throttling.iops-total": "100", "throttling.group": "g1", "bps_rd": 5});
        let (c, g) = ThrottleConfig::from_drive_options(o.as_object().unwrap()).unwrap();
        assert_eq!(c.bucket(BucketType::OpsTotal).avg, 100.0);
        assert_eq!(c.bucket(BucketType::BpsRead).avg, 5.0);
        assert_eq!(g.as_deref(), Some("g1"));
    }
}
