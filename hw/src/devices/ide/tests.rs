//! Controller state machines driven through their ports, with an in-memory
//! disk standing in for the owner's block backend.

use std::sync::{Arc, Mutex};

use super::*;
use crate::bus::BusDevice;
use crate::events::MachineEvent;
use crate::irq::IrqLevels;

/// A disk image in memory; `fail` makes every request fail with that errno
/// and `action` is the policy answer.
struct MemDisk {
    data: Vec<u8>,
    fail: Option<i32>,
    action: ErrorAction,
    errors: Vec<(bool, i32)>,
    /// Stands for I/O limits that queue every request: (slot, write, bytes,
    /// ticket) of each one held.
    throttled: bool,
    held: Vec<(DriveSlot, bool, u64, u64)>,
}

impl BlockIo for MemDisk {
    fn length(&mut self, _: DriveSlot) -> u64 {
        self.data.len() as u64
    }
    fn read(&mut self, _: DriveSlot, offset: u64, buf: &mut [u8]) -> Result<(), i32> {
        if let Some(e) = self.fail {
            return Err(e);
        }
        let o = offset as usize;
        let src = self.data.get(o..o + buf.len()).ok_or(libc::EIO)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, _: DriveSlot, offset: u64, data: &[u8]) -> Result<(), i32> {
        if let Some(e) = self.fail {
            return Err(e);
        }
        let o = offset as usize;
        let dst = self.data.get_mut(o..o + data.len()).ok_or(libc::EIO)?;
        dst.copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self, _: DriveSlot) -> Result<(), i32> {
        Ok(())
    }
    fn error_action(&mut self, _: DriveSlot, is_read: bool, errno: i32) -> ErrorAction {
        self.errors.push((is_read, errno));
        self.action
    }
    fn admit(&mut self, slot: DriveSlot, is_write: bool, bytes: u64, ticket: u64) -> bool {
        if self.throttled {
            self.held.push((slot, is_write, bytes, ticket));
        }
        !self.throttled
    }
}

struct Rig {
    ctrl: Arc<Mutex<IdeController>>,
    cmd: IdePorts,
    ctl: IdePorts,
    irqs: Arc<IrqLevels>,
    events: EventQueue,
    disk: MemDisk,
}

fn identity(model: &str) -> DriveIdentity {
    DriveIdentity {
        serial: "QM00001".into(),
        model: model.into(),
        version: "2.5+".into(),
    }
}

fn rig(kind: DriveKind, sectors: u64) -> Rig {
    let irqs = IrqLevels::new();
    let events = EventQueue::new();
    let mut c = IdeController::new(
        Irq::new(irqs.clone(), 14),
        Irq::new(irqs.clone(), 15),
        events.clone(),
    );
    c.attach(
        DriveSlot { bus: 0, unit: 0 },
        DriveConfig::new(
            kind,
            identity(if kind == DriveKind::Cd {
                "QEMU DVD-ROM"
            } else {
                "QEMU HARDDISK"
            }),
            sectors,
        ),
    );
    let ctrl = Arc::new(Mutex::new(c));
    let mut r = IdePorts::ranges(&ctrl).into_iter();
    let cmd = r.next().map(|(_, _, p)| p).expect("cmd ports");
    let ctl = r.next().map(|(_, _, p)| p).expect("ctl port");
    let len = if kind == DriveKind::Hd {
        sectors
    } else {
        sectors.max(64)
    };
    let data = (0..len * 512).map(|i| (i / 512) as u8 ^ i as u8).collect();
    Rig {
        ctrl,
        cmd,
        ctl,
        irqs,
        events,
        disk: MemDisk {
            data,
            fail: None,
            action: ErrorAction::Report,
            errors: vec![],
            throttled: false,
            held: vec![],
        },
    }
}

impl Rig {
    fn outb(&mut self, port: u64, v: u8) {
        self.cmd.write(port, &[v]);
        self.service();
    }
    fn inb(&mut self, port: u64) -> u8 {
        let mut b = [0u8];
        self.cmd.read(port, &mut b);
        b[0]
    }
    fn inw(&mut self) -> u16 {
        let mut b = [0u8; 2];
        self.cmd.read(0, &mut b);
        self.service();
        u16::from_le_bytes(b)
    }
    fn outw(&mut self, v: u16) {
        self.cmd.write(0, &v.to_le_bytes());
        self.service();
    }
    fn service(&mut self) {
        self.ctrl.lock().expect("lock").run_io(&mut self.disk);
    }
    fn read_block(&mut self, n: usize) -> Vec<u8> {
        (0..n / 2).flat_map(|_| self.inw().to_le_bytes()).collect()
    }
    fn packet(&mut self, pkt: [u8; 12], bcl: u16) {
        self.outb(1, 0);
        self.outb(4, bcl as u8);
        self.outb(5, (bcl >> 8) as u8);
        self.outb(7, 0xa0);
        for w in pkt.chunks(2) {
            self.outw(u16::from_le_bytes([w[0], w[1]]));
        }
    }
    fn sense(&mut self) -> (u8, u8) {
        let mut p = [0u8; 12];
        p[0] = 0x03;
        p[4] = 18;
        self.packet(p, 18);
        let s = self.read_block(18);
        (s[2], s[12])
    }
}

#[test]
fn identify_returns_model_serial_and_raises_irq14() {
    let mut r = rig(DriveKind::Hd, 2048);
    r.outb(6, 0xa0);
    r.outb(7, 0xec);
    assert!(r.irqs.level(14));
    assert_eq!(r.inb(7) & 0x08, 0x08, "DRQ after IDENTIFY");
    assert!(!r.irqs.level(14), "status read lowers the line");
    let id = r.read_block(512);
    let model: Vec<u8> = (0..40).map(|i| id[54 + (i ^ 1)]).collect();
    assert_eq!(String::from_utf8_lossy(&model).trim_end(), "QEMU HARDDISK");
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn pio_read_and_write_of_lba28_sectors_reach_the_disk() {
    let mut r = rig(DriveKind::Hd, 64);
    r.outb(2, 2);
    r.outb(3, 5);
    r.outb(4, 0);
    r.outb(5, 0);
    r.outb(6, 0xe0);
    r.outb(7, 0x20);
    let got = r.read_block(1024);
    assert_eq!(got, r.disk.data[5 * 512..7 * 512].to_vec());
    assert_eq!(r.inb(7), 0x50);
    assert_eq!(r.inb(3), 7, "sector register advanced past the read");
    r.outb(2, 1);
    r.outb(3, 9);
    r.outb(7, 0x30);
    for i in 0..256u16 {
        r.outw(i);
    }
    let expect: Vec<u8> = (0..256u16).flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(r.disk.data[9 * 512..10 * 512].to_vec(), expect);
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn read_past_the_end_aborts_without_io() {
    let mut r = rig(DriveKind::Hd, 8);
    r.outb(2, 1);
    r.outb(3, 8);
    r.outb(6, 0xe0);
    r.outb(7, 0x20);
    assert_eq!(r.inb(7), 0x41);
    assert_eq!(r.inb(1), 0x04);
    assert!(r.ctrl.lock().expect("lock").channels[0].error_consistent());
}

#[test]
fn stop_policy_keeps_the_request_and_retries_it() {
    let mut r = rig(DriveKind::Hd, 8);
    r.disk.fail = Some(libc::ENOSPC);
    r.disk.action = ErrorAction::Stop;
    r.outb(2, 1);
    r.outb(3, 1);
    r.outb(6, 0xe0);
    r.outb(7, 0x30);
    for _ in 0..256 {
        r.outw(0xabcd);
    }
    assert_eq!(r.disk.errors, vec![(false, libc::ENOSPC)]);
    assert!(r.ctrl.lock().expect("lock").has_stopped_requests());
    r.disk.fail = None;
    r.ctrl.lock().expect("lock").restart(&mut r.disk);
    assert_eq!(r.disk.data[512..514].to_vec(), vec![0xcd, 0xab]);
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn report_policy_aborts_the_command() {
    let mut r = rig(DriveKind::Hd, 8);
    r.disk.fail = Some(libc::EIO);
    r.outb(2, 1);
    r.outb(6, 0xe0);
    r.outb(7, 0x20);
    assert_eq!(r.inb(7), 0x41);
    assert_eq!(r.disk.errors, vec![(true, libc::EIO)]);
}

#[test]
fn a_grown_medium_shows_in_identify_and_range_checks() {
    let mut r = rig(DriveKind::Hd, 8);
    r.outb(7, 0xec);
    let id = r.read_block(512);
    assert_eq!(u16::from_le_bytes([id[120], id[121]]), 8);
    r.disk.data.resize(16 * 512, 0);
    r.outb(2, 1);
    r.outb(3, 12);
    r.outb(6, 0xe0);
    r.outb(7, 0x20);
    assert_eq!(r.inb(7), 0x58, "sector 12 exists now");
    r.read_block(512);
    r.outb(7, 0xec);
    let id = r.read_block(512);
    assert_eq!(u16::from_le_bytes([id[120], id[121]]), 16);
}

#[test]
fn srst_restores_signatures() {
    let mut r = rig(DriveKind::Cd, 0);
    r.ctl.write(0, &[0x04]);
    let mut b = [0u8];
    r.ctl.read(0, &mut b);
    assert_eq!(b[0], 0x90);
    r.ctl.write(0, &[0x00]);
    assert_eq!((r.inb(4), r.inb(5)), (0x14, 0xeb));
    assert_eq!(r.inb(7), 0x00);
}

#[test]
fn cd_reports_no_medium_then_reads_after_a_change() {
    let mut r = rig(DriveKind::Cd, 0);
    r.packet([0; 12], 0);
    assert_eq!(r.inb(7) & 1, 1);
    assert_eq!(r.sense(), (2, 0x3a));
    r.ctrl
        .lock()
        .expect("lock")
        .change_media(DriveSlot { bus: 0, unit: 0 }, true, 64);
    r.packet([0; 12], 0);
    assert_eq!(r.sense(), (2, 0x3a), "first: medium not present");
    r.packet([0; 12], 0);
    assert_eq!(r.sense(), (6, 0x28), "then: medium may have changed");
    r.packet([0; 12], 0);
    assert_eq!(r.inb(7), 0x50);
    let mut read10 = [0u8; 12];
    read10[0] = 0x28;
    read10[5] = 1;
    read10[8] = 1;
    r.packet(read10, 2048);
    let got = r.read_block(2048);
    assert_eq!(got, r.disk.data[2048..4096].to_vec());
    assert_eq!(r.inb(7), 0x50);
    read10[5] = 100;
    r.packet(read10, 2048);
    assert_eq!(r.sense(), (5, 0x21));
}

#[test]
fn locked_tray_refuses_guest_eject_and_lock_is_reported() {
    let mut r = rig(DriveKind::Cd, 64);
    let mut p = [0u8; 12];
    p[0] = 0x1e;
    p[4] = 1;
    r.packet(p, 0);
    let mut eject = [0u8; 12];
    eject[0] = 0x1b;
    eject[4] = 0x02;
    r.packet(eject, 0);
    assert_eq!(r.sense(), (2, 0x53));
    p[4] = 0;
    r.packet(p, 0);
    r.packet(eject, 0);
    assert!(r
        .ctrl
        .lock()
        .expect("lock")
        .is_tray_open(DriveSlot { bus: 0, unit: 0 }));
    let slot = DriveSlot { bus: 0, unit: 0 };
    assert_eq!(
        r.events.drain(),
        vec![
            MachineEvent::Drive(DriveEvent {
                slot,
                kind: DriveEventKind::MediumLocked { locked: true }
            }),
            MachineEvent::Drive(DriveEvent {
                slot,
                kind: DriveEventKind::MediumLocked { locked: false }
            }),
            MachineEvent::Drive(DriveEvent {
                slot,
                kind: DriveEventKind::TrayMoved { open: true }
            }),
        ]
    );
}

#[test]
fn event_status_reports_an_eject_request() {
    let mut r = rig(DriveKind::Cd, 64);
    let slot = DriveSlot { bus: 0, unit: 0 };
    r.ctrl.lock().expect("lock").eject_request(slot, false);
    let mut p = [0u8; 12];
    p[0] = 0x4a;
    p[1] = 1;
    p[4] = 0x10;
    p[8] = 8;
    r.packet(p, 8);
    let ev = r.read_block(8);
    assert_eq!(ev, vec![0, 4, 4, 0x10, 1, 2, 0, 0]);
}

#[test]
fn absent_slave_reads_zero_status_and_ignores_commands() {
    let mut r = rig(DriveKind::Hd, 8);
    r.outb(6, 0xb0);
    assert_eq!(r.inb(7), 0);
    r.outb(7, 0xec);
    assert!(!r.irqs.level(14));
}

#[test]
fn random_port_traffic_never_panics() {
    let mut r = rig(DriveKind::Cd, 64);
    let mut x: u32 = 0x9e37_79b9;
    for _ in 0..20000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let port = (x % 8) as u64;
        let v = (x >> 8) as u8;
        match (x >> 16) % 4 {
            0 => r.outb(port, v),
            1 => {
                r.inb(port);
            }
            2 => r.outw((x >> 3) as u16),
            _ => {
                r.inw();
            }
        }
    }
}

fn dma_rig() -> (Rig, Arc<crate::memory::GuestMemory>) {
    let r = rig(DriveKind::Hd, 64);
    let mem = Arc::new(crate::memory::GuestMemory::new_flat(1 << 20).expect("memory"));
    r.ctrl.lock().expect("lock").set_memory(mem.clone());
    // One PRD at 0x1000: 1 KiB at 0x2000, end of table.
    mem.write(0x1000, &0x2000u32.to_le_bytes()).expect("prd");
    mem.write(0x1004, &(0x8000_0000u32 | 1024).to_le_bytes())
        .expect("prd");
    r.ctrl
        .lock()
        .expect("lock")
        .bmdma_write(4, &0x1000u32.to_le_bytes());
    (r, mem)
}

impl Rig {
    fn bm_cmd(&mut self, v: u8) {
        self.ctrl.lock().expect("lock").bmdma_write(0, &[v]);
        self.service();
    }
    fn bm_status(&self) -> u8 {
        let mut b = [0u8];
        self.ctrl.lock().expect("lock").bmdma_read(2, &mut b);
        b[0]
    }
}

#[test]
fn read_dma_fills_the_prd_buffer_and_interrupts() {
    let (mut r, mem) = dma_rig();
    r.outb(2, 2);
    r.outb(3, 4);
    r.outb(6, 0xe0);
    r.outb(7, 0xc8);
    assert_eq!(
        r.inb(7) & 0x88,
        0x88,
        "busy with DRQ until the bus master starts"
    );
    r.bm_cmd(0x09);
    let mut got = vec![0u8; 1024];
    mem.read(0x2000, &mut got).expect("read");
    assert_eq!(got, r.disk.data[4 * 512..6 * 512].to_vec());
    assert_eq!(r.bm_status() & 0x05, 0x04, "interrupt, no longer active");
    assert!(r.irqs.level(14));
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn write_dma_started_first_takes_guest_memory_to_disk() {
    let (mut r, mem) = dma_rig();
    mem.write(0x2000, &[0x3c; 1024]).expect("write");
    r.bm_cmd(0x01);
    r.outb(2, 2);
    r.outb(3, 10);
    r.outb(6, 0xe0);
    r.outb(7, 0xca);
    assert_eq!(r.disk.data[10 * 512..12 * 512].to_vec(), vec![0x3c; 1024]);
    assert_eq!(r.inb(7), 0x50);
    r.ctrl.lock().expect("lock").bmdma_write(2, &[0x04]);
    assert_eq!(
        r.bm_status() & 0x04,
        0,
        "write one clears the interrupt bit"
    );
}

#[test]
fn short_prd_table_ends_without_interrupt() {
    let (mut r, _mem) = dma_rig();
    r.outb(2, 4);
    r.outb(3, 0);
    r.outb(6, 0xe0);
    r.outb(7, 0xc8);
    r.irqs.take_changes();
    r.bm_cmd(0x09);
    assert_eq!(r.bm_status() & 0x01, 0);
    assert_eq!(r.inb(3), 2, "the covered sectors were moved");
}

#[test]
fn atapi_dma_read_goes_through_the_prds() {
    let r0 = rig(DriveKind::Cd, 64);
    let mem = Arc::new(crate::memory::GuestMemory::new_flat(1 << 20).expect("memory"));
    let mut r = r0;
    r.ctrl.lock().expect("lock").set_memory(mem.clone());
    mem.write(0x1000, &0x4000u32.to_le_bytes()).expect("prd");
    mem.write(0x1004, &(0x8000_0000u32 | 4096).to_le_bytes())
        .expect("prd");
    r.ctrl
        .lock()
        .expect("lock")
        .bmdma_write(4, &0x1000u32.to_le_bytes());
    let mut read10 = [0u8; 12];
    read10[0] = 0x28;
    read10[5] = 2;
    read10[8] = 2;
    r.outb(1, 1);
    r.outb(7, 0xa0);
    for w in read10.chunks(2) {
        r.outw(u16::from_le_bytes([w[0], w[1]]));
    }
    r.bm_cmd(0x09);
    let mut got = vec![0u8; 4096];
    mem.read(0x4000, &mut got).expect("read");
    assert_eq!(got, r.disk.data[4096..8192].to_vec());
    assert_eq!(r.inb(7), 0x50);
    assert_eq!(r.bm_status() & 0x05, 0x04);
}

impl Rig {
    /// Lets every held request go, as the owner's throttle timer does.
    fn release_all(&mut self) {
        let held = std::mem::take(&mut self.disk.held);
        for (slot, _, _, ticket) in held {
            self.ctrl.lock().expect("lock").release(slot, ticket);
        }
        self.service();
    }
}

#[test]
fn throttled_pio_read_stays_busy_until_released() {
    let mut r = rig(DriveKind::Hd, 64);
    r.disk.throttled = true;
    r.outb(2, 2);
    r.outb(3, 5);
    r.outb(6, 0xe0);
    r.irqs.take_changes();
    r.outb(7, 0x20);
    assert_eq!(r.inb(7), 0xd0, "busy, no DRQ while held");
    assert!(!r.irqs.level(14));
    let slot = DriveSlot { bus: 0, unit: 0 };
    assert_eq!(r.disk.held, vec![(slot, false, 512, 0)]);
    assert!(!r.ctrl.lock().expect("lock").has_runnable_io());
    r.service();
    assert_eq!(r.disk.held.len(), 1, "a held request is not asked again");
    r.release_all();
    assert_eq!(r.inb(7), 0x58);
    let got = r.read_block(512);
    assert_eq!(got, r.disk.data[5 * 512..6 * 512].to_vec());
    // The second sector of the command is a new request, held again.
    assert_eq!(r.disk.held.len(), 1);
    assert_eq!(r.inb(7) & 0x88, 0x80);
    r.release_all();
    assert_eq!(r.read_block(512), r.disk.data[6 * 512..7 * 512].to_vec());
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn throttled_dma_write_keeps_the_bus_master_active_until_released() {
    let (mut r, mem) = dma_rig();
    r.disk.throttled = true;
    mem.write(0x2000, &[0x5a; 1024]).expect("write");
    r.outb(2, 2);
    r.outb(3, 10);
    r.outb(6, 0xe0);
    r.outb(7, 0xca);
    r.irqs.take_changes();
    r.bm_cmd(0x01);
    assert_eq!(r.bm_status() & 0x05, 0x01, "active, no interrupt");
    assert_eq!(r.inb(7) & 0x80, 0x80);
    assert_ne!(r.disk.data[10 * 512], 0x5a);
    let slot = DriveSlot { bus: 0, unit: 0 };
    assert_eq!(r.disk.held, vec![(slot, true, 1024, 0)]);
    r.release_all();
    assert_eq!(r.disk.data[10 * 512..12 * 512].to_vec(), vec![0x5a; 1024]);
    assert_eq!(r.bm_status() & 0x05, 0x04);
    assert!(r.irqs.level(14));
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn a_release_for_a_request_dropped_by_reset_is_ignored() {
    let mut r = rig(DriveKind::Hd, 64);
    r.disk.throttled = true;
    r.outb(2, 1);
    r.outb(6, 0xe0);
    r.outb(7, 0x20);
    let stale = r.disk.held.remove(0);
    r.ctl.write(0, &[0x04]);
    r.ctl.write(0, &[0x00]);
    r.outb(2, 1);
    r.outb(7, 0x20);
    assert_eq!(r.disk.held.len(), 1);
    r.ctrl.lock().expect("lock").release(stale.0, stale.3);
    r.service();
    assert_eq!(r.inb(7) & 0x88, 0x80, "still waiting for its own ticket");
    r.release_all();
    assert_eq!(r.inb(7), 0x58);
}

#[test]
fn stopping_the_bus_master_lets_a_held_dma_request_finish() {
    let (mut r, mem) = dma_rig();
    r.disk.throttled = true;
    r.outb(2, 2);
    r.outb(3, 4);
    r.outb(6, 0xe0);
    r.outb(7, 0xc8);
    r.bm_cmd(0x09);
    assert_eq!(r.bm_status() & 0x01, 0x01);
    r.bm_cmd(0x08);
    let mut got = vec![0u8; 1024];
    mem.read(0x2000, &mut got).expect("read");
    assert_eq!(got, r.disk.data[4 * 512..6 * 512].to_vec());
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn a_stopped_throttled_write_is_admitted_again_on_retry() {
    let mut r = rig(DriveKind::Hd, 8);
    r.disk.throttled = true;
    r.disk.fail = Some(libc::ENOSPC);
    r.disk.action = ErrorAction::Stop;
    r.outb(2, 1);
    r.outb(3, 1);
    r.outb(6, 0xe0);
    r.outb(7, 0x30);
    for _ in 0..256 {
        r.outw(0x1234);
    }
    assert!(r.disk.errors.is_empty(), "held before any I/O");
    r.release_all();
    assert_eq!(r.disk.errors, vec![(false, libc::ENOSPC)]);
    r.disk.fail = None;
    r.ctrl.lock().expect("lock").restart(&mut r.disk);
    assert_eq!(r.disk.held.len(), 1, "the retry asks the limits again");
    assert_eq!(r.inb(7) & 0x80, 0x80);
    r.release_all();
    assert_eq!(r.disk.data[512..514].to_vec(), vec![0x34, 0x12]);
    assert_eq!(r.inb(7), 0x50);
}

#[test]
fn the_bus_master_serves_the_drive_that_armed_it_not_the_selected_one() {
    let (mut r, mem) = dma_rig();
    r.ctrl.lock().expect("lock").attach(
        DriveSlot { bus: 0, unit: 1 },
        DriveConfig::new(DriveKind::Cd, identity("QEMU DVD-ROM"), 0),
    );
    r.outb(2, 2);
    r.outb(3, 4);
    r.outb(6, 0xe0);
    r.outb(7, 0xc8);
    // SRST (the task file now holds the signature: LBA 1, one sector),
    // then the guest selects the CD before starting the bus master.
    r.ctl.write(0, &[0x04]);
    r.ctl.write(0, &[0x00]);
    r.outb(6, 0xf0);
    r.bm_cmd(0x09);
    assert!(r.disk.errors.is_empty(), "the empty CD was not asked");
    let mut got = vec![0u8; 512];
    mem.read(0x2000, &mut got).expect("read");
    assert_eq!(got, r.disk.data[512..1024].to_vec());
    assert_eq!(r.inb(7), 0x00, "the CD stays selected, untouched");
}
