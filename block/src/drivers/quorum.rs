//! `quorum`: every write goes to all children, reads are voted on (or, with
//! `read-pattern=fifo`, served by the first child that succeeds). A read whose
//! winning version has fewer than `vote-threshold` votes fails with
//! QUORUM_FAILURE; children that failed or disagreed get QUORUM_REPORT_BAD and,
//! with `rewrite-corrupted`, are rewritten with the winning data.
//!
//! Children are named `children.N` (N never reused) so that x-blockdev-change
//! can remove one and add another while the node is in use.

use std::any::Any;

use serde_json::{json, Map, Value};

use crate::driver::{Children, Driver, Extent};
use crate::error::{BlockError, BlockResult};
use crate::events::{BlockEvent, EventSink};
use crate::node::{lock, NodeRef};
use crate::options::{get_bool, get_str, Options};

/// QuorumOpType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumOpType {
    Read,
    Write,
    Flush,
}

impl QuorumOpType {
    pub fn as_str(self) -> &'static str {
        match self {
            QuorumOpType::Read => "read",
            QuorumOpType::Write => "write",
            QuorumOpType::Flush => "flush",
        }
    }
}

/// QUORUM_FAILURE's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumFailure {
    /// Device or node name of the quorum node.
    pub reference: String,
    pub sector_num: u64,
    pub sectors_count: u64,
}

impl QuorumFailure {
    pub fn to_json(&self) -> Value {
        json!({
            "reference": self.reference,
            "sector-num": self.sector_num,
            "sectors-count": self.sectors_count,
        })
    }
}

/// QUORUM_REPORT_BAD's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReportBad {
    pub op: QuorumOpType,
    /// strerror text when the child failed; None when it returned different data.
    pub error: Option<String>,
    pub node_name: String,
    pub sector_num: u64,
    pub sectors_count: u64,
}

impl QuorumReportBad {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.op.as_str()));
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
        }
        m.insert("node-name".into(), json!(self.node_name));
        m.insert("sector-num".into(), json!(self.sector_num));
        m.insert("sectors-count".into(), json!(self.sectors_count));
        Value::Object(m)
    }
}

/// The quorum driver.
pub struct QuorumDriver {
    children: Vec<(String, NodeRef)>,
    threshold: usize,
    blkverify: bool,
    rewrite_corrupted: bool,
    fifo: bool,
    next_index: u64,
    /// Name used as QUORUM_FAILURE's `reference`.
    reference: String,
    events: EventSink,
}

fn sectors(offset: u64, len: u64) -> (u64, u64) {
    (offset / 512, len.div_ceil(512))
}

fn child_name(n: &NodeRef) -> String {
    lock(n).name().to_string()
}

/// Of the candidate (key, indexes) groups in first-seen order, the winner as QEMU
/// picks it: most votes, ties going to the group seen last.
fn winner<K>(groups: &[(K, Vec<usize>)]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, (_, items)) in groups.iter().enumerate().rev() {
        if best.is_none_or(|b| items.len() > groups[b].1.len()) {
            best = Some(i);
        }
    }
    best
}

/// The errno most children failed with.
fn vote_errno(errs: &[(usize, i32)]) -> i32 {
    let mut groups: Vec<(i32, Vec<usize>)> = Vec::new();
    for &(i, e) in errs {
        match groups.iter_mut().find(|(k, _)| *k == e) {
            Some(g) => g.1.push(i),
            None => groups.push((e, vec![i])),
        }
    }
    winner(&groups).map(|w| groups[w].0).unwrap_or(libc::EIO)
}

impl QuorumDriver {
    /// Validates blockdev-add options (`vote-threshold`, `blkverify`,
    /// `rewrite-corrupted`, `read-pattern`) against the opened children.
    pub fn new(
        opts: &Options,
        children: Vec<NodeRef>,
        reference: String,
        events: EventSink,
    ) -> BlockResult<QuorumDriver> {
        if children.is_empty() {
            return Err(BlockError::InvalidArgument(
                "Number of provided children must be 1 or more".into(),
            ));
        }
        let threshold = match opts.get("vote-threshold") {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse::<i64>().map_err(|_| {
                BlockError::InvalidArgument("Parameter 'vote-threshold' expects a number".into())
            })?,
            _ => 0,
        };
        if threshold < 1 {
            return Err(BlockError::InvalidArgument(
                "Parameter 'vote-threshold' expects value >= 1".into(),
            ));
        }
        if threshold as usize > children.len() {
            return Err(BlockError::InvalidArgument(
                "threshold may not exceed children count".into(),
            ));
        }
        let fifo = match get_str(opts, "read-pattern")? {
            None | Some("quorum") => false,
            Some("fifo") => true,
            Some(_) => {
                return Err(BlockError::InvalidArgument(
                    "Please set read-pattern as fifo or quorum".into(),
                ))
            }
        };
        let mut blkverify = false;
        let mut rewrite_corrupted = false;
        if !fifo {
            let want_verify = get_bool(opts, "blkverify")?.unwrap_or(false);
            blkverify = want_verify && children.len() == 2 && threshold == 2;
            if want_verify && !blkverify {
                eprintln!(
                    "blkverify mode is set by setting blkverify=on and using two files with vote_threshold=2"
                );
            }
            rewrite_corrupted = get_bool(opts, "rewrite-corrupted")?.unwrap_or(false);
            if rewrite_corrupted && blkverify {
                return Err(BlockError::InvalidArgument(
                    "rewrite-corrupted=on cannot be used with blkverify=on".into(),
                ));
            }
        }
        let n = children.len() as u64;
        Ok(QuorumDriver {
            children: children
                .into_iter()
                .enumerate()
                .map(|(i, c)| (format!("children.{}", i), c))
                .collect(),
            threshold: threshold as usize,
            blkverify,
            rewrite_corrupted,
            fifo,
            next_index: n,
            reference,
            events,
        })
    }

    /// Children with their child names (`children.N`).
    pub fn children(&self) -> &[(String, NodeRef)] {
        &self.children
    }

    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Sets QUORUM_FAILURE's `reference` (the backend name when there is one).
    pub fn set_reference(&mut self, r: &str) {
        self.reference = r.to_string();
    }

    /// x-blockdev-change with `node`: attaches a child as `children.<next>`.
    pub fn add_child(&mut self, child: NodeRef) -> BlockResult<String> {
        if self.next_index >= u64::from(u32::MAX) {
            return Err(BlockError::Generic("Too many children".into()));
        }
        let name = format!("children.{}", self.next_index);
        self.next_index += 1;
        self.children.push((name.clone(), child));
        Ok(name)
    }

    /// x-blockdev-change with `child`: detaches `children.N`; returns the node.
    pub fn del_child(&mut self, name: &str) -> BlockResult<NodeRef> {
        let pos = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| BlockError::Generic(format!("Child '{}' not found", name)))?;
        if self.children.len() <= self.threshold {
            return Err(BlockError::Generic(format!(
                "The number of children cannot be lower than the vote threshold {}",
                self.threshold
            )));
        }
        Ok(self.children.remove(pos).1)
    }

    fn report_bad(
        &self,
        op: QuorumOpType,
        err: Option<&BlockError>,
        node: &NodeRef,
        s: (u64, u64),
    ) {
        self.events
            .push(BlockEvent::QuorumReportBad(QuorumReportBad {
                op,
                error: err.map(BlockError::strerror),
                node_name: child_name(node),
                sector_num: s.0,
                sectors_count: s.1,
            }));
    }

    fn report_failure(&self, s: (u64, u64)) {
        self.events.push(BlockEvent::QuorumFailure(QuorumFailure {
            reference: self.reference.clone(),
            sector_num: s.0,
            sectors_count: s.1,
        }));
    }

    fn read_fifo(&mut self, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        let s = sectors(offset, buf.len() as u64);
        let mut last = None;
        for (_, c) in &self.children {
            match lock(c).read(offset, buf) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.report_bad(QuorumOpType::Read, Some(&e), c, s);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| BlockError::errno("quorum read", libc::EIO)))
    }

    fn read_vote(&mut self, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        let s = sectors(offset, buf.len() as u64);
        let mut results: Vec<Result<Vec<u8>, i32>> = Vec::with_capacity(self.children.len());
        for (_, c) in &self.children {
            let mut b = vec![0u8; buf.len()];
            match lock(c).read(offset, &mut b) {
                Ok(()) => results.push(Ok(b)),
                Err(e) => {
                    self.report_bad(QuorumOpType::Read, Some(&e), c, s);
                    results.push(Err(e.errno_value()));
                }
            }
        }
        let ok: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        if ok.len() < self.threshold {
            let errs: Vec<(usize, i32)> = results
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, *e)))
                .collect();
            self.report_failure(s);
            return Err(BlockError::errno("quorum read", vote_errno(&errs)));
        }
        let data = |i: usize| results[i].as_deref().unwrap_or(&[]);
        let first = ok[0];
        if let Some(&bad) = ok[1..].iter().find(|&&j| data(j) != data(first)) {
            if self.blkverify {
                let at = data(first)
                    .iter()
                    .zip(data(bad))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0) as u64;
                // QEMU exits the process here; we fail the request instead.
                eprintln!(
                    "quorum: sector_num={} nb_sectors={} contents mismatch in sector {}",
                    s.0,
                    s.1,
                    s.0 + at / 512
                );
                return Err(BlockError::errno("quorum blkverify", libc::EIO));
            }
        } else {
            buf.copy_from_slice(data(first));
            return Ok(());
        }
        let mut versions: Vec<(usize, Vec<usize>)> = Vec::new();
        for &i in &ok {
            match versions.iter_mut().find(|(k, _)| data(*k) == data(i)) {
                Some(v) => v.1.push(i),
                None => versions.push((i, vec![i])),
            }
        }
        let w = winner(&versions).unwrap_or(0);
        if versions[w].1.len() < self.threshold {
            self.report_failure(s);
            return Err(BlockError::errno("quorum read", libc::EIO));
        }
        buf.copy_from_slice(data(versions[w].0));
        let bad: Vec<usize> = versions
            .iter()
            .enumerate()
            .rev()
            .filter(|(vi, _)| *vi != w)
            .flat_map(|(_, (_, items))| items.iter().rev().copied())
            .collect();
        for &i in &bad {
            self.report_bad(QuorumOpType::Read, None, &self.children[i].1, s);
        }
        if self.rewrite_corrupted {
            for &i in &bad {
                // A failed rewrite leaves the child as bad as it was; the read
                // itself already succeeded.
                let _ = lock(&self.children[i].1).write(offset, buf, false);
            }
        }
        Ok(())
    }

    fn write_all(
        &mut self,
        offset: u64,
        len: u64,
        mut op: impl FnMut(&NodeRef) -> BlockResult<()>,
    ) -> BlockResult<()> {
        let s = sectors(offset, len);
        let mut errs = Vec::new();
        for (i, (_, c)) in self.children.iter().enumerate() {
            if let Err(e) = op(c) {
                self.report_bad(QuorumOpType::Write, Some(&e), c, s);
                errs.push((i, e.errno_value()));
            }
        }
        if self.children.len() - errs.len() < self.threshold {
            self.report_failure(s);
            return Err(BlockError::errno("quorum write", vote_errno(&errs)));
        }
        Ok(())
    }
}

impl Driver for QuorumDriver {
    fn format_name(&self) -> &'static str {
        "quorum"
    }

    fn length(&mut self, _c: &Children) -> BlockResult<u64> {
        let mut len = None;
        for (_, c) in &self.children {
            let l = lock(c).length()?;
            match len {
                None => len = Some(l),
                Some(prev) if prev != l => {
                    return Err(BlockError::errno(
                        "quorum children differ in length",
                        libc::EIO,
                    ))
                }
                _ => {}
            }
        }
        len.ok_or_else(|| BlockError::errno("quorum has no children", libc::EIO))
    }

    fn read(&mut self, _c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        if self.fifo {
            self.read_fifo(offset, buf)
        } else {
            self.read_vote(offset, buf)
        }
    }

    fn write(&mut self, _c: &Children, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        self.write_all(offset, buf.len() as u64, |c| {
            lock(c).write(offset, buf, fua)
        })
    }

    fn write_zeroes(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
        _may_unmap: bool,
    ) -> BlockResult<()> {
        // QEMU 2.8's quorum has no write-zeroes: it is emulated with data writes.
        const CHUNK: u64 = 1 << 20;
        let zeroes = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done) as usize;
            self.write(c, offset + done, &zeroes[..n], false)?;
            done += n as u64;
        }
        Ok(())
    }

    fn discard(&mut self, _c: &Children, _offset: u64, _len: u64) -> BlockResult<()> {
        // No discard in QEMU 2.8's quorum: the request succeeds without effect.
        Ok(())
    }

    fn flush(&mut self, _c: &Children) -> BlockResult<()> {
        let mut errs = Vec::new();
        for (i, (_, c)) in self.children.iter().enumerate() {
            let mut g = lock(c);
            if let Err(e) = g.flush() {
                let nb = g.length().map(|l| l.div_ceil(512)).unwrap_or(0);
                drop(g);
                self.report_bad(QuorumOpType::Flush, Some(&e), c, (0, nb));
                errs.push((i, e.errno_value()));
            }
        }
        if self.children.len() - errs.len() >= self.threshold {
            return Ok(());
        }
        Err(BlockError::errno("quorum flush", vote_errno(&errs)))
    }

    fn block_status(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        let size = self.length(c)?;
        Ok(Extent::data(
            len.min(size.saturating_sub(offset)).max(1),
            None,
        ))
    }

    fn truncate(&mut self, _c: &Children, _size: u64) -> BlockResult<()> {
        Err(BlockError::Unsupported(
            "Image format driver does not support resize".into(),
        ))
    }

    fn close(&mut self, _c: &Children) -> BlockResult<()> {
        Ok(())
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }

    fn other_children(&self) -> Vec<NodeRef> {
        self.children.iter().map(|(_, c)| c.clone()).collect()
    }
}

/// x-blockdev-change on an opened parent node, after the QMP layer looked up
/// `node` (with "Node '%s' not found"). `node_has_parent` says whether `node` is
/// already used by another node or a backend.
pub fn x_blockdev_change(
    parent: &NodeRef,
    child: Option<&str>,
    node: Option<(&NodeRef, bool)>,
) -> BlockResult<()> {
    match (child, node) {
        (Some(_), Some(_)) => {
            return Err(BlockError::Generic(
                "The parameters child and node are in conflict".into(),
            ))
        }
        (None, None) => {
            return Err(BlockError::Generic(
                "Either child or node must be specified".into(),
            ))
        }
        _ => {}
    }
    let mut p = lock(parent);
    let pname = p.name().to_string();
    if let Some(c) = child {
        // Other drivers' children have names too (blkdebug's "image",
        // "file", "backing"): found, but the driver cannot remove them.
        let file_name = if p.driver_name() == "blkdebug" {
            "image"
        } else {
            "file"
        };
        let named =
            (c == file_name && p.file().is_some()) || (c == "backing" && p.backing().is_some());
        let Some(q) = p.driver_as::<QuorumDriver>() else {
            if named {
                return Err(BlockError::Generic(format!(
                    "The node {} does not support removing a child",
                    pname
                )));
            }
            return Err(BlockError::Generic(format!(
                "Node '{}' does not have child '{}'",
                pname, c
            )));
        };
        if !q.children.iter().any(|(n, _)| n == c) {
            return Err(BlockError::Generic(format!(
                "Node '{}' does not have child '{}'",
                pname, c
            )));
        }
        q.del_child(c)?;
    }
    if let Some((n, has_parent)) = node {
        let Some(q) = p.driver_as::<QuorumDriver>() else {
            return Err(BlockError::Generic(format!(
                "The node {} does not support adding a child",
                pname
            )));
        };
        if has_parent {
            return Err(BlockError::Generic(format!(
                "The node {} already has a parent",
                child_name(n)
            )));
        }
        q.add_child(n.clone())?;
    }
    Ok(())
}

/// The child list of a quorum node's options, given as an array or as an object
/// keyed "0", "1", ... (the dotted `children.0.file.filename` form).
pub fn children_options(opts: &Options) -> BlockResult<Vec<Value>> {
    match opts.get("children") {
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(Value::Object(m)) => {
            let mut items: Vec<(u64, Value)> = Vec::new();
            for (k, v) in m {
                let i = k.parse::<u64>().map_err(|_| {
                    BlockError::InvalidArgument("Option children is not a valid array".into())
                })?;
                items.push((i, v.clone()));
            }
            items.sort_by_key(|(i, _)| *i);
            if items
                .iter()
                .enumerate()
                .any(|(pos, (i, _))| pos as u64 != *i)
            {
                return Err(BlockError::InvalidArgument(
                    "Option children is not a valid array".into(),
                ));
            }
            Ok(items.into_iter().map(|(_, v)| v).collect())
        }
        None => Ok(Vec::new()),
        Some(_) => Err(BlockError::InvalidArgument(
            "Option children is not a valid array".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockGraph;

    fn tmp(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("quorum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name).to_string_lossy().into_owned()
    }

    /// Three raw children named c0..c2 under a quorum node "q".
    fn quorum(g: &mut BlockGraph, tag: &str, extra: Value) -> (NodeRef, Vec<String>) {
        let mut paths = Vec::new();
        let mut children = Vec::new();
        for i in 0..3 {
            let p = tmp(&format!("{}-{}.raw", tag, i));
            std::fs::write(&p, vec![0u8; 65536]).unwrap();
            children.push(json!({"driver": "raw", "node-name": format!("c{}", i),
                                 "file": {"driver": "file", "filename": p}}));
            paths.push(p);
        }
        let mut o = json!({"driver": "quorum", "node-name": "q", "vote-threshold": 2,
                           "children": children});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        (g.open(o.as_object().unwrap()).unwrap(), paths)
    }

    fn corrupt(path: &str, at: usize) {
        let mut d = std::fs::read(path).unwrap();
        d[at] ^= 0xff;
        std::fs::write(path, d).unwrap();
    }

    #[test]
    fn read_outvotes_a_corrupted_child_and_reports_it() {
        let mut g = BlockGraph::new();
        let (q, paths) = quorum(&mut g, "vote", json!({}));
        lock(&q).write(0, &[7u8; 4096], false).unwrap();
        corrupt(&paths[1], 100);
        let mut buf = [0u8; 4096];
        lock(&q).read(0, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 4096]);
        let ev = g.take_events();
        assert_eq!(
            ev,
            vec![BlockEvent::QuorumReportBad(QuorumReportBad {
                op: QuorumOpType::Read,
                error: None,
                node_name: "c1".into(),
                sector_num: 0,
                sectors_count: 8,
            })]
        );
        assert_eq!(
            QuorumReportBad {
                op: QuorumOpType::Read,
                error: None,
                node_name: "c1".into(),
                sector_num: 0,
                sectors_count: 8
            }
            .to_json(),
            json!({"type": "read", "node-name": "c1", "sector-num": 0, "sectors-count": 8})
        );
        // Without rewrite-corrupted the child stays bad.
        assert_ne!(std::fs::read(&paths[1]).unwrap()[100], 7);
    }

    #[test]
    fn rewrite_corrupted_repairs_the_bad_child() {
        let mut g = BlockGraph::new();
        let (q, paths) = quorum(&mut g, "rewrite", json!({"rewrite-corrupted": true}));
        lock(&q).write(0, &[9u8; 512], false).unwrap();
        corrupt(&paths[2], 5);
        let mut buf = [0u8; 512];
        lock(&q).read(0, &mut buf).unwrap();
        assert_eq!(std::fs::read(&paths[2]).unwrap()[5], 9);
    }

    #[test]
    fn no_majority_fails_with_quorum_failure() {
        let mut g = BlockGraph::new();
        let (q, paths) = quorum(&mut g, "fail", json!({"vote-threshold": 3}));
        corrupt(&paths[0], 0);
        let mut buf = [0u8; 512];
        let e = lock(&q).read(0, &mut buf).unwrap_err();
        assert_eq!(e.errno_value(), libc::EIO);
        let ev = g.take_events();
        assert!(ev.contains(&BlockEvent::QuorumFailure(QuorumFailure {
            reference: "q".into(),
            sector_num: 0,
            sectors_count: 1,
        })));
    }

    #[test]
    fn fifo_reads_the_first_child_only() {
        let mut g = BlockGraph::new();
        let (q, paths) = quorum(&mut g, "fifo", json!({"read-pattern": "fifo"}));
        corrupt(&paths[0], 0);
        let mut buf = [0u8; 512];
        lock(&q).read(0, &mut buf).unwrap();
        assert_eq!(buf[0], 0xff);
        assert!(g.take_events().is_empty());
    }

    #[test]
    fn bad_options_are_refused_with_qemu_messages() {
        let mut g = BlockGraph::new();
        let p = tmp("opt.raw");
        std::fs::write(&p, vec![0u8; 512]).unwrap();
        let child = json!({"driver": "file", "filename": p});
        let open = |g: &mut BlockGraph, o: Value| {
            g.open(o.as_object().unwrap()).err().unwrap().to_string()
        };
        assert_eq!(
            open(
                &mut g,
                json!({"driver": "quorum", "vote-threshold": 2, "children": [child]})
            ),
            "threshold may not exceed children count"
        );
        assert_eq!(
            open(
                &mut g,
                json!({"driver": "quorum", "vote-threshold": 1, "children": []})
            ),
            "Number of provided children must be 1 or more"
        );
        assert_eq!(
            open(
                &mut g,
                json!({"driver": "quorum", "vote-threshold": 1, "children": [child], "read-pattern": "x"})
            ),
            "Please set read-pattern as fifo or quorum"
        );
    }

    #[test]
    fn x_blockdev_change_replaces_a_child() {
        let mut g = BlockGraph::new();
        let (q, paths) = quorum(&mut g, "change", json!({}));
        let p = tmp("change-new.raw");
        std::fs::write(&p, vec![0u8; 65536]).unwrap();
        let n = g.open(json!({"driver": "raw", "node-name": "c3", "file": {"driver": "file", "filename": p}}).as_object().unwrap()).unwrap();
        assert!(!g.is_in_use(&n));
        x_blockdev_change(&q, None, Some((&n, false))).unwrap();
        assert!(g.is_in_use(&n));
        x_blockdev_change(&q, Some("children.0"), None).unwrap();
        let e = x_blockdev_change(&q, Some("children.0"), None).unwrap_err();
        assert_eq!(e.to_string(), "Node 'q' does not have child 'children.0'");
        x_blockdev_change(&q, Some("children.1"), None).unwrap();
        let e = x_blockdev_change(&q, Some("children.2"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The number of children cannot be lower than the vote threshold 2"
        );
        let names: Vec<String> = lock(&q)
            .driver_as::<QuorumDriver>()
            .unwrap()
            .children()
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(names, vec!["children.2", "children.3"]);
        drop(paths);
    }

    #[test]
    fn write_failing_on_too_many_children_votes_the_errno() {
        let errs = [(0, libc::EIO), (1, libc::ENOSPC), (2, libc::ENOSPC)];
        assert_eq!(vote_errno(&errs), libc::ENOSPC);
        assert_eq!(
            vote_errno(&[(0, libc::EIO), (1, libc::ENOSPC)]),
            libc::ENOSPC
        );
    }

    #[test]
    fn dotted_children_options_open_and_probe_formats() {
        let mut g = BlockGraph::new();
        let (a, b) = (tmp("dot-a.raw"), tmp("dot-b.raw"));
        std::fs::write(&a, vec![3u8; 4096]).unwrap();
        std::fs::write(&b, vec![3u8; 4096]).unwrap();
        let o = json!({"driver": "quorum", "vote-threshold": "2",
                       "children.0.file.filename": a, "children.1.file.filename": b});
        let q = g.open(o.as_object().unwrap()).unwrap();
        let mut buf = [0u8; 4096];
        lock(&q).read(0, &mut buf).unwrap();
        assert_eq!(buf, [3u8; 4096]);
        assert_eq!(lock(&q).length().unwrap(), 4096);
    }

    #[test]
    fn blkverify_mismatch_fails_the_read_instead_of_exiting() {
        let mut g = BlockGraph::new();
        let (a, b) = (tmp("bv-a.raw"), tmp("bv-b.raw"));
        std::fs::write(&a, vec![0u8; 4096]).unwrap();
        std::fs::write(&b, vec![0u8; 4096]).unwrap();
        corrupt(&b, 1024);
        let o = json!({"driver": "quorum", "vote-threshold": 2, "blkverify": true,
                       "children": [{"driver": "raw", "file": {"driver": "file", "filename": a}},
                                    {"driver": "raw", "file": {"driver": "file", "filename": b}}]});
        let q = g.open(o.as_object().unwrap()).unwrap();
        let mut buf = [0u8; 512];
        lock(&q).read(0, &mut buf).unwrap();
        let e = lock(&q).read(1024, &mut buf).unwrap_err();
        assert_eq!(e.errno_value(), libc::EIO);
    }

    #[test]
    fn failed_child_write_is_reported_and_tolerated_above_threshold() {
        let mut g = BlockGraph::new();
        let (q, _paths) = quorum(&mut g, "wfail", json!({}));
        let c0 = g.find_node("c0").unwrap();
        lock(&c0).set_read_only(true).unwrap();
        lock(&q).write(0, &[1u8; 512], false).unwrap();
        let ev = g.take_events();
        assert_eq!(ev.len(), 1);
        let BlockEvent::QuorumReportBad(r) = &ev[0] else {
            panic!("unexpected {:?}", ev)
        };
        assert_eq!((r.op, r.node_name.as_str()), (QuorumOpType::Write, "c0"));
        assert_eq!(r.error.as_deref(), Some("Operation not permitted"));
    }
}
