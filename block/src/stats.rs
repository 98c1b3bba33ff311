//! I/O accounting for query-blockstats: per-backend counters of bytes, operations,
//! latencies, failed and invalid requests, plus latency averages over the
//! intervals given with `stats-intervals`. Nodes only record `wr_highest_offset`
//! (see `tracking`), as QEMU 2.8 did.
//!
//! Latencies are measured on the realtime clock; under qtest every request counts
//! as taking exactly 1 ms and access times follow the virtual clock, as QEMU
//! fakes them, so test output is deterministic.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::error::{BlockError, BlockResult};
use crate::graph::BlockGraph;
use crate::node::{lock, NodeRef};
use crate::options::get_bool;

/// Fixed latency QEMU books for every request under qtest.
pub const QTEST_LATENCY_NS: i64 = 1_000_000;

static QTEST_MODE: AtomicBool = AtomicBool::new(false);

/// Switches the fixed qtest latency on (call once when `-machine accel=qtest`).
pub fn set_qtest_mode(on: bool) {
    QTEST_MODE.store(on, Ordering::Relaxed);
}

/// True under `-machine accel=qtest` (see `set_qtest_mode`).
pub fn qtest_mode() -> bool {
    QTEST_MODE.load(Ordering::Relaxed)
}

static QTEST_CLOCK_NS: AtomicI64 = AtomicI64::new(0);

/// The qtest virtual clock moved (qtest `clock_step`/`clock_set`).
pub fn set_qtest_clock(ns: i64) {
    QTEST_CLOCK_NS.store(ns, Ordering::Relaxed);
}

/// The clock accounting reads: QEMU switches it to the virtual clock under
/// qtest, so access times (and idle_time_ns) move only with `clock_step`;
/// at virtual time 0 no access counts as having happened.
pub fn acct_now() -> i64 {
    if qtest_mode() {
        QTEST_CLOCK_NS.load(Ordering::Relaxed)
    } else {
        realtime_ns()
    }
}

/// Monotonic realtime clock in ns; never 0 so "no access yet" stays distinguishable.
pub fn realtime_ns() -> i64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = BASE.get_or_init(Instant::now);
    base.elapsed().as_nanos() as i64 + 1
}

/// The three accounted request kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctType {
    Read = 0,
    Write = 1,
    Flush = 2,
}

/// One window of a timed average.
#[derive(Debug, Clone, Copy)]
struct Window {
    min: u64,
    max: u64,
    sum: u64,
    count: u64,
    expiration: i64,
}

impl Window {
    fn reset(&mut self) {
        self.min = u64::MAX;
        self.max = 0;
        self.sum = 0;
        self.count = 0;
    }
}

/// Latency statistics over a sliding interval: two windows staggered by half a
/// period, values read from the older one (so a report always covers between
/// 2/3 and 4/3 of the requested interval).
#[derive(Debug, Clone)]
struct TimedAverage {
    period: i64,
    windows: [Window; 2],
    current: usize,
}

impl TimedAverage {
    fn new(period_ns: u64, now: i64) -> TimedAverage {
        let period = (period_ns.saturating_mul(4) / 3).clamp(1, i64::MAX as u64) as i64;
        let blank = Window {
            min: u64::MAX,
            max: 0,
            sum: 0,
            count: 0,
            expiration: 0,
        };
        let mut w = [blank; 2];
        w[0].expiration = now.saturating_add(period / 2);
        w[1].expiration = now.saturating_add(period);
        TimedAverage {
            period,
            windows: w,
            current: 0,
        }
    }

    /// Rolls expired windows over; returns the time elapsed in the current one.
    fn check(&mut self, now: i64) -> i64 {
        for w in &mut self.windows {
            if w.expiration <= now {
                w.reset();
                let late = (now - w.expiration) % self.period;
                w.expiration = now + self.period - late;
            }
        }
        self.current = if self.windows[0].expiration < self.windows[1].expiration {
            0
        } else {
            1
        };
        self.period - (self.windows[self.current].expiration - now)
    }

    fn account(&mut self, value: u64, now: i64) {
        self.check(now);
        for w in &mut self.windows {
            w.sum = w.sum.saturating_add(value);
            w.count += 1;
            w.min = w.min.min(value);
            w.max = w.max.max(value);
        }
    }

    fn min(&mut self, now: i64) -> u64 {
        self.check(now);
        let w = &self.windows[self.current];
        if w.min == u64::MAX {
            0
        } else {
            w.min
        }
    }

    fn max(&mut self, now: i64) -> u64 {
        self.check(now);
        self.windows[self.current].max
    }

    fn avg(&mut self, now: i64) -> u64 {
        self.check(now);
        let w = &self.windows[self.current];
        w.sum.checked_div(w.count).unwrap_or(0)
    }

    /// Sum of latencies divided by elapsed time: the average queue depth.
    fn queue_depth(&mut self, now: i64) -> f64 {
        let elapsed = self.check(now);
        if elapsed <= 0 {
            return 0.0;
        }
        self.windows[self.current].sum as f64 / elapsed as f64
    }
}

#[derive(Debug, Clone)]
struct Interval {
    length_s: u32,
    latency: [TimedAverage; 3],
}

/// How a request ended, for `BlockStats::record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctOutcome {
    Done,
    Failed,
    /// Refused before it was issued.
    Invalid,
}

/// A request in flight: what `start` returns and `done`/`failed` consume.
#[derive(Debug, Clone, Copy)]
pub struct AcctCookie {
    bytes: u64,
    start_ns: i64,
    kind: AcctType,
}

/// The counters of one backend (QEMU's BlockAcctStats).
#[derive(Debug, Clone)]
pub struct BlockStats {
    nr_bytes: [u64; 3],
    nr_ops: [u64; 3],
    invalid_ops: [u64; 3],
    failed_ops: [u64; 3],
    total_time_ns: [u64; 3],
    merged: [u64; 3],
    last_access_ns: i64,
    intervals: Vec<Interval>,
    account_invalid: bool,
    account_failed: bool,
}

impl Default for BlockStats {
    fn default() -> Self {
        BlockStats::new(true, true)
    }
}

impl BlockStats {
    /// `account_invalid`/`account_failed` are the -drive `stats-account-*` options
    /// (both default to on).
    pub fn new(account_invalid: bool, account_failed: bool) -> BlockStats {
        BlockStats {
            nr_bytes: [0; 3],
            nr_ops: [0; 3],
            invalid_ops: [0; 3],
            failed_ops: [0; 3],
            total_time_ns: [0; 3],
            merged: [0; 3],
            last_access_ns: 0,
            intervals: Vec::new(),
            account_invalid,
            account_failed,
        }
    }

    /// Accounting as -drive sets it up: `stats-account-invalid`,
    /// `stats-account-failed` (default on) and the `stats-intervals` list
    /// (an array, an object keyed "0", "1"..., or dotted `stats-intervals.N`).
    pub fn from_drive_options(opts: &Map<String, Value>, now: i64) -> BlockResult<BlockStats> {
        let inv = get_bool(opts, "stats-account-invalid")?.unwrap_or(true);
        let fail = get_bool(opts, "stats-account-failed")?.unwrap_or(true);
        let mut s = BlockStats::new(inv, fail);
        let mut items: Vec<(u64, Value)> = Vec::new();
        match opts.get("stats-intervals") {
            Some(Value::Array(a)) => {
                items.extend(a.iter().cloned().enumerate().map(|(i, v)| (i as u64, v)))
            }
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let i = k.parse::<u64>().map_err(|_| {
                        BlockError::InvalidArgument(format!("Invalid option stats-intervals.{}", k))
                    })?;
                    items.push((i, v.clone()));
                }
            }
            _ => {}
        }
        for (k, v) in opts {
            if let Some(idx) = k.strip_prefix("stats-intervals.") {
                let i = idx.parse::<u64>().map_err(|_| {
                    BlockError::InvalidArgument(format!("Invalid option stats-intervals.{}", idx))
                })?;
                items.push((i, v.clone()));
            }
        }
        items.sort_by_key(|(i, _)| *i);
        for (_, v) in items {
            let len = match &v {
                Value::String(st) => st
                    .parse::<u64>()
                    .ok()
                    .filter(|l| (1..=u64::from(u32::MAX)).contains(l))
                    .ok_or_else(|| {
                        BlockError::InvalidArgument(format!("Invalid interval length: {}", st))
                    })?,
                Value::Number(n) => n
                    .as_i64()
                    .filter(|l| (1..=i64::from(u32::MAX)).contains(l))
                    .map(|l| l as u64)
                    .ok_or_else(|| {
                        BlockError::InvalidArgument(format!("Invalid interval length: {}", n))
                    })?,
                _ => {
                    return Err(BlockError::InvalidArgument(
                        "The specification of stats-intervals is invalid".into(),
                    ))
                }
            };
            s.add_interval(len as u32, now);
        }
        Ok(s)
    }

    pub fn set_account_invalid(&mut self, on: bool) {
        self.account_invalid = on;
    }

    pub fn set_account_failed(&mut self, on: bool) {
        self.account_failed = on;
    }

    /// Adds a `stats-intervals` entry (seconds); reported in the order added.
    pub fn add_interval(&mut self, length_s: u32, now: i64) {
        let period = u64::from(length_s) * 1_000_000_000;
        self.intervals.push(Interval {
            length_s,
            latency: [
                TimedAverage::new(period, now),
                TimedAverage::new(period, now),
                TimedAverage::new(period, now),
            ],
        });
    }

    /// Begins accounting a request of `bytes` bytes.
    pub fn start(&self, kind: AcctType, bytes: u64, now: i64) -> AcctCookie {
        AcctCookie {
            bytes,
            start_ns: now,
            kind,
        }
    }

    fn latency(cookie: &AcctCookie, now: i64) -> u64 {
        if QTEST_MODE.load(Ordering::Relaxed) {
            QTEST_LATENCY_NS as u64
        } else {
            now.saturating_sub(cookie.start_ns).max(0) as u64
        }
    }

    /// A request completed successfully.
    pub fn done(&mut self, cookie: AcctCookie, now: i64) {
        let k = cookie.kind as usize;
        let lat = Self::latency(&cookie, now);
        self.nr_bytes[k] = self.nr_bytes[k].saturating_add(cookie.bytes);
        self.nr_ops[k] += 1;
        self.total_time_ns[k] = self.total_time_ns[k].saturating_add(lat);
        self.last_access_ns = now;
        for iv in &mut self.intervals {
            iv.latency[k].account(lat, now);
        }
    }

    /// A request failed; its time counts only with `account_failed`.
    pub fn failed(&mut self, cookie: AcctCookie, now: i64) {
        let k = cookie.kind as usize;
        self.failed_ops[k] += 1;
        if self.account_failed {
            let lat = Self::latency(&cookie, now);
            self.total_time_ns[k] = self.total_time_ns[k].saturating_add(lat);
            self.last_access_ns = now;
            for iv in &mut self.intervals {
                iv.latency[k].account(lat, now);
            }
        }
    }

    /// Books a finished request whose latency the caller measured (qemu-io's
    /// aio commands report this way); `now` is the completion time.
    pub fn record(
        &mut self,
        kind: AcctType,
        bytes: u64,
        latency_ns: u64,
        outcome: AcctOutcome,
        now: i64,
    ) {
        let cookie = AcctCookie {
            bytes,
            start_ns: now.saturating_sub(latency_ns.min(i64::MAX as u64) as i64),
            kind,
        };
        match outcome {
            AcctOutcome::Done => self.done(cookie, now),
            AcctOutcome::Failed => self.failed(cookie, now),
            AcctOutcome::Invalid => self.invalid(kind, now),
        }
    }

    /// A request refused before any I/O (out of range, no medium...).
    pub fn invalid(&mut self, kind: AcctType, now: i64) {
        self.invalid_ops[kind as usize] += 1;
        if self.account_invalid {
            self.last_access_ns = now;
        }
    }

    /// `n` requests were merged into others (virtio-blk request merging).
    pub fn merged(&mut self, kind: AcctType, n: u64) {
        self.merged[kind as usize] += n;
    }

    pub fn bytes(&self, kind: AcctType) -> u64 {
        self.nr_bytes[kind as usize]
    }

    pub fn ops(&self, kind: AcctType) -> u64 {
        self.nr_ops[kind as usize]
    }

    pub fn failed_ops(&self, kind: AcctType) -> u64 {
        self.failed_ops[kind as usize]
    }

    pub fn invalid_ops(&self, kind: AcctType) -> u64 {
        self.invalid_ops[kind as usize]
    }

    /// Nanoseconds since the last accounted access, None before the first one.
    pub fn idle_time_ns(&self, now: i64) -> Option<i64> {
        (self.last_access_ns > 0).then(|| now - self.last_access_ns)
    }

    /// BlockDeviceStats as query-blockstats reports a backend
    /// (`wr_highest_offset` comes from the root node: pass it in).
    pub fn to_json(&mut self, wr_highest_offset: u64, now: i64) -> Value {
        let (r, w, f) = (0, 1, 2);
        let mut m = Map::new();
        m.insert("rd_bytes".into(), json!(self.nr_bytes[r]));
        m.insert("wr_bytes".into(), json!(self.nr_bytes[w]));
        m.insert("rd_operations".into(), json!(self.nr_ops[r]));
        m.insert("wr_operations".into(), json!(self.nr_ops[w]));
        m.insert("flush_operations".into(), json!(self.nr_ops[f]));
        m.insert("flush_total_time_ns".into(), json!(self.total_time_ns[f]));
        m.insert("wr_total_time_ns".into(), json!(self.total_time_ns[w]));
        m.insert("rd_total_time_ns".into(), json!(self.total_time_ns[r]));
        m.insert("wr_highest_offset".into(), json!(wr_highest_offset));
        m.insert("rd_merged".into(), json!(self.merged[r]));
        m.insert("wr_merged".into(), json!(self.merged[w]));
        if let Some(idle) = self.idle_time_ns(now) {
            m.insert("idle_time_ns".into(), json!(idle));
        }
        m.insert("failed_rd_operations".into(), json!(self.failed_ops[r]));
        m.insert("failed_wr_operations".into(), json!(self.failed_ops[w]));
        m.insert("failed_flush_operations".into(), json!(self.failed_ops[f]));
        m.insert("invalid_rd_operations".into(), json!(self.invalid_ops[r]));
        m.insert("invalid_wr_operations".into(), json!(self.invalid_ops[w]));
        m.insert(
            "invalid_flush_operations".into(),
            json!(self.invalid_ops[f]),
        );
        m.insert("account_invalid".into(), json!(self.account_invalid));
        m.insert("account_failed".into(), json!(self.account_failed));
        let timed: Vec<Value> = self
            .intervals
            .iter_mut()
            .map(|iv| {
                let [rd, wr, fl] = &mut iv.latency;
                json!({
                    "interval_length": iv.length_s,
                    "min_rd_latency_ns": rd.min(now),
                    "max_rd_latency_ns": rd.max(now),
                    "avg_rd_latency_ns": rd.avg(now),
                    "min_wr_latency_ns": wr.min(now),
                    "max_wr_latency_ns": wr.max(now),
                    "avg_wr_latency_ns": wr.avg(now),
                    "min_flush_latency_ns": fl.min(now),
                    "max_flush_latency_ns": fl.max(now),
                    "avg_flush_latency_ns": fl.avg(now),
                    "avg_rd_queue_depth": rd.queue_depth(now),
                    "avg_wr_queue_depth": wr.queue_depth(now),
                })
            })
            .collect();
        m.insert("timed_stats".into(), Value::Array(timed));
        Value::Object(m)
    }
}

/// qemu-io's accounting hook fed into a backend's `BlockStats` (aio_read,
/// aio_write, aio_flush and `-i` book here, as in QEMU 2.8).
pub struct StatsAccounting(pub Arc<Mutex<BlockStats>>);

impl crate::qemu_io::Accounting for StatsAccounting {
    fn share(&self) -> Box<dyn crate::qemu_io::Accounting> {
        Box::new(StatsAccounting(self.0.clone()))
    }

    fn account(&mut self, ev: crate::qemu_io::AcctEvent) {
        use crate::qemu_io::{AcctKind, AcctResult};
        let kind = match ev.kind {
            AcctKind::Read => AcctType::Read,
            AcctKind::Write => AcctType::Write,
            AcctKind::Flush => AcctType::Flush,
        };
        let outcome = match ev.result {
            AcctResult::Done => AcctOutcome::Done,
            AcctResult::Failed => AcctOutcome::Failed,
            AcctResult::Invalid => AcctOutcome::Invalid,
        };
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.record(kind, ev.bytes, ev.latency_ns, outcome, acct_now());
    }
}

/// BlockDeviceStats of a node that is not a backend's accounting point: all zero
/// except `wr_highest_offset`, as QEMU 2.8 reports `parent`/`backing`/query-nodes.
pub fn node_stats_json(wr_highest_offset: u64) -> Value {
    let mut s = BlockStats::new(false, false);
    s.to_json(wr_highest_offset, 0)
}

/// One BlockStats entry for a node (and, recursively, its file child as
/// `parent` and, with `with_backing`, its backing node as `backing`).
fn node_entry(node: &NodeRef, with_backing: bool, base: Option<Value>) -> Value {
    let (name, file, backing, highest) = {
        let g = lock(node);
        (
            g.name().to_string(),
            g.file(),
            g.backing(),
            g.tracking().wr_highest_offset,
        )
    };
    let mut stats = base.unwrap_or_else(|| node_stats_json(highest));
    stats["wr_highest_offset"] = json!(highest);
    let mut m = Map::new();
    m.insert("node-name".into(), json!(name));
    m.insert("stats".into(), stats);
    if let Some(f) = file {
        m.insert("parent".into(), node_entry(&f, with_backing, None));
    }
    if let (true, Some(b)) = (with_backing, backing) {
        m.insert("backing".into(), node_entry(&b, with_backing, None));
    }
    Value::Object(m)
}

/// query-blockstats' reply: one entry per backend (its accounting, the root's
/// `wr_highest_offset`, `parent` and `backing` trees), or with `query_nodes` one
/// entry per node (zero counters but `wr_highest_offset`, `parent` only).
pub fn query_blockstats(graph: &BlockGraph, query_nodes: bool, now: i64) -> Value {
    if query_nodes {
        return Value::Array(
            graph
                .nodes()
                .iter()
                .map(|n| node_entry(n, false, None))
                .collect(),
        );
    }
    let list = graph
        .backends()
        .iter()
        .map(|b| {
            let stats = b.stats().to_json(0, now);
            let mut m = Map::new();
            m.insert("device".into(), json!(b.name()));
            match b.root() {
                Some(root) => {
                    if let Value::Object(e) = node_entry(&root, true, Some(stats)) {
                        m.extend(e);
                    }
                }
                None => {
                    m.insert("stats".into(), stats);
                }
            }
            Value::Object(m)
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_counts_bytes_ops_and_time() {
        let mut s = BlockStats::default();
        let c = s.start(AcctType::Write, 4096, 100);
        s.done(c, 350);
        let c = s.start(AcctType::Read, 512, 400);
        s.done(c, 500);
        let v = s.to_json(4096, 1500);
        assert_eq!(v["wr_bytes"], 4096);
        assert_eq!(v["wr_operations"], 1);
        assert_eq!(v["wr_total_time_ns"], 250);
        assert_eq!(v["rd_bytes"], 512);
        assert_eq!(v["rd_total_time_ns"], 100);
        assert_eq!(v["idle_time_ns"], 1000);
        assert_eq!(v["wr_highest_offset"], 4096);
        assert_eq!(v["timed_stats"], json!([]));
    }

    #[test]
    fn idle_time_is_absent_before_any_access() {
        let mut s = BlockStats::default();
        assert!(s.to_json(0, 10).get("idle_time_ns").is_none());
    }

    #[test]
    fn failed_time_is_counted_only_with_account_failed() {
        let mut on = BlockStats::new(true, true);
        let mut off = BlockStats::new(true, false);
        for s in [&mut on, &mut off] {
            let c = s.start(AcctType::Flush, 0, 10);
            s.failed(c, 30);
        }
        assert_eq!(on.failed_ops(AcctType::Flush), 1);
        assert_eq!(on.to_json(0, 40)["flush_total_time_ns"], 20);
        assert_eq!(off.failed_ops(AcctType::Flush), 1);
        assert_eq!(off.to_json(0, 40)["flush_total_time_ns"], 0);
        assert!(off.idle_time_ns(40).is_none());
    }

    #[test]
    fn invalid_requests_touch_last_access_only_with_account_invalid() {
        let mut s = BlockStats::new(false, true);
        s.invalid(AcctType::Read, 5);
        assert_eq!(s.invalid_ops(AcctType::Read), 1);
        assert!(s.idle_time_ns(10).is_none());
        s.set_account_invalid(true);
        s.invalid(AcctType::Read, 7);
        assert_eq!(s.idle_time_ns(10), Some(3));
    }

    #[test]
    fn timed_stats_report_min_max_avg_per_interval() {
        let mut s = BlockStats::default();
        s.add_interval(10, 0);
        s.add_interval(60, 0);
        for (start, end) in [(0, 100), (200, 500)] {
            let c = s.start(AcctType::Read, 512, start);
            s.done(c, end);
        }
        let v = s.to_json(0, 1000);
        let t = &v["timed_stats"];
        assert_eq!(t[0]["interval_length"], 10);
        assert_eq!(t[1]["interval_length"], 60);
        assert_eq!(t[0]["min_rd_latency_ns"], 100);
        assert_eq!(t[0]["max_rd_latency_ns"], 300);
        assert_eq!(t[0]["avg_rd_latency_ns"], 200);
        assert_eq!(t[0]["min_wr_latency_ns"], 0);
    }

    #[test]
    fn node_stats_are_zero_but_highest_offset() {
        let v = node_stats_json(65536);
        assert_eq!(v["wr_highest_offset"], 65536);
        assert_eq!(v["rd_operations"], 0);
        assert!(v.get("idle_time_ns").is_none());
    }

    #[test]
    fn query_blockstats_nests_parent_and_reports_backend_counters() {
        let dir = std::env::temp_dir().join(format!("stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("s.raw").to_string_lossy().into_owned();
        std::fs::write(&img, vec![0u8; 65536]).unwrap();
        let mut g = BlockGraph::new();
        let o = json!({"driver": "raw", "node-name": "fmt",
                       "file": {"driver": "file", "node-name": "proto", "filename": img}});
        let n = g.open(o.as_object().unwrap()).unwrap();
        g.add_backend("drive0", Some(n)).unwrap();
        g.add_backend("empty", None).unwrap();
        g.backend("drive0")
            .unwrap()
            .write(4096, &[1u8; 512], false)
            .unwrap();
        let v = query_blockstats(&g, false, realtime_ns());
        assert_eq!(v[0]["device"], "drive0");
        assert_eq!(v[0]["node-name"], "fmt");
        assert_eq!(v[0]["stats"]["wr_operations"], 1);
        assert_eq!(v[0]["stats"]["wr_highest_offset"], 4608);
        assert_eq!(v[0]["parent"]["node-name"], "proto");
        assert_eq!(v[0]["parent"]["stats"]["wr_highest_offset"], 4608);
        assert_eq!(v[0]["parent"]["stats"]["wr_operations"], 0);
        assert!(v[0].get("backing").is_none());
        assert_eq!(v[1]["device"], "empty");
        assert!(v[1].get("node-name").is_none());
        let nodes = query_blockstats(&g, true, 0);
        assert_eq!(nodes.as_array().unwrap().len(), 2);
        std::fs::remove_file(&img).unwrap();
    }

    #[test]
    fn drive_options_set_flags_and_intervals_in_order() {
        let o = json!({"stats-account-invalid": "off", "stats-intervals.1": "60", "stats-intervals.0": 10});
        let mut s = BlockStats::from_drive_options(o.as_object().unwrap(), 0).unwrap();
        let v = s.to_json(0, 0);
        assert_eq!(v["account_invalid"], false);
        assert_eq!(v["account_failed"], true);
        assert_eq!(v["timed_stats"][0]["interval_length"], 10);
        assert_eq!(v["timed_stats"][1]["interval_length"], 60);
        let bad = json!({"stats-intervals": ["0"]});
        let e = BlockStats::from_drive_options(bad.as_object().unwrap(), 0).unwrap_err();
        assert_eq!(e.to_string(), "Invalid interval length: 0");
    }

    #[test]
    fn record_books_measured_latency() {
        let mut s = BlockStats::default();
        s.record(AcctType::Write, 512, 40, AcctOutcome::Done, 1000);
        s.record(AcctType::Write, 512, 10, AcctOutcome::Failed, 1000);
        s.record(AcctType::Read, 0, 0, AcctOutcome::Invalid, 1000);
        let v = s.to_json(0, 1000);
        assert_eq!(v["wr_operations"], 1);
        assert_eq!(v["wr_total_time_ns"], 50);
        assert_eq!(v["failed_wr_operations"], 1);
        assert_eq!(v["invalid_rd_operations"], 1);
    }

    #[test]
    fn qemu_io_aio_commands_feed_backend_stats() {
        let mut g = BlockGraph::new();
        let o = json!({"driver": "null-co", "node-name": "nul", "size": 1 << 20});
        let n = g.open(o.as_object().unwrap()).unwrap();
        g.add_backend("drive0", Some(n.clone())).unwrap();
        let handle = g.backend("drive0").unwrap().stats_handle();
        let mut io = crate::qemu_io::QemuIo::new();
        io.set_accounting(Box::new(StatsAccounting(handle)));
        let mut out = String::new();
        for c in [
            "aio_write 0 4k",
            "aio_read 0 512",
            "aio_read -i 0 1",
            "aio_flush",
            "read 0 512",
        ] {
            io.run(Some(&n), c, &mut out).unwrap();
        }
        let v = query_blockstats(&g, false, realtime_ns());
        let st = &v[0]["stats"];
        assert_eq!(st["wr_bytes"], 4096);
        assert_eq!(st["rd_operations"], 1);
        assert_eq!(st["invalid_rd_operations"], 1);
        assert_eq!(st["flush_operations"], 1);
        assert_eq!(st["wr_highest_offset"], 4096);
    }
}
