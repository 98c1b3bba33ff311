//! Throttle groups: backends sharing one set of limits, served round-robin, and
//! the queue of requests waiting for their turn.
//!
//! The main loop is synchronous, so a request is not suspended here: the caller
//! `submit`s it and gets it back at once (`Admission::Go`) or later from
//! `run_timers`, which it calls when the deadline from `next_deadline` has come
//! on the throttle clock. Each group has one timer per direction (reads,
//! writes); when it fires, the member holding the token releases one request,
//! then the token moves to the next member with requests waiting. As in QEMU, a
//! request that could go immediately while others are queued is released on
//! the next clock tick (`now + 1`), so under qtest it waits for `clock_step`.

use std::collections::VecDeque;

use crate::error::{BlockError, BlockResult};
use crate::throttle::{ThrottleConfig, ThrottleState};

/// What `submit` decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// Issue the request now (it has been booked against the limits).
    Go(T),
    /// Queued; it comes back from `run_timers`.
    Queued,
}

struct Member<T> {
    backend: String,
    /// Per direction (0 = read, 1 = write): size and request.
    queue: [VecDeque<(u64, T)>; 2],
}

struct Group<T> {
    name: String,
    state: ThrottleState,
    members: Vec<Member<T>>,
    /// Backend holding the round-robin token, per direction.
    tokens: [Option<String>; 2],
    /// Armed timer per direction: deadline and the member it fires for.
    timers: [Option<(i64, String)>; 2],
}

impl<T> Group<T> {
    fn pos(&self, backend: &str) -> Option<usize> {
        self.members.iter().position(|m| m.backend == backend)
    }

    fn pending(&self, i: usize, d: usize) -> bool {
        !self.members[i].queue[d].is_empty()
    }

    /// The member whose turn it is: the first after the token holder with
    /// queued requests, else the submitter.
    fn next_token(&self, me: usize, d: usize) -> usize {
        let n = self.members.len();
        let start = self.tokens[d]
            .as_deref()
            .and_then(|t| self.pos(t))
            .unwrap_or(me);
        (1..=n)
            .map(|k| (start + k) % n)
            .find(|&i| self.pending(i, d))
            .unwrap_or(me)
    }

    /// Arms the direction's timer for `token` when the limits say wait.
    fn schedule_timer(&mut self, token: usize, d: usize, now: i64) -> bool {
        if self.timers[d].is_some() {
            return true;
        }
        let wait = self.state.compute_wait(d == 1, now);
        if wait > 0 {
            let b = self.members[token].backend.clone();
            self.timers[d] = Some((now + wait, b.clone()));
            self.tokens[d] = Some(b);
            return true;
        }
        false
    }

    /// After a request of member `me` went: lines up the next queued one. This
    /// mirrors QEMU running it inside the released request, where the member's
    /// own next request may go straight away when the limits allow.
    fn schedule_next(&mut self, me: usize, d: usize, now: i64, out: &mut Vec<(String, T)>) {
        loop {
            let token = self.next_token(me, d);
            if !self.pending(token, d) || self.schedule_timer(token, d, now) {
                return;
            }
            if self.pending(me, d) {
                self.tokens[d] = Some(self.members[me].backend.clone());
                self.release(me, d, out);
                continue;
            }
            let b = self.members[token].backend.clone();
            self.timers[d] = Some((now + 1, b.clone()));
            self.tokens[d] = Some(b);
            return;
        }
    }

    /// Pops member `i`'s next request in direction `d` and books it.
    fn release(&mut self, i: usize, d: usize, out: &mut Vec<(String, T)>) -> bool {
        let Some((bytes, req)) = self.members[i].queue[d].pop_front() else {
            return false;
        };
        self.state.account(d == 1, bytes);
        out.push((self.members[i].backend.clone(), req));
        true
    }

    fn fire(&mut self, d: usize, now: i64, out: &mut Vec<(String, T)>) {
        let Some((_, backend)) = self.timers[d].take() else {
            return;
        };
        let Some(i) = self.pos(&backend) else {
            return;
        };
        self.release(i, d, out);
        self.schedule_next(i, d, now, out);
    }
}

/// Every throttle group, keyed by group name; a backend is in at most one.
pub struct ThrottleGroups<T> {
    groups: Vec<Group<T>>,
}

impl<T> Default for ThrottleGroups<T> {
    fn default() -> Self {
        ThrottleGroups { groups: Vec::new() }
    }
}

fn dir(is_write: bool) -> usize {
    usize::from(is_write)
}

impl<T> ThrottleGroups<T> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, backend: &str) -> Option<(usize, usize)> {
        self.groups
            .iter()
            .enumerate()
            .find_map(|(g, grp)| grp.pos(backend).map(|m| (g, m)))
    }

    /// True when the backend has limits.
    pub fn is_throttled(&self, backend: &str) -> bool {
        self.find(backend).is_some()
    }

    /// The group a backend belongs to (query-block's `group`).
    pub fn group_of(&self, backend: &str) -> Option<&str> {
        self.find(backend)
            .map(|(g, _)| self.groups[g].name.as_str())
    }

    /// The effective limits of a backend's group (query-block's throttle fields).
    pub fn config_of(&self, backend: &str) -> Option<&ThrottleConfig> {
        self.find(backend)
            .map(|(g, _)| self.groups[g].state.config())
    }

    /// Requests a backend has waiting.
    pub fn pending(&self, backend: &str) -> usize {
        self.find(backend)
            .map(|(g, m)| {
                let q = &self.groups[g].members[m].queue;
                q[0].len() + q[1].len()
            })
            .unwrap_or(0)
    }

    fn register(&mut self, backend: &str, group: &str, now: i64) {
        let g = match self.groups.iter().position(|g| g.name == group) {
            Some(g) => g,
            None => {
                self.groups.push(Group {
                    name: group.to_string(),
                    state: ThrottleState::new(&ThrottleConfig::default(), now),
                    members: Vec::new(),
                    tokens: [None, None],
                    timers: [None, None],
                });
                self.groups.len() - 1
            }
        };
        let grp = &mut self.groups[g];
        grp.members.push(Member {
            backend: backend.to_string(),
            queue: [VecDeque::new(), VecDeque::new()],
        });
        for t in &mut grp.tokens {
            if t.is_none() {
                *t = Some(backend.to_string());
            }
        }
    }

    /// Removes a backend's limits; its queued requests are released (booked)
    /// and returned for the caller to issue.
    pub fn disable(&mut self, backend: &str, now: i64) -> Vec<(String, T)> {
        let mut out = Vec::new();
        let Some((g, m)) = self.find(backend) else {
            return out;
        };
        let grp = &mut self.groups[g];
        for d in 0..2 {
            while grp.release(m, d, &mut out) {}
        }
        let n = grp.members.len();
        for d in 0..2 {
            if grp.tokens[d].as_deref() == Some(backend) {
                grp.tokens[d] = (n > 1).then(|| grp.members[(m + 1) % n].backend.clone());
            }
        }
        grp.members.remove(m);
        for d in 0..2 {
            if grp.timers[d].as_ref().is_some_and(|(_, b)| b == backend) {
                grp.timers[d] = None;
                if let Some(t) = grp.tokens[d].as_deref().and_then(|t| grp.pos(t)) {
                    grp.schedule_next(t, d, now, &mut out);
                }
            }
        }
        if grp.members.is_empty() {
            self.groups.remove(g);
        }
        out
    }

    /// block_set_io_throttle for `backend`: validates, joins or changes group
    /// (`group` None keeps the current one, or uses the backend name for a new
    /// one), applies the limits to the whole group, or drops them when all are 0.
    /// Returns requests released by the change, for the caller to issue.
    pub fn set_limits(
        &mut self,
        backend: &str,
        group: Option<&str>,
        cfg: &ThrottleConfig,
        now: i64,
    ) -> BlockResult<Vec<(String, T)>> {
        cfg.validate()?;
        let mut out = Vec::new();
        if !cfg.enabled() {
            return Ok(self.disable(backend, now));
        }
        match self.group_of(backend) {
            None => self.register(backend, group.unwrap_or(backend), now),
            Some(cur) if group.is_some_and(|g| g != cur) => {
                out.extend(self.disable(backend, now));
                self.register(backend, group.unwrap_or(backend), now);
            }
            Some(_) => {}
        }
        let (g, m) = self
            .find(backend)
            .ok_or_else(|| BlockError::Generic("throttle group registration failed".into()))?;
        let grp = &mut self.groups[g];
        grp.state = ThrottleState::new(cfg, now);
        grp.timers = [None, None];
        for d in 0..2 {
            while grp.release(m, d, &mut out) {}
            grp.schedule_next(m, d, now, &mut out);
        }
        Ok(out)
    }

    /// Asks whether a request of `bytes` may go now. A backend without limits
    /// always gets `Go`.
    pub fn submit(
        &mut self,
        backend: &str,
        is_write: bool,
        bytes: u64,
        req: T,
        now: i64,
    ) -> Admission<T> {
        let Some((g, me)) = self.find(backend) else {
            return Admission::Go(req);
        };
        let d = dir(is_write);
        let grp = &mut self.groups[g];
        let token = grp.next_token(me, d);
        let must_wait = grp.schedule_timer(token, d, now);
        if must_wait || grp.pending(me, d) {
            grp.members[me].queue[d].push_back((bytes, req));
            return Admission::Queued;
        }
        grp.state.account(is_write, bytes);
        let mut out = Vec::new();
        grp.schedule_next(me, d, now, &mut out);
        // Nothing is queued for `me`, so scheduling can only arm a timer here.
        debug_assert!(out.is_empty());
        Admission::Go(req)
    }

    /// The earliest armed timer (ns on the throttle clock).
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .iter()
            .flat_map(|g| g.timers.iter().flatten().map(|(t, _)| *t))
            .min()
    }

    /// Fires every timer due at `now`; returns the released requests (already
    /// booked) with their backend names, in release order.
    pub fn run_timers(&mut self, now: i64) -> Vec<(String, T)> {
        let mut out = Vec::new();
        loop {
            let due = self.groups.iter().enumerate().find_map(|(g, grp)| {
                (0..2).find_map(|d| {
                    grp.timers[d]
                        .as_ref()
                        .is_some_and(|(t, _)| *t <= now)
                        .then_some((g, d))
                })
            });
            let Some((g, d)) = due else {
                return out;
            };
            self.groups[g].fire(d, now, &mut out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throttle::ThrottleClock;
    use serde_json::json;
    use std::cell::Cell;

    /// A clock that moves only when told, like the qtest virtual clock.
    struct FakeClock(Cell<i64>);

    impl ThrottleClock for FakeClock {
        fn now_ns(&self) -> i64 {
            self.0.get()
        }
    }

    fn cfg(v: serde_json::Value) -> ThrottleConfig {
        ThrottleConfig::from_qmp(v.as_object().unwrap()).unwrap()
    }

    #[test]
    fn iops_limit_releases_queued_requests_as_the_clock_steps() {
        let clock = FakeClock(Cell::new(0));
        let mut t: ThrottleGroups<u32> = ThrottleGroups::new();
        t.set_limits("d0", None, &cfg(json!({"iops": 10})), clock.now_ns())
            .unwrap();
        let mut went = Vec::new();
        for i in 0..5 {
            if let Admission::Go(r) = t.submit("d0", false, 512, i, clock.now_ns()) {
                went.push(r);
            }
        }
        assert_eq!(went, vec![0, 1]);
        assert_eq!(t.pending("d0"), 3);
        assert_eq!(t.next_deadline(), Some(100_000_000));
        assert!(t.run_timers(99_999_999).is_empty());
        clock.0.set(100_000_000);
        let r = t.run_timers(clock.now_ns());
        assert_eq!(r, vec![("d0".to_string(), 2)]);
        clock.0.set(1_000_000_000);
        let r: Vec<u32> = t
            .run_timers(clock.now_ns())
            .into_iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(r, vec![3, 4]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn group_members_share_limits_and_alternate() {
        let mut t: ThrottleGroups<(&str, u32)> = ThrottleGroups::new();
        let c = cfg(json!({"iops": 10}));
        t.set_limits("a", Some("g"), &c, 0).unwrap();
        t.set_limits("b", Some("g"), &c, 0).unwrap();
        assert_eq!(t.group_of("b"), Some("g"));
        assert!(matches!(
            t.submit("a", true, 512, ("a", 0), 0),
            Admission::Go(_)
        ));
        assert!(matches!(
            t.submit("a", true, 512, ("a", 1), 0),
            Admission::Go(_)
        ));
        for i in 2..5 {
            assert_eq!(t.submit("a", true, 512, ("a", i), 0), Admission::Queued);
            assert_eq!(t.submit("b", true, 512, ("b", i), 0), Admission::Queued);
        }
        let mut order = Vec::new();
        let mut now = 0;
        while let Some(d) = t.next_deadline() {
            now = d.max(now);
            order.extend(t.run_timers(now).into_iter().map(|(_, r)| r));
        }
        assert_eq!(order.len(), 6);
        // Round-robin: no backend gets two turns in a row while the other waits.
        let firsts: Vec<&str> = order.iter().map(|r| r.0).collect();
        assert_eq!(firsts, vec!["a", "b", "a", "b", "a", "b"]);
        // 10 iops shared: six requests take at least 0.5 s.
        assert!(now >= 500_000_000, "{}", now);
    }

    #[test]
    fn zero_limits_remove_the_backend_and_release_its_queue() {
        let mut t: ThrottleGroups<u32> = ThrottleGroups::new();
        t.set_limits("d", None, &cfg(json!({"bps": 512})), 0)
            .unwrap();
        assert!(matches!(t.submit("d", false, 4096, 0, 0), Admission::Go(0)));
        assert_eq!(t.submit("d", false, 4096, 1, 0), Admission::Queued);
        let out = t
            .set_limits("d", None, &ThrottleConfig::default(), 0)
            .unwrap();
        assert_eq!(out, vec![("d".to_string(), 1)]);
        assert!(!t.is_throttled("d"));
        assert_eq!(t.next_deadline(), None);
        assert!(matches!(
            t.submit("d", false, 1 << 30, 2, 0),
            Admission::Go(2)
        ));
    }

    #[test]
    fn invalid_limits_are_refused_and_change_nothing() {
        let mut t: ThrottleGroups<u32> = ThrottleGroups::new();
        let e = t
            .set_limits("d", None, &cfg(json!({"bps": 1, "bps_wr": 1})), 0)
            .unwrap_err();
        assert!(e.to_string().contains("cannot be used at the same time"));
        assert!(!t.is_throttled("d"));
    }

    #[test]
    fn moving_to_another_group_leaves_the_old_one() {
        let mut t: ThrottleGroups<u32> = ThrottleGroups::new();
        let c = cfg(json!({"iops": 100}));
        t.set_limits("d", None, &c, 0).unwrap();
        assert_eq!(t.group_of("d"), Some("d"));
        t.set_limits("d", Some("other"), &c, 0).unwrap();
        assert_eq!(t.group_of("d"), Some("other"));
        assert_eq!(t.config_of("d").unwrap().buckets[3].avg, 100.0);
    }

    /// A replay of QEMU's iotest 093 against the group logic: drives in one
    /// group, qemu-io aio requests, a qtest-style clock that warps from timer
    /// deadline to timer deadline.
    struct Sim {
        t: ThrottleGroups<(usize, bool, u64)>,
        now: i64,
        /// Per drive: rd_bytes, rd_ops, wr_bytes, wr_ops.
        stats: Vec<[u64; 4]>,
    }

    impl Sim {
        fn new(n: usize) -> Sim {
            Sim {
                t: ThrottleGroups::new(),
                now: 0,
                stats: vec![[0; 4]; n],
            }
        }

        fn done(&mut self, (d, w, b): (usize, bool, u64)) {
            let s = &mut self.stats[d];
            if w {
                s[2] += b;
                s[3] += 1;
            } else {
                s[0] += b;
                s[1] += 1;
            }
        }

        fn submit(&mut self, d: usize, w: bool, b: u64) {
            if let Admission::Go(r) =
                self.t
                    .submit(&format!("drive{}", d), w, b, (d, w, b), self.now)
            {
                self.done(r);
            }
        }

        /// qtest's clock_step: warp to each timer deadline in turn, firing it.
        fn clock_step(&mut self, ns: i64) {
            let dest = self.now + ns;
            while let Some(d) = self.t.next_deadline().filter(|&d| d <= dest) {
                self.now = d.max(self.now);
                for (_, r) in self.t.run_timers(self.now) {
                    self.done(r);
                }
            }
            self.now = dest;
        }

        fn configure(&mut self, n: usize, p: &serde_json::Value) {
            for d in 0..n {
                let out = self
                    .t
                    .set_limits(
                        &format!("drive{}", d),
                        Some("test"),
                        &cfg(p.clone()),
                        self.now,
                    )
                    .unwrap();
                for (_, r) in out {
                    self.done(r);
                }
            }
        }

        fn run(&mut self, n: usize, seconds: i64, p: &serde_json::Value) {
            let g = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let ns = seconds * 1_000_000_000;
            self.clock_step(ns);
            let rd = [
                g("bps") / 512 / 2,
                g("bps_rd") / 512,
                g("iops") / 2,
                g("iops_rd"),
            ];
            let wr = [
                g("bps") / 512 / 2,
                g("bps_wr") / 512,
                g("iops") / 2,
                g("iops_wr"),
            ];
            let rd_nr = rd.iter().max().unwrap() * seconds as u64 * 2 / n as u64;
            let wr_nr = wr.iter().max().unwrap() * seconds as u64 * 2 / n as u64;
            for _ in 0..rd_nr {
                for d in 0..n {
                    self.submit(d, false, 512);
                }
            }
            for _ in 0..wr_nr {
                for d in 0..n {
                    self.submit(d, true, 512);
                }
            }
            let start = self.stats.clone();
            self.clock_step(ns);
            for (d, (end, start)) in self.stats.iter().zip(&start).take(n).enumerate() {
                let diff: Vec<u64> = (0..4).map(|k| end[k] - start[k]).collect();
                let check = |limit: u64, num: u64| {
                    let (num, limit, s, n) = (num as f64, limit as f64, seconds as f64, n as f64);
                    limit == 0.0 || (num < s * limit * 1.1 / n && num > s * limit * 0.9 / n)
                };
                let ctx = format!("drive{} of {} with {} : {:?}", d, n, p, diff);
                assert!(check(g("bps"), diff[0] + diff[2]), "{}", ctx);
                assert!(check(g("bps_rd"), diff[0]), "{}", ctx);
                assert!(check(g("bps_wr"), diff[2]), "{}", ctx);
                assert!(check(g("iops"), diff[1] + diff[3]), "{}", ctx);
                assert!(check(g("iops_rd"), diff[1]), "{}", ctx);
                assert!(check(g("iops_wr"), diff[3]), "{}", ctx);
            }
        }
    }

    const PARAMS: [(&str, u64); 6] = [
        ("bps", 4096),
        ("bps_rd", 4096),
        ("bps_wr", 4096),
        ("iops", 10),
        ("iops_rd", 10),
        ("iops_wr", 10),
    ];

    #[test]
    fn iotest_093_limits_hold_for_one_to_three_drives() {
        for n in 1..=3usize {
            let mut sim = Sim::new(3);
            for (k, v) in PARAMS {
                let mut p = json!({});
                p[k] = json!(v * n as u64);
                sim.configure(n, &p);
                sim.run(n, 5, &p);
            }
        }
    }

    #[test]
    fn iotest_093_bursts_run_at_max_then_at_the_average() {
        let mut sim = Sim::new(1);
        for (k, rate) in PARAMS {
            let burst = rate * 7;
            let mut s = json!({});
            s[k] = json!(rate);
            s[format!("{}_max", k)] = json!(burst);
            s[format!("{}_max_length", k)] = json!(4);
            sim.configure(1, &s);
            sim.clock_step(1_000_000_000 * 4 * burst as i64 / rate as i64);
            let mut limits = json!({});
            limits[k] = json!(burst);
            sim.run(1, 4, &limits);
            limits[k] = json!(rate);
            sim.run(1, 5, &limits);
        }
    }
}
