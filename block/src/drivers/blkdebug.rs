//! `blkdebug`: a filter over an `image` child that injects errors and changes
//! state when the layers above signal events (docs/blkdebug.txt in QEMU).
//!
//! Rules come from a config file (`blkdebug:<config>:<image>` or `config=`) and
//! from the `inject-error` / `set-state` options. An event activates the
//! inject-error rules registered for it (in the current state); later reads,
//! writes and flushes on this node fail while a matching rule is active.
//!
//! Breakpoints (qemu-io `break`/`resume`/`remove_break`/`wait_break`): a
//! request that signals the event of a breakpoint stops there (see
//! `crate::request`) and waits for a ticket kept here under the
//! breakpoint's tag; `resume` releases the newest request with the tag,
//! `remove_break` every one. Only requests polled by the `Inflight` queue
//! can stop: a synchronous caller passes the breakpoint and leaves it set.

use std::any::Any;

use serde_json::Value;

use crate::driver::{read_by_polling, write_by_polling, Children, Driver, Extent};
use crate::error::{BlockError, BlockResult};
use crate::node::{find_driver_below, lock, pass_read, pass_write, NodeRef};
use crate::options::{get_bool, get_size, get_str, Options};
use crate::request::{breakpoint, DriverReq, Poll, ReqKind, Ticket};

macro_rules! blkdebug_events {
    ($($v:ident = $s:literal),* $(,)?) => {
        /// BlkdebugEvent: points where the block layer and drivers signal.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum BlkdebugEvent { $($v),* }

        impl BlkdebugEvent {
            /// Every event, in QAPI order.
            pub const ALL: &'static [BlkdebugEvent] = &[$(BlkdebugEvent::$v),*];

            pub fn as_str(self) -> &'static str {
                match self { $(BlkdebugEvent::$v => $s),* }
            }
        }
    };
}

blkdebug_events! {
    L1Update = "l1_update",
    L1GrowAllocTable = "l1_grow_alloc_table",
    L1GrowWriteTable = "l1_grow_write_table",
    L1GrowActivateTable = "l1_grow_activate_table",
    L2Load = "l2_load",
    L2Update = "l2_update",
    L2UpdateCompressed = "l2_update_compressed",
    L2AllocCowRead = "l2_alloc_cow_read",
    L2AllocWrite = "l2_alloc_write",
    ReadAio = "read_aio",
    ReadBackingAio = "read_backing_aio",
    ReadCompressed = "read_compressed",
    WriteAio = "write_aio",
    WriteCompressed = "write_compressed",
    VmstateLoad = "vmstate_load",
    VmstateSave = "vmstate_save",
    CowRead = "cow_read",
    CowWrite = "cow_write",
    ReftableLoad = "reftable_load",
    ReftableGrow = "reftable_grow",
    ReftableUpdate = "reftable_update",
    RefblockLoad = "refblock_load",
    RefblockUpdate = "refblock_update",
    RefblockUpdatePart = "refblock_update_part",
    RefblockAlloc = "refblock_alloc",
    RefblockAllocHookup = "refblock_alloc_hookup",
    RefblockAllocWrite = "refblock_alloc_write",
    RefblockAllocWriteBlocks = "refblock_alloc_write_blocks",
    RefblockAllocWriteTable = "refblock_alloc_write_table",
    RefblockAllocSwitchTable = "refblock_alloc_switch_table",
    ClusterAlloc = "cluster_alloc",
    ClusterAllocBytes = "cluster_alloc_bytes",
    ClusterFree = "cluster_free",
    FlushToOs = "flush_to_os",
    FlushToDisk = "flush_to_disk",
    PwritevRmwHead = "pwritev_rmw_head",
    PwritevRmwAfterHead = "pwritev_rmw_after_head",
    PwritevRmwTail = "pwritev_rmw_tail",
    PwritevRmwAfterTail = "pwritev_rmw_after_tail",
    Pwritev = "pwritev",
    PwritevZero = "pwritev_zero",
    PwritevDone = "pwritev_done",
    EmptyImagePrepare = "empty_image_prepare",
}

impl BlkdebugEvent {
    pub fn from_name(name: &str) -> Option<BlkdebugEvent> {
        Self::ALL.iter().copied().find(|e| e.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    InjectError {
        errno: i32,
        once: bool,
        immediately: bool,
        /// -1: any sector.
        sector: i64,
    },
    SetState {
        new_state: i64,
    },
    Suspend {
        tag: String,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    id: u64,
    event: BlkdebugEvent,
    /// 0: any state.
    state: i64,
    action: Action,
}

/// A request stopped at a breakpoint.
struct Stopped {
    tag: String,
    /// Released when the request may go on.
    ticket: Ticket,
    /// Older breakpoints on the same event: QEMU goes through an event's
    /// rules one at a time, so the request stops at each of these in turn
    /// once resumed (those still set by then).
    next: Vec<u64>,
}

/// The blkdebug filter driver.
pub struct BlkdebugDriver {
    /// Rules in insertion order; an event processes its rules newest first.
    rules: Vec<Rule>,
    /// Ids of the inject-error rules the last injecting event activated, newest first.
    active: Vec<u64>,
    state: i64,
    next_id: u64,
    /// Requests stopped at a breakpoint, newest first.
    suspended: Vec<Stopped>,
    align: u64,
    config_file: Option<String>,
}

/// Splits `blkdebug:<config>:<image>` into the config path (None when empty)
/// and the image name.
pub fn parse_filename(filename: &str) -> BlockResult<(Option<String>, String)> {
    let rest = filename.strip_prefix("blkdebug:").ok_or_else(|| {
        BlockError::InvalidArgument("blkdebug requires both config file and image path".into())
    })?;
    let (conf, image) = rest.split_once(':').ok_or_else(|| {
        BlockError::InvalidArgument("blkdebug requires both config file and image path".into())
    })?;
    let conf = (!conf.is_empty()).then(|| conf.to_string());
    Ok((conf, image.to_string()))
}

/// A number option given as JSON number or decimal string.
fn get_num(o: &Options, key: &str) -> BlockResult<Option<i64>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad_num(key)),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad_num(key)),
        Some(_) => Err(bad_num(key)),
    }
}

fn bad_num(key: &str) -> BlockError {
    BlockError::InvalidArgument(format!("Parameter '{}' expects a number", key))
}

/// A list option given as a JSON array or as an object keyed "0", "1", ...
fn list_of(v: Option<&Value>) -> Vec<Options> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_object().cloned()).collect(),
        Some(Value::Object(m)) => {
            let mut items: Vec<(u64, Options)> = m
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_object()?.clone())))
                .collect();
            items.sort_by_key(|(i, _)| *i);
            items.into_iter().map(|(_, o)| o).collect()
        }
        _ => Vec::new(),
    }
}

/// Parses QEMU's config file syntax: `[inject-error]` / `[set-state]` groups of
/// `key = "value"` lines, `#` comments.
fn parse_config(text: &str) -> BlockResult<(Vec<Options>, Vec<Options>)> {
    let bad = || BlockError::InvalidArgument("Could not parse blkdebug config file".into());
    let mut inject = Vec::new();
    let mut set_state = Vec::new();
    let mut cur: Option<(bool, Options)> = None;
    let mut flush = |cur: &mut Option<(bool, Options)>| {
        if let Some((is_inject, o)) = cur.take() {
            if is_inject {
                inject.push(o);
            } else {
                set_state.push(o);
            }
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(g) = line.strip_prefix('[') {
            let g = g.strip_suffix(']').ok_or_else(bad)?;
            let name = g.split_whitespace().next().unwrap_or("");
            flush(&mut cur);
            cur = match name {
                "inject-error" => Some((true, Options::new())),
                "set-state" => Some((false, Options::new())),
                _ => return Err(bad()),
            };
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(bad)?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(bad)?;
        match &mut cur {
            Some((_, o)) => {
                o.insert(k.trim().to_string(), Value::from(v));
            }
            None => return Err(bad()),
        }
    }
    flush(&mut cur);
    Ok((inject, set_state))
}

impl BlkdebugDriver {
    /// Builds the driver from blockdev-add options (`config`, `align`,
    /// `inject-error`, `set-state`); the image child is opened by the graph.
    pub fn new(opts: &Options) -> BlockResult<BlkdebugDriver> {
        let config_file = get_str(opts, "config")?.map(str::to_string);
        let mut d = BlkdebugDriver {
            rules: Vec::new(),
            active: Vec::new(),
            state: 1,
            next_id: 0,
            suspended: Vec::new(),
            align: 0,
            config_file: config_file.clone(),
        };
        let (mut inject, mut set_state) = match &config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| BlockError::io("Could not read blkdebug config file", &e))?;
                parse_config(&text)?
            }
            None => (Vec::new(), Vec::new()),
        };
        inject.extend(list_of(opts.get("inject-error")));
        set_state.extend(list_of(opts.get("set-state")));
        for o in &inject {
            d.add_rule(o, true)?;
        }
        for o in &set_state {
            d.add_rule(o, false)?;
        }
        let align = get_size(opts, "align")?.unwrap_or(0);
        if align != 0 && (align >= i32::MAX as u64 || !align.is_power_of_two()) {
            return Err(BlockError::InvalidArgument("Invalid alignment".into()));
        }
        d.align = align;
        Ok(d)
    }

    fn add_rule(&mut self, o: &Options, inject: bool) -> BlockResult<()> {
        let name = get_str(o, "event")?
            .ok_or_else(|| BlockError::InvalidArgument("Missing event name for rule".into()))?;
        let event = BlkdebugEvent::from_name(name).ok_or_else(|| {
            BlockError::InvalidArgument(format!("Invalid event name \"{}\"", name))
        })?;
        let state = get_num(o, "state")?.unwrap_or(0);
        let action = if inject {
            Action::InjectError {
                errno: i32::try_from(get_num(o, "errno")?.unwrap_or(libc::EIO as i64))
                    .unwrap_or(libc::EIO),
                once: get_bool(o, "once")?.unwrap_or(false),
                immediately: get_bool(o, "immediately")?.unwrap_or(false),
                sector: get_num(o, "sector")?.unwrap_or(-1),
            }
        } else {
            Action::SetState {
                new_state: get_num(o, "new_state")?.unwrap_or(0),
            }
        };
        self.push_rule(event, state, action);
        Ok(())
    }

    fn push_rule(&mut self, event: BlkdebugEvent, state: i64, action: Action) {
        self.rules.push(Rule {
            id: self.next_id,
            event,
            state,
            action,
        });
        self.next_id += 1;
    }

    /// Current state number (starts at 1).
    pub fn state(&self) -> i64 {
        self.state
    }

    /// `align` option (0 when unset).
    pub fn align(&self) -> u64 {
        self.align
    }

    pub fn config_file(&self) -> Option<&str> {
        self.config_file.as_deref()
    }

    /// Processes an event: activates inject rules, moves state, hits breakpoints.
    pub fn event(&mut self, ev: BlkdebugEvent) {
        let mut injected = false;
        let mut new_state = self.state;
        let mut hit = Vec::new();
        for r in self.rules.iter().rev().filter(|r| r.event == ev) {
            if r.state != 0 && r.state != self.state {
                continue;
            }
            match &r.action {
                Action::InjectError { .. } => {
                    if !injected {
                        self.active.clear();
                        injected = true;
                    }
                    self.active.insert(0, r.id);
                }
                Action::SetState { new_state: n } => new_state = *n,
                // A breakpoint fires only when the request can stop.
                Action::Suspend { tag } if breakpoint::is_armed() => hit.push((r.id, tag.clone())),
                Action::Suspend { .. } => {}
            }
        }
        if !hit.is_empty() {
            let ticket = Ticket::new();
            breakpoint::hit(ticket.clone());
            let next = hit.iter().map(|(id, _)| *id).collect();
            self.stop_at_next(ticket, next);
        }
        self.state = new_state;
    }

    /// Stops the request holding `ticket` at the first breakpoint of
    /// `next` still set; false when none is (the request may go on).
    fn stop_at_next(&mut self, ticket: Ticket, mut next: Vec<u64>) -> bool {
        while !next.is_empty() {
            let id = next.remove(0);
            let Some(pos) = self.rules.iter().position(|r| r.id == id) else {
                continue;
            };
            let Action::Suspend { tag } = self.rules.remove(pos).action else {
                continue;
            };
            // QEMU prints these on its stdout, except under qtest.
            if !crate::stats::qtest_mode() {
                crate::console::print(&format!("blkdebug: Suspended request '{}'\n", tag));
            }
            self.suspended.insert(0, Stopped { tag, ticket, next });
            return true;
        }
        false
    }

    /// The error an I/O on `offset..offset+len` gets from the active rules
    /// (`None` for a flush: only rules without a sector match).
    fn check_inject(&mut self, range: Option<(u64, u64)>) -> BlockResult<()> {
        let found = self.active.iter().copied().find_map(|id| {
            let r = self.rules.iter().find(|r| r.id == id)?;
            let Action::InjectError { sector, .. } = r.action else {
                return None;
            };
            let hit = match range {
                _ if sector == -1 => true,
                None => false,
                Some((off, len)) => {
                    let first = off / 512;
                    let end = off.saturating_add(len).div_ceil(512).max(first + 1);
                    sector >= 0 && (sector as u64) >= first && (sector as u64) < end
                }
            };
            hit.then_some((id, r.action.clone()))
        });
        let Some((
            id,
            Action::InjectError {
                errno,
                once,
                immediately,
                ..
            },
        )) = found
        else {
            return Ok(());
        };
        if errno == 0 {
            return Ok(());
        }
        if once {
            self.active.retain(|&a| a != id);
            self.rules.retain(|r| r.id != id);
        }
        // An "immediate" failure surfaces as EIO whatever errno says, as the
        // synchronous emulation in QEMU turns a missing AIOCB into -EIO.
        let errno = if immediately {
            libc::EIO
        } else {
            errno.checked_abs().unwrap_or(libc::EIO)
        };
        Err(BlockError::errno("blkdebug injected error", errno))
    }

    /// qemu-io `break <event> <tag>`; Err(errno) as QEMU returns it.
    pub fn add_breakpoint(&mut self, event: &str, tag: &str) -> Result<(), i32> {
        let ev = BlkdebugEvent::from_name(event).ok_or(libc::ENOENT)?;
        self.push_rule(
            ev,
            0,
            Action::Suspend {
                tag: tag.to_string(),
            },
        );
        Ok(())
    }

    /// qemu-io `remove_break <tag>`: resumes every request stopped with the
    /// tag and drops the breakpoints that have it.
    pub fn remove_breakpoint(&mut self, tag: &str) -> Result<(), i32> {
        let mut found = false;
        while self.resume(tag).is_ok() {
            found = true;
        }
        let before = self.rules.len();
        self.rules
            .retain(|r| !matches!(&r.action, Action::Suspend { tag: t } if t == tag));
        if !found && self.rules.len() == before {
            return Err(libc::ENOENT);
        }
        Ok(())
    }

    /// qemu-io `resume <tag>`: lets the newest request stopped with the tag go on.
    pub fn resume(&mut self, tag: &str) -> Result<(), i32> {
        let pos = self
            .suspended
            .iter()
            .position(|s| s.tag == tag)
            .ok_or(libc::ENOENT)?;
        let Stopped { tag, ticket, next } = self.suspended.remove(pos);
        if !crate::stats::qtest_mode() {
            crate::console::print(&format!("blkdebug: Resuming request '{}'\n", tag));
        }
        if !self.stop_at_next(ticket.clone(), next) {
            ticket.release();
        }
        Ok(())
    }

    /// qemu-io `wait_break <tag>` polls this.
    pub fn is_suspended(&self, tag: &str) -> bool {
        self.suspended.iter().any(|s| s.tag == tag)
    }

    /// Requests stopped at a breakpoint and not resumed yet.
    pub fn suspended_count(&self) -> usize {
        self.suspended.len()
    }
}

/// Signals `ev` on the file child: how format drivers reach a blkdebug layer
/// below them (QEMU's `BLKDBG_EVENT(bs->file, ...)`).
pub fn signal(c: &Children, ev: BlkdebugEvent) {
    if !c.file_observes_events() {
        return;
    }
    if let Some(f) = &c.file {
        lock(f).debug_event(ev);
    }
}

fn image(c: &Children) -> BlockResult<&NodeRef> {
    c.file
        .as_ref()
        .ok_or_else(|| BlockError::Generic("blkdebug node has no image child".into()))
}

/// Runs `f` on the first blkdebug node at or below `node`; ENOTSUP when none.
fn with_blkdebug<R>(
    node: &NodeRef,
    f: impl FnOnce(&mut BlkdebugDriver) -> Result<R, i32>,
) -> Result<R, i32> {
    let n = find_driver_below::<BlkdebugDriver>(node).ok_or(libc::ENOTSUP)?;
    let mut g = lock(&n);
    let d = g.driver_as::<BlkdebugDriver>().ok_or(libc::ENOTSUP)?;
    f(d)
}

/// qemu-io `break`: Err(errno) for "Could not set breakpoint: <strerror>".
pub fn debug_breakpoint(node: &NodeRef, event: &str, tag: &str) -> Result<(), i32> {
    with_blkdebug(node, |d| d.add_breakpoint(event, tag))
}

/// qemu-io `remove_break`.
pub fn debug_remove_breakpoint(node: &NodeRef, tag: &str) -> Result<(), i32> {
    with_blkdebug(node, |d| d.remove_breakpoint(tag))
}

/// qemu-io `resume`.
pub fn debug_resume(node: &NodeRef, tag: &str) -> Result<(), i32> {
    with_blkdebug(node, |d| d.resume(tag))
}

/// qemu-io `wait_break` (false when there is no blkdebug layer).
pub fn debug_is_suspended(node: &NodeRef, tag: &str) -> bool {
    with_blkdebug(node, |d| Ok(d.is_suspended(tag))).unwrap_or(false)
}

/// qemu-io's break/remove_break/resume/wait_break on the blkdebug layer below
/// the node. `wait_break` returns at once: every request in flight has
/// already gone as far as it can before the command runs, so nothing more
/// could reach a breakpoint while it waited.
pub struct BlkdebugDebugOps;

impl crate::qemu_io::DebugOps for BlkdebugDebugOps {
    fn breakpoint(&mut self, node: &NodeRef, event: &str, tag: &str) -> Result<(), i32> {
        debug_breakpoint(node, event, tag)
    }

    fn remove_breakpoint(&mut self, node: &NodeRef, tag: &str) -> Result<(), i32> {
        debug_remove_breakpoint(node, tag)
    }

    fn resume(&mut self, node: &NodeRef, tag: &str) -> Result<(), i32> {
        debug_resume(node, tag)
    }

    fn wait_break(&mut self, _node: &NodeRef, _tag: &str) {}
}

impl Driver for BlkdebugDriver {
    fn format_name(&self) -> &'static str {
        "blkdebug"
    }

    fn is_format(&self) -> bool {
        false
    }

    fn length(&mut self, c: &Children) -> BlockResult<u64> {
        lock(image(c)?).length()
    }

    fn request_alignment(&self) -> u64 {
        self.align.max(1)
    }

    fn read(&mut self, c: &Children, offset: u64, buf: &mut [u8]) -> BlockResult<()> {
        read_by_polling(self, c, offset, buf)
    }

    fn write(&mut self, c: &Children, offset: u64, buf: &[u8], fua: bool) -> BlockResult<()> {
        write_by_polling(self, c, offset, ReqKind::Write { fua }, buf)
    }

    fn write_zeroes(
        &mut self,
        c: &Children,
        offset: u64,
        len: u64,
        may_unmap: bool,
    ) -> BlockResult<()> {
        write_by_polling(
            self,
            c,
            offset,
            ReqKind::WriteZeroes { len, may_unmap },
            &[],
        )
    }

    fn poll_read(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        buf: &mut [u8],
    ) -> Poll<BlockResult<()>> {
        if req.state.is_none() {
            if let Err(e) = self.check_inject(Some((req.offset, buf.len() as u64))) {
                return Poll::Ready(Err(e));
            }
        }
        match image(c) {
            Ok(img) => pass_read(req, c, None, img, req.offset, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    // QEMU emulates write-zeroes on blkdebug with a plain write, which goes
    // through the injection check too.
    fn poll_write(
        &mut self,
        c: &Children,
        req: &mut DriverReq,
        data: &[u8],
    ) -> Poll<BlockResult<()>> {
        if req.state.is_none() {
            let len = match req.kind {
                ReqKind::WriteZeroes { len, .. } => len,
                _ => data.len() as u64,
            };
            if let Err(e) = self.check_inject(Some((req.offset, len))) {
                return Poll::Ready(Err(e));
            }
        }
        match image(c) {
            Ok(img) => pass_write(req, c, None, img, req.offset, data),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn discard(&mut self, _c: &Children, _offset: u64, _len: u64) -> BlockResult<()> {
        // blkdebug in QEMU 2.8 has no discard: the request succeeds unseen.
        Ok(())
    }

    fn flush(&mut self, c: &Children) -> BlockResult<()> {
        self.check_inject(None)?;
        lock(image(c)?).flush()
    }

    fn block_status(&mut self, c: &Children, offset: u64, len: u64) -> BlockResult<Extent> {
        let mut e = lock(image(c)?).block_status(offset, len)?;
        e.allocated = true;
        Ok(e)
    }

    fn truncate(&mut self, c: &Children, size: u64) -> BlockResult<()> {
        lock(image(c)?).truncate(size)
    }

    fn debug_event(&mut self, _c: &Children, ev: BlkdebugEvent) {
        self.event(ev);
    }

    fn observes_events(&self) -> bool {
        true
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn driver(o: Value) -> BlkdebugDriver {
        BlkdebugDriver::new(o.as_object().unwrap()).unwrap()
    }

    #[test]
    fn every_event_name_round_trips() {
        assert_eq!(BlkdebugEvent::ALL.len(), 43);
        for e in BlkdebugEvent::ALL {
            assert_eq!(BlkdebugEvent::from_name(e.as_str()), Some(*e));
        }
    }

    #[test]
    fn filename_splits_config_and_image() {
        assert_eq!(
            parse_filename("blkdebug:/c.conf:/img").unwrap(),
            (Some("/c.conf".into()), "/img".into())
        );
        assert_eq!(
            parse_filename("blkdebug::img").unwrap(),
            (None, "img".into())
        );
        assert!(parse_filename("blkdebug:noimage").is_err());
    }

    #[test]
    fn inject_rule_is_active_only_after_its_event() {
        let mut d = driver(json!({"inject-error": [{"event": "write_aio", "errno": 28}]}));
        assert!(d.check_inject(Some((0, 512))).is_ok());
        d.event(BlkdebugEvent::WriteAio);
        let e = d.check_inject(Some((0, 512))).unwrap_err();
        assert_eq!(e.errno_value(), libc::ENOSPC);
        // Stays active until another injecting event replaces it.
        assert!(d.check_inject(Some((4096, 512))).is_err());
    }

    #[test]
    fn once_rule_fires_a_single_time() {
        let mut d = driver(json!({"inject-error": [{"event": "read_aio", "once": "on"}]}));
        d.event(BlkdebugEvent::ReadAio);
        assert_eq!(
            d.check_inject(Some((0, 1))).unwrap_err().errno_value(),
            libc::EIO
        );
        assert!(d.check_inject(Some((0, 1))).is_ok());
        d.event(BlkdebugEvent::ReadAio);
        assert!(d.check_inject(Some((0, 1))).is_ok());
    }

    #[test]
    fn sector_rules_match_only_requests_covering_the_sector() {
        let mut d = driver(json!({"inject-error": [{"event": "read_aio", "sector": 8}]}));
        d.event(BlkdebugEvent::ReadAio);
        assert!(d.check_inject(Some((0, 4096))).is_ok());
        assert!(d.check_inject(Some((4096, 512))).is_err());
        assert!(d.check_inject(None).is_ok());
    }

    #[test]
    fn set_state_gates_rules_by_state() {
        let mut d = driver(json!({
            "inject-error": [{"event": "write_aio", "state": 2}],
            "set-state": [{"event": "write_aio", "state": 1, "new_state": 2}]
        }));
        d.event(BlkdebugEvent::WriteAio);
        assert_eq!(d.state(), 2);
        assert!(d.check_inject(Some((0, 1))).is_ok());
        d.event(BlkdebugEvent::WriteAio);
        assert!(d.check_inject(Some((0, 1))).is_err());
    }

    #[test]
    fn config_file_rules_are_read() {
        let dir = std::env::temp_dir().join(format!("blkdebug-conf-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# comment\n[inject-error]\nevent = \"flush_to_disk\"\nerrno = \"5\"\nimmediately = \"off\"\n\n[set-state]\nevent = \"flush_to_disk\"\nnew_state = \"3\"\n",
        )
        .unwrap();
        let mut d = driver(json!({"config": dir.to_str().unwrap()}));
        std::fs::remove_file(&dir).unwrap();
        d.event(BlkdebugEvent::FlushToDisk);
        assert!(d.check_inject(None).is_err());
        assert_eq!(d.state(), 3);
    }

    #[test]
    fn bad_options_get_qemu_messages() {
        let e = |o: Value| {
            BlkdebugDriver::new(o.as_object().unwrap())
                .err()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            e(json!({"inject-error": [{"errno": 5}]})),
            "Missing event name for rule"
        );
        assert_eq!(
            e(json!({"inject-error": [{"event": "nope"}]})),
            "Invalid event name \"nope\""
        );
        assert_eq!(e(json!({"align": 3})), "Invalid alignment");
        assert!(e(json!({"config": "/nonexistent/x"}))
            .starts_with("Could not read blkdebug config file"));
    }

    #[test]
    fn a_breakpoint_stops_an_armed_request_until_resumed() {
        let mut d = driver(json!({}));
        assert_eq!(d.add_breakpoint("bogus", "A"), Err(libc::ENOENT));
        d.add_breakpoint("write_aio", "A").unwrap();
        let ((), mut wait) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        assert!(d.is_suspended("A"));
        assert!(!wait.is_over());
        d.resume("A").unwrap();
        assert!(wait.is_over());
        assert!(!d.is_suspended("A"));
        assert_eq!(d.resume("A"), Err(libc::ENOENT));
        let ((), wait) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        assert!(wait.is_empty(), "a breakpoint fires once");
    }

    #[test]
    fn an_unarmed_request_passes_a_breakpoint_and_leaves_it_set() {
        let mut d = driver(json!({}));
        d.add_breakpoint("write_aio", "A").unwrap();
        d.event(BlkdebugEvent::WriteAio);
        assert!(!d.is_suspended("A"));
        let ((), wait) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        assert!(!wait.is_empty());
    }

    #[test]
    fn remove_break_resumes_every_request_with_the_tag() {
        let mut d = driver(json!({}));
        d.add_breakpoint("write_aio", "A").unwrap();
        d.add_breakpoint("read_aio", "A").unwrap();
        let ((), mut w1) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        let ((), mut w2) = breakpoint::armed(|| d.event(BlkdebugEvent::ReadAio));
        assert_eq!(d.suspended_count(), 2);
        d.remove_breakpoint("A").unwrap();
        assert!(w1.is_over() && w2.is_over());
        assert_eq!(d.remove_breakpoint("A"), Err(libc::ENOENT));
        d.add_breakpoint("read_aio", "B").unwrap();
        d.remove_breakpoint("B").unwrap();
        let ((), w) = breakpoint::armed(|| d.event(BlkdebugEvent::ReadAio));
        assert!(w.is_empty());
    }

    #[test]
    fn a_request_stops_at_each_breakpoint_of_its_event_in_turn() {
        let mut d = driver(json!({}));
        d.add_breakpoint("write_aio", "X").unwrap();
        d.add_breakpoint("write_aio", "Y").unwrap();
        let ((), mut w) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        assert!(d.is_suspended("Y"));
        assert_eq!(d.resume("X"), Err(libc::ENOENT));
        d.resume("Y").unwrap();
        assert!(d.is_suspended("X"));
        assert!(!w.is_over());
        d.resume("X").unwrap();
        assert!(w.is_over());
        assert_eq!(d.suspended_count(), 0);
    }

    #[test]
    fn resume_lets_the_newest_request_with_the_tag_go_first() {
        let mut d = driver(json!({}));
        d.add_breakpoint("write_aio", "A").unwrap();
        d.add_breakpoint("write_aio", "A").unwrap();
        let ((), mut older) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        let ((), mut newer) = breakpoint::armed(|| d.event(BlkdebugEvent::WriteAio));
        d.resume("A").unwrap();
        assert!(newer.is_over());
        assert!(!older.is_over());
    }

    fn tmp(name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("blkdebug-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name).to_string_lossy().into_owned()
    }

    #[test]
    fn qcow2_over_blkdebug_fails_the_third_write_with_eio() {
        let path = tmp("third.qcow2");
        crate::create_image("qcow2", &path, Some(1 << 20), &Default::default()).unwrap();
        let mut g = crate::BlockGraph::new();
        // States 1 -> 2 -> 3 on each data write; in state 3 the write fails once.
        let o = json!({
            "driver": "qcow2",
            "file": {
                "driver": "blkdebug",
                "image": {"driver": "file", "filename": path},
                "set-state": [
                    {"event": "write_aio", "state": 1, "new_state": 2},
                    {"event": "write_aio", "state": 2, "new_state": 3}
                ],
                "inject-error": [{"event": "write_aio", "state": 3, "errno": 5, "once": true}]
            }
        });
        let n = g.open(o.as_object().unwrap()).unwrap();
        let data = [0x5au8; 4096];
        let mut node = lock(&n);
        node.write(0, &data, false).unwrap();
        node.write(65536, &data, false).unwrap();
        let e = node.write(131072, &data, false).unwrap_err();
        assert_eq!(e.errno_value(), libc::EIO);
        node.write(131072, &data, false).unwrap();
        let mut back = [0u8; 4096];
        node.read(65536, &mut back).unwrap();
        assert_eq!(back, data);
        drop(node);
        g.close_all();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn blkdebug_filename_syntax_opens_config_and_image() {
        let img = tmp("syntax.raw");
        let conf = tmp("syntax.conf");
        crate::create_image("raw", &img, Some(65536), &Default::default()).unwrap();
        std::fs::write(
            &conf,
            "[inject-error]\nevent = \"read_aio\"\nerrno = \"28\"\n",
        )
        .unwrap();
        let mut g = crate::BlockGraph::new();
        let o = json!({"driver": "raw", "filename": format!("blkdebug:{}:{}", conf, img)});
        let n = g.open(o.as_object().unwrap()).unwrap();
        let mut buf = [0u8; 512];
        let e = lock(&n).read(0, &mut buf).unwrap_err();
        assert_eq!(e.errno_value(), libc::ENOSPC);
        let file = lock(&n).file().unwrap();
        assert_eq!(lock(&file).driver_name(), "blkdebug");
        assert_eq!(lock(&file).filename(), format!("blkdebug:{}:{}", conf, img));
        std::fs::remove_file(&img).unwrap();
        std::fs::remove_file(&conf).unwrap();
    }

    #[test]
    fn breakpoint_functions_find_blkdebug_below_a_format_node() {
        let img = tmp("bp.raw");
        crate::create_image("raw", &img, Some(65536), &Default::default()).unwrap();
        let mut g = crate::BlockGraph::new();
        let o = json!({"driver": "raw", "file": {"driver": "blkdebug", "image": {"driver": "file", "filename": img}}});
        let n = g.open(o.as_object().unwrap()).unwrap();
        debug_breakpoint(&n, "write_aio", "A").unwrap();
        // A synchronous write cannot be resumed: it passes the breakpoint.
        lock(&n).write(0, &[1u8; 512], false).unwrap();
        assert!(!debug_is_suspended(&n, "A"));
        let mut op = crate::node::WriteOp::new(0, crate::request::ReqKind::Write { fua: false });
        let (r, _) = breakpoint::armed(|| lock(&n).poll_write(&mut op, &[2u8; 512]));
        assert!(matches!(r, Poll::Pending));
        assert!(debug_is_suspended(&n, "A"));
        debug_resume(&n, "A").unwrap();
        assert!(!debug_is_suspended(&n, "A"));
        assert!(matches!(
            lock(&n).poll_write(&mut op, &[2u8; 512]),
            Poll::Ready(Ok(()))
        ));
        let plain = g
            .open(json!({"driver": "null-co"}).as_object().unwrap())
            .unwrap();
        assert_eq!(
            debug_breakpoint(&plain, "write_aio", "A"),
            Err(libc::ENOTSUP)
        );
        std::fs::remove_file(&img).unwrap();
    }

    #[test]
    fn qcow2_metadata_events_reach_blkdebug() {
        let path = tmp("meta.qcow2");
        crate::create_image("qcow2", &path, Some(1 << 20), &Default::default()).unwrap();
        let mut g = crate::BlockGraph::new();
        let o = json!({
            "driver": "qcow2",
            "file": {
                "driver": "blkdebug",
                "image": {"driver": "file", "filename": path},
                "inject-error": [{"event": "l2_update", "errno": 28, "once": true},
                                 {"event": "flush_to_disk", "errno": 5, "once": true}]
            }
        });
        let n = g.open(o.as_object().unwrap()).unwrap();
        let mut node = lock(&n);
        let errs: Vec<Option<i32>> = (0..3u64)
            .map(|i| {
                node.write(i * 65536, &[1u8; 512], false)
                    .err()
                    .map(|e| e.errno_value())
            })
            .collect();
        // L2 tables are written back at flush time, so the write itself
        // succeeds; the first flush meets flush_to_disk's EIO before any
        // table is written, the second the l2_update ENOSPC.
        assert_eq!(errs, vec![None, None, None]);
        let flushes: Vec<Option<i32>> = (0..3)
            .map(|_| node.flush().err().map(|e| e.errno_value()))
            .collect();
        assert_eq!(flushes, vec![Some(libc::EIO), Some(libc::ENOSPC), None]);
        drop(node);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn flush_to_disk_rule_fails_a_flush_through_a_format_node() {
        let img = tmp("flush.raw");
        crate::create_image("raw", &img, Some(65536), &Default::default()).unwrap();
        let mut g = crate::BlockGraph::new();
        let o = json!({"driver": "raw", "file": {"driver": "blkdebug",
                       "inject-error": [{"event": "flush_to_disk", "once": true}],
                       "image": {"driver": "file", "filename": img}}});
        let n = g.open(o.as_object().unwrap()).unwrap();
        assert_eq!(lock(&n).flush().unwrap_err().errno_value(), libc::EIO);
        lock(&n).flush().unwrap();
        std::fs::remove_file(&img).unwrap();
    }

    /// Same script as `qemu-io -c "write 0 512" -c "write 512 512" -c "read 0 512"
    /// -c "write 1024 512"` on QEMU: ok, ENOSPC, ENOSPC, ENOSPC.
    #[test]
    fn active_rule_keeps_failing_reads_and_writes_like_qemu_io() {
        let img = tmp("qio.raw");
        crate::create_image("raw", &img, Some(1 << 20), &Default::default()).unwrap();
        let mut g = crate::BlockGraph::new();
        let o = json!({"driver": "raw", "file": {"driver": "blkdebug",
            "image": {"driver": "file", "filename": img},
            "inject-error": [{"event": "write_aio", "state": 2, "errno": 28}],
            "set-state": [{"event": "write_aio", "state": 1, "new_state": 2}]}});
        let n = g.open(o.as_object().unwrap()).unwrap();
        let mut node = lock(&n);
        let mut buf = [0u8; 512];
        let errs = [
            node.write(0, &buf, false).err(),
            node.write(512, &buf, false).err(),
            node.read(0, &mut buf).err(),
            node.write(1024, &buf, false).err(),
        ]
        .map(|e| e.map(|e| e.errno_value()));
        assert_eq!(
            errs,
            [
                None,
                Some(libc::ENOSPC),
                Some(libc::ENOSPC),
                Some(libc::ENOSPC)
            ]
        );
        drop(node);
        std::fs::remove_file(&img).unwrap();
    }

    #[test]
    fn qemu_io_break_and_resume_reach_blkdebug() {
        let img = tmp("qiobp.raw");
        crate::create_image("raw", &img, Some(65536), &Default::default()).unwrap();
        let mut g = crate::BlockGraph::new();
        let o = json!({"driver": "raw", "file": {"driver": "blkdebug", "image": {"driver": "file", "filename": img}}});
        let n = g.open(o.as_object().unwrap()).unwrap();
        let mut io = crate::qemu_io::QemuIo::new();
        io.set_debug_ops(Box::new(BlkdebugDebugOps));
        io.set_inflight(g.inflight());
        let mut out = String::new();
        for c in [
            "break write_aio A",
            "aio_write -P 7 0 512",
            "wait_break A",
            "read -P 0 0 512",
        ] {
            io.run(Some(&n), c, &mut out).unwrap();
        }
        assert!(debug_is_suspended(&n, "A"));
        assert!(!out.contains("wrote"), "{}", out);
        io.run(Some(&n), "resume A", &mut out).unwrap();
        assert!(!debug_is_suspended(&n, "A"));
        out.push_str(&g.run_inflight());
        assert!(out.contains("wrote 512/512 bytes at offset 0"), "{}", out);
        io.run(Some(&n), "read -P 7 0 512", &mut out).unwrap();
        assert!(!out.contains("Pattern verification failed"), "{}", out);
        io.run(Some(&n), "resume A", &mut out).unwrap();
        assert!(
            out.contains("Could not resume request: No such file or directory"),
            "{}",
            out
        );
        std::fs::remove_file(&img).unwrap();
    }
}
