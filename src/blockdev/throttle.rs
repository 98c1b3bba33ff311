//! I/O throttling of backends (block_set_io_throttle, -drive throttling.*):
//! the limits and queues live in `block::throttle_group`; this module owns
//! the clock they run on (virtual under qtest, so `clock_step` releases
//! requests, realtime otherwise), the main-loop timer that fires them, and
//! completing the qemu-io aio requests they hold back. Guest IDE requests
//! and NBD requests wait in the same queues: released, a drive runs its
//! request from the main loop (`device_io::service`) and NBD tickets go to
//! the NBD server's inbox (`crate::nbd`), emptied whenever the timer is
//! re-armed.

use std::sync::{Arc, Mutex, MutexGuard};

use block::nbd::NbdTicket;
use block::qemu_io::{Accounting, AioOp, AioRequest, AioSubmit};
use block::request::inflight::lock_inflight;
use block::request::InflightHandle;
use block::throttle::ThrottleConfig;
use block::throttle_group::{Admission, ThrottleGroups};
use block::NodeRef;
use hw::devices::ide::{DriveSlot, IdeController};

use crate::emulator::Emulator;
use crate::main_loop::ClockType;

/// A request held back by a throttle group.
pub enum Held {
    /// A qemu-io aio request, run when released.
    Aio {
        node: Option<NodeRef>,
        req: AioRequest,
    },
    /// A guest IDE request: released, its drive may run it (the controller,
    /// not the emulator, is reachable from every place that releases).
    Device {
        ctrl: Arc<Mutex<IdeController>>,
        slot: DriveSlot,
        ticket: u64,
    },
    /// An NBD request: released, its ticket goes to `inbox`. The inbox, not
    /// the emulator, is reachable from every place that releases requests
    /// (qemu-io's aio_flush drains without the emulator at hand).
    Nbd { ticket: NbdTicket, inbox: NbdInbox },
}

/// Tickets of NBD requests released by their throttle group and not yet
/// resumed: one per running NBD server.
pub type NbdInbox = Arc<Mutex<Vec<NbdTicket>>>;

/// The groups, shared with the qemu-io submitters of one command.
pub type Groups = Arc<Mutex<ThrottleGroups<Held>>>;

pub fn groups(g: &Groups) -> MutexGuard<'_, ThrottleGroups<Held>> {
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

/// Runs a released request: a qemu-io one through the queue of requests
/// in flight (the text of what finished is returned), a device one by
/// letting its drive go on (true then), an NBD one by posting its ticket.
fn run_held(
    held: Held,
    stats: Option<&Arc<Mutex<block::stats::BlockStats>>>,
    inflight: &InflightHandle,
) -> (String, bool) {
    match held {
        Held::Aio { node, req } => {
            let acct = stats
                .map(|s| Box::new(block::stats::StatsAccounting(s.clone())) as Box<dyn Accounting>);
            let text = lock_inflight(inflight).submit(req.into_async(node, acct));
            (text, false)
        }
        Held::Device { ctrl, slot, ticket } => {
            ctrl.lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(slot, ticket);
            (String::new(), true)
        }
        Held::Nbd { ticket, inbox } => {
            match inbox.lock() {
                Ok(mut q) => q.push(ticket),
                Err(p) => p.into_inner().push(ticket),
            }
            (String::new(), false)
        }
    }
}

/// Runs requests the groups released and prints what qemu-io prints for them.
pub fn complete_released(emu: &mut Emulator, released: Vec<(String, Held)>) {
    let mut devices = false;
    let inflight = emu.block.inflight();
    for (backend, p) in released {
        let stats = emu.block.backend(&backend).map(|b| b.stats_handle());
        let (text, device) = run_held(p, stats.as_ref(), &inflight);
        print_stdout(&text);
        devices |= device;
    }
    if devices {
        crate::blockdev::device_io::service(emu);
    }
    crate::nbd::resume_released(emu);
    crate::blockdev::flush_events(emu);
}

/// Arms (or re-arms) the main-loop timer for the earliest group deadline,
/// after letting released NBD requests go on.
pub fn rearm(emu: &mut Emulator) {
    crate::nbd::resume_released(emu);
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

/// Everything a backend's group holds for it, released at once with the
/// limits kept (QEMU lifts them while it drains the backend).
fn release_all(g: &Groups, backend: &str, now: i64) -> Vec<(String, Held)> {
    let mut g = groups(g);
    let cfg = g.config_of(backend).cloned();
    let group = g.group_of(backend).map(str::to_string);
    let mut released = g.disable(backend, now);
    if let Some(cfg) = cfg {
        if let Ok(more) = g.set_limits(backend, group.as_deref(), &cfg, now) {
            released.extend(more);
        }
    }
    released
}

/// Requests of a backend that went away: qemu-io ones are dropped, guest
/// ones go on so their drive finishes them (with "no medium") on its next
/// pass instead of staying busy forever.
pub fn abandon(released: Vec<(String, Held)>) {
    for (_, h) in released {
        if let Held::Device { ctrl, slot, ticket } = h {
            ctrl.lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(slot, ticket);
        }
    }
}

/// Drains a backend's throttled requests (vm_stop's bdrv_drain_all): all of
/// them run now.
pub fn drain(emu: &mut Emulator, backend: &str) {
    if groups(&emu.blockdevs.throttle).pending(backend) == 0 {
        return;
    }
    let t = now(emu);
    let released = release_all(&emu.blockdevs.throttle, backend, t);
    complete_released(emu, released);
    rearm(emu);
}

/// qemu-io's aio requests on a throttled backend go through its group.
pub struct ThrottledSubmit {
    pub groups: Groups,
    pub backend: String,
    pub now: i64,
    pub stats: Option<Arc<Mutex<block::stats::BlockStats>>>,
    pub inflight: InflightHandle,
}

impl AioSubmit for ThrottledSubmit {
    fn submit(&mut self, node: &NodeRef, req: AioRequest) {
        let (is_write, bytes) = is_write_and_bytes(&req.op);
        let p = Held::Aio {
            node: Some(node.clone()),
            req,
        };
        let adm = groups(&self.groups).submit(&self.backend, is_write, bytes, p, self.now);
        if let Admission::Go(p) = adm {
            print_stdout(&run_held(p, self.stats.as_ref(), &self.inflight).0);
        }
    }

    /// aio_flush drains the backend: QEMU lifts the limits while draining, so
    /// everything held back runs now.
    /// Guest requests among them run on the main loop's next device pass.
    fn drain(&mut self, out: &mut String) {
        // NBD requests among them resume when the command re-arms the timer.
        for (_, p) in release_all(&self.groups, &self.backend, self.now) {
            out.push_str(&run_held(p, self.stats.as_ref(), &self.inflight).0);
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

    /// A guest request held for a backend that is deleted must not leave
    /// its drive busy for ever: `abandon` lets it go (it then fails with
    /// "no medium" on the drive's next pass).
    #[test]
    fn abandoned_guest_requests_are_released_to_their_drive() {
        use super::{abandon, Held};
        use block::throttle::ThrottleConfig;
        use block::throttle_group::{Admission, ThrottleGroups};
        use hw::devices::ide::drive::Pending;
        use hw::devices::ide::{DriveSlot, Gate, IdeController};
        use std::sync::{Arc, Mutex};

        let irqs = hw::irq::IrqLevels::new();
        let ctrl = IdeController::new(
            hw::irq::Irq::new(irqs.clone(), 14),
            hw::irq::Irq::new(irqs, 15),
            hw::events::EventQueue::new(),
        );
        let ctrl = Arc::new(Mutex::new(ctrl));
        let slot = DriveSlot { bus: 0, unit: 0 };
        {
            let mut c = ctrl.lock().unwrap();
            let d = &mut c.channels[0].drives[0];
            d.pending = Some(Pending::SectorRead {
                sector: 0,
                count: 1,
            });
            d.gate = Gate::Waiting(7);
        }
        let mut g: ThrottleGroups<Held> = ThrottleGroups::new();
        let args = serde_json::json!({"iops": 1});
        let cfg = ThrottleConfig::from_qmp(args.as_object().unwrap()).unwrap();
        g.set_limits("d0", None, &cfg, 0).unwrap();
        let held = |ticket| Held::Device {
            ctrl: ctrl.clone(),
            slot,
            ticket,
        };
        assert!(matches!(
            g.submit("d0", false, 512, held(6), 0),
            Admission::Go(_)
        ));
        assert!(matches!(
            g.submit("d0", false, 512, held(7), 0),
            Admission::Queued
        ));
        assert!(!ctrl.lock().unwrap().has_runnable_io());
        abandon(g.disable("d0", 0));
        assert_eq!(ctrl.lock().unwrap().channels[0].drives[0].gate, Gate::Go);
        assert!(ctrl.lock().unwrap().has_runnable_io());
    }
}
