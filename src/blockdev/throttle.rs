//! I/O throttling of backends (block_set_io_throttle, -drive throttling.*):
//! the limits and queues live in `block::throttle_group`; this module owns
//! the clock they run on (virtual under qtest, so `clock_step` releases
//! requests, realtime otherwise), the main-loop timer that fires them, and
//! completing the qemu-io aio requests they hold back.

use std::sync::{Arc, Mutex, MutexGuard};

use block::qemu_io::{AioDone, AioOp, AioRequest, AioSubmit};
use block::throttle::ThrottleConfig;
use block::throttle_group::{Admission, ThrottleGroups};
use block::NodeRef;

use crate::emulator::Emulator;
use crate::main_loop::ClockType;

/// A request held back by a throttle group.
pub struct PendingAio {
    pub node: Option<NodeRef>,
    pub req: AioRequest,
}

/// The groups, shared with the qemu-io submitters of one command.
pub type Groups = Arc<Mutex<ThrottleGroups<PendingAio>>>;

pub fn groups(g: &Groups) -> MutexGuard<'_, ThrottleGroups<PendingAio>> {
    match g.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The clock throttling runs on.
pub fn clock(emu: &Emulator) -> ClockType {
    if emu.machine.accel == crate::vl::config::Accel::Qtest {
        ClockType::Virtual
    } else {
        ClockType::Realtime
    }
}

pub fn now(emu: &Emulator) -> i64 {
    emu.clocks.now(clock(emu))
}

fn is_write_and_bytes(op: &AioOp) -> (bool, u64) {
    match op {
        AioOp::Read { len } => (false, *len),
        AioOp::Write { data, .. } => (true, data.len() as u64),
        AioOp::WriteZeroes { len, .. } => (true, *len),
    }
}

fn print_stdout(text: &str) {
    use std::io::Write;
    if text.is_empty() {
        return;
    }
    let mut so = std::io::stdout();
    let _ = so.write_all(text.as_bytes());
    let _ = so.flush();
}

fn book(stats: Option<&Arc<Mutex<block::stats::BlockStats>>>, done: &AioDone) {
    use block::qemu_io::Accounting;
    if let (Some(s), Some(ev)) = (stats, done.acct) {
        block::stats::StatsAccounting(s.clone()).account(ev);
    }
}

/// Runs requests the groups released and prints what qemu-io prints for them.
pub fn complete_released(emu: &mut Emulator, released: Vec<(String, PendingAio)>) {
    for (backend, p) in released {
        let stats = emu.block.backend(&backend).map(|b| b.stats_handle());
        let done = p.req.run(p.node.as_ref());
        book(stats.as_ref(), &done);
        print_stdout(&done.text);
    }
    crate::blockdev::flush_events(emu);
}

/// Arms (or re-arms) the main-loop timer for the earliest group deadline.
pub fn rearm(emu: &mut Emulator) {
    if let Some(id) = emu.blockdevs.throttle_timer.take() {
        emu.timers.cancel(id);
    }
    let Some(deadline) = groups(&emu.blockdevs.throttle).next_deadline() else {
        return;
    };
    let delay = (deadline - now(emu)).max(0);
    let id = emu.add_timer(
        clock(emu),
        delay,
        Box::new(|emu: &mut Emulator| {
            emu.blockdevs.throttle_timer = None;
            let t = now(emu);
            let released = groups(&emu.blockdevs.throttle).run_timers(t);
            complete_released(emu, released);
            rearm(emu);
        }),
    );
    emu.blockdevs.throttle_timer = Some(id);
}

/// Applies limits to a backend (block_set_io_throttle, -drive throttling.*).
pub fn set_limits(
    emu: &mut Emulator,
    backend: &str,
    group: Option<&str>,
    cfg: &ThrottleConfig,
) -> Result<(), String> {
    let t = now(emu);
    let released = groups(&emu.blockdevs.throttle)
        .set_limits(backend, group, cfg, t)
        .map_err(|e| e.to_string())?;
    complete_released(emu, released);
    rearm(emu);
    Ok(())
}

/// qemu-io's aio requests on a throttled backend go through its group.
pub struct ThrottledSubmit {
    pub groups: Groups,
    pub backend: String,
    pub now: i64,
    pub stats: Option<Arc<Mutex<block::stats::BlockStats>>>,
}

impl AioSubmit for ThrottledSubmit {
    fn submit(&mut self, node: &NodeRef, req: AioRequest) {
        let (is_write, bytes) = is_write_and_bytes(&req.op);
        let p = PendingAio {
            node: Some(node.clone()),
            req,
        };
        let adm = groups(&self.groups).submit(&self.backend, is_write, bytes, p, self.now);
        if let Admission::Go(p) = adm {
            let done = p.req.run(p.node.as_ref());
            book(self.stats.as_ref(), &done);
            print_stdout(&done.text);
        }
    }

    /// aio_flush drains the backend: QEMU lifts the limits while draining, so
    /// everything held back runs now.
    fn drain(&mut self, out: &mut String) {
        let mut g = groups(&self.groups);
        let cfg = g.config_of(&self.backend).cloned();
        let group = g.group_of(&self.backend).map(str::to_string);
        let mut released = g.disable(&self.backend, self.now);
        if let Some(cfg) = cfg {
            if let Ok(more) = g.set_limits(&self.backend, group.as_deref(), &cfg, self.now) {
                released.extend(more);
            }
        }
        drop(g);
        for (_, p) in released {
            let done = p.req.run(p.node.as_ref());
            book(self.stats.as_ref(), &done);
            out.push_str(&done.text);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::blockdev::{apply_pending_limits, drive, IfType};
    use crate::qmp_cmds::qom::tests::emu;
    use crate::qmp_cmds::CmdCtx;
    use block::stats::AcctType;

    fn reads(e: &crate::emulator::Emulator) -> u64 {
        e.block.backend("t0").unwrap().stats().ops(AcctType::Read)
    }

    #[test]
    fn throttled_aio_requests_wait_for_the_virtual_clock() {
        let mut e = emu();
        drive::drive_new(
            &mut e.block,
            &mut e.blockdevs,
            "driver=null-co,if=none,id=t0,throttling.iops-total=1",
            IfType::None,
        )
        .unwrap();
        apply_pending_limits(&mut e).unwrap();
        let mut ctx = CmdCtx { monitor: None };
        for _ in 0..3 {
            crate::hmp_cmds::run_line(&mut e, &mut ctx, "qemu-io t0 \"aio_read 0 512\"");
        }
        assert_eq!(reads(&e), 1, "one request fits the first second");
        e.clocks.qtest_set(1_100_000_000);
        e.run_expired_timers();
        assert_eq!(reads(&e), 2);
        e.clocks.qtest_set(2_200_000_000);
        e.run_expired_timers();
        assert_eq!(reads(&e), 3);
    }
}
