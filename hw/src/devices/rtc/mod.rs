//! MC146818 CMOS RTC and NVRAM at ports 0x70 (index) / 0x71 (data), IRQ 8.
//!
//! The clock is host UTC plus an offset; it is computed when read. Setting it (through
//! SET mode in register B, or by writing a time register while the clock runs) queues
//! an RTC_CHANGE record. NVRAM survives reset. Periodic, alarm and update-ended
//! interrupts need the owner's timer: arm it for `next_deadline()` and call
//! `run_timers(rtc_clock_ns())` when it fires (and after guest accesses, since they
//! may change the deadline).

mod clock;

pub use clock::{from_seconds, to_seconds, DateTime, RtcBase};

/// The RTC's clock: host time in nanoseconds since the epoch.
pub fn rtc_clock_ns() -> i64 {
    let (s, ns) = clock::host_now();
    s * 1_000_000_000 + ns as i64
}

use crate::bus::BusDevice;
use crate::events::{EventQueue, MachineEvent};
use crate::irq::Irq;

pub const RTC_BASE: u16 = 0x70;
pub const RTC_IRQ: u32 = 8;

const SECONDS: usize = 0x00;
const MINUTES: usize = 0x02;
const HOURS: usize = 0x04;
const DAY_OF_WEEK: usize = 0x06;
const DAY_OF_MONTH: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;
const CENTURY: usize = 0x32;
const IBM_PS2_CENTURY: usize = 0x37;

const REG_A_UIP: u8 = 0x80;
const REG_B_PIE: u8 = 0x40;
const REG_B_AIE: u8 = 0x20;
const REG_B_UIE: u8 = 0x10;
const REG_B_SQWE: u8 = 0x08;
const REG_C_IRQF: u8 = 0x80;
const REG_C_PF: u8 = 0x40;
const REG_C_AF: u8 = 0x20;
const REG_C_UF: u8 = 0x10;
const SECONDS_ALARM: usize = 0x01;
const MINUTES_ALARM: usize = 0x03;
const HOURS_ALARM: usize = 0x05;
const REG_B_SET: u8 = 0x80;
const REG_B_24H: u8 = 0x02;
const REG_B_DM: u8 = 0x04;

/// The guest-visible state: 128 bytes of CMOS (clock registers and NVRAM), the index
/// register, and the clock's offset from host UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcState {
    pub cmos: [u8; 128],
    pub index: u8,
    /// Guest RTC seconds minus host UTC seconds.
    pub offset: i64,
    /// When the periodic interrupt next fires (RTC clock ns), if it runs.
    pub next_periodic_ns: Option<i64>,
    /// Guest second last seen by `run_timers` (update-ended and alarm checks).
    pub last_second: i64,
}

pub struct Rtc {
    pub state: RtcState,
    base_offset: i64,
    irq: Irq,
    events: EventQueue,
}

fn is_time_reg(i: usize) -> bool {
    matches!(
        i,
        SECONDS | MINUTES | HOURS | DAY_OF_WEEK | DAY_OF_MONTH | MONTH | YEAR | CENTURY
    )
}

impl Rtc {
    pub fn new(base: RtcBase, irq: Irq, events: EventQueue) -> Rtc {
        let offset = base.initial_offset();
        let mut cmos = [0u8; 128];
        cmos[REG_A] = 0x26;
        cmos[REG_B] = REG_B_24H;
        cmos[REG_D] = 0x80;
        let last_second = clock::host_now().0 + offset;
        let mut rtc = Rtc {
            state: RtcState {
                cmos,
                index: 0,
                offset,
                next_periodic_ns: None,
                last_second,
            },
            base_offset: offset,
            irq,
            events,
        };
        rtc.refresh_time();
        rtc
    }

    /// Fills the memory-size bytes the PC BIOS reads, as QEMU's pc does.
    pub fn set_pc_memory(&mut self, below_4g: u64, above_4g: u64, cpus: u32) {
        let c = &mut self.state.cmos;
        let base_kb = (below_4g / 1024).min(640);
        c[0x15] = base_kb as u8;
        c[0x16] = (base_kb >> 8) as u8;
        let ext = if below_4g > 1 << 20 {
            ((below_4g - (1 << 20)) / 1024).min(65535)
        } else {
            0
        };
        c[0x17] = ext as u8;
        c[0x18] = (ext >> 8) as u8;
        c[0x30] = ext as u8;
        c[0x31] = (ext >> 8) as u8;
        let mid = if below_4g > 16 << 20 {
            ((below_4g - (16 << 20)) / 65536).min(65535)
        } else {
            0
        };
        c[0x34] = mid as u8;
        c[0x35] = (mid >> 8) as u8;
        let high = above_4g / 65536;
        c[0x5b] = high as u8;
        c[0x5c] = (high >> 8) as u8;
        c[0x5d] = (high >> 16) as u8;
        c[0x14] = 0x06; // equipment: FPU, PS/2 mouse
        c[0x5f] = cpus.saturating_sub(1) as u8;
    }

    /// An NVRAM byte (for the owner's boot-order and similar settings).
    pub fn nvram(&self, index: u8) -> u8 {
        self.state.cmos[(index & 0x7f) as usize]
    }

    pub fn set_nvram(&mut self, index: u8, value: u8) {
        self.state.cmos[(index & 0x7f) as usize] = value;
    }

    /// Current guest time in seconds since the epoch.
    pub fn guest_seconds(&self) -> i64 {
        clock::host_now().0 + self.state.offset
    }

    /// System reset: interrupt enables and flags clear; clock and NVRAM are kept.
    pub fn reset(&mut self) {
        self.state.cmos[REG_B] &= !(REG_B_PIE | REG_B_AIE | REG_B_UIE | REG_B_SQWE);
        self.state.cmos[REG_C] = 0;
        self.state.next_periodic_ns = None;
        self.irq.lower();
    }

    /// The periodic interrupt's period from register A's rate bits, when enabled.
    fn periodic_period_ns(&self) -> Option<i64> {
        let mut code = (self.state.cmos[REG_A] & 0x0f) as u32;
        if code == 0 || self.state.cmos[REG_B] & (REG_B_PIE | REG_B_SQWE) == 0 {
            return None;
        }
        if code <= 2 {
            code += 7;
        }
        Some((1i64 << (code - 1)) * 1_000_000_000 / 32768)
    }

    fn reschedule_periodic(&mut self, now_ns: i64) {
        self.state.next_periodic_ns = self.periodic_period_ns().map(|p| now_ns + p);
    }

    /// The next RTC-clock time at which `run_timers` has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        let mut d = self.state.next_periodic_ns;
        if self.running() && self.state.cmos[REG_B] & (REG_B_UIE | REG_B_AIE) != 0 {
            let next_second = (rtc_clock_ns().div_euclid(1_000_000_000) + 1) * 1_000_000_000;
            d = Some(d.map_or(next_second, |p| p.min(next_second)));
        }
        d
    }

    /// Sets the interrupt flags due by `now_ns` and raises IRQ 8 for enabled ones.
    pub fn run_timers(&mut self, now_ns: i64) {
        let mut flags = 0u8;
        if let (Some(next), Some(period)) = (self.state.next_periodic_ns, self.periodic_period_ns())
        {
            if now_ns >= next {
                flags |= REG_C_PF;
                let missed = (now_ns - next) / period + 1;
                self.state.next_periodic_ns = Some(next + missed * period);
            }
        }
        let second = now_ns.div_euclid(1_000_000_000) + self.state.offset;
        if self.running() && second > self.state.last_second {
            flags |= REG_C_UF;
            let t = from_seconds(second);
            let c = self.state.cmos;
            let matches = |alarm: u8, v: u32| alarm >= 0xc0 || self.reg_value(alarm) == v;
            if matches(c[SECONDS_ALARM], t.second)
                && matches(c[MINUTES_ALARM], t.minute)
                && matches(c[HOURS_ALARM], t.hour)
            {
                flags |= REG_C_AF;
            }
        }
        self.state.last_second = second;
        self.raise_flags(flags);
    }

    fn raise_flags(&mut self, flags: u8) {
        if flags == 0 {
            return;
        }
        let c = &mut self.state.cmos;
        c[REG_C] |= flags;
        if c[REG_C] & c[REG_B] & (REG_C_PF | REG_C_AF | REG_C_UF) != 0 {
            c[REG_C] |= REG_C_IRQF;
            self.irq.raise();
        }
    }

    fn bcd(&self) -> bool {
        self.state.cmos[REG_B] & REG_B_DM == 0
    }

    fn to_reg(&self, v: u32) -> u8 {
        if self.bcd() {
            (((v / 10) << 4) | (v % 10)) as u8
        } else {
            v as u8
        }
    }

    fn reg_value(&self, r: u8) -> u32 {
        if self.bcd() {
            ((r >> 4) as u32 & 0x0f) * 10 + (r & 0x0f) as u32
        } else {
            r as u32
        }
    }

    fn running(&self) -> bool {
        self.state.cmos[REG_B] & REG_B_SET == 0
    }

    /// Rewrites the time registers from the clock.
    fn refresh_time(&mut self) {
        let t = from_seconds(self.guest_seconds());
        let hour = if self.state.cmos[REG_B] & REG_B_24H != 0 {
            self.to_reg(t.hour)
        } else {
            let h12 = if t.hour.is_multiple_of(12) {
                12
            } else {
                t.hour % 12
            };
            self.to_reg(h12) | if t.hour >= 12 { 0x80 } else { 0 }
        };
        let c = [
            (SECONDS, self.to_reg(t.second)),
            (MINUTES, self.to_reg(t.minute)),
            (HOURS, hour),
            (DAY_OF_WEEK, self.to_reg(t.weekday + 1)),
            (DAY_OF_MONTH, self.to_reg(t.day)),
            (MONTH, self.to_reg(t.month)),
            (YEAR, self.to_reg((t.year.rem_euclid(100)) as u32)),
            (CENTURY, self.to_reg((t.year.div_euclid(100)) as u32)),
        ];
        for (i, v) in c {
            self.state.cmos[i] = v;
        }
    }

    /// Takes the time registers as the new clock and reports the change.
    fn take_time(&mut self) {
        let c = &self.state.cmos;
        let raw_hour = c[HOURS];
        let hour = if c[REG_B] & REG_B_24H != 0 {
            self.reg_value(raw_hour)
        } else {
            let h = self.reg_value(raw_hour & 0x7f) % 12;
            if raw_hour & 0x80 != 0 {
                h + 12
            } else {
                h
            }
        };
        let t = DateTime {
            year: self.reg_value(c[CENTURY]) as i64 * 100 + self.reg_value(c[YEAR]) as i64,
            month: self.reg_value(c[MONTH]).clamp(1, 12),
            day: self.reg_value(c[DAY_OF_MONTH]).clamp(1, 31),
            hour: hour.min(23),
            minute: self.reg_value(c[MINUTES]).min(59),
            second: self.reg_value(c[SECONDS]).min(59),
            weekday: 0,
        };
        self.state.offset = to_seconds(&t) - clock::host_now().0;
        self.events.push(MachineEvent::RtcChange {
            offset: self.state.offset - self.base_offset,
        });
    }

    fn read_data(&mut self) -> u8 {
        let i = self.state.index as usize;
        match i {
            _ if is_time_reg(i) => {
                if self.running() {
                    self.refresh_time();
                }
                self.state.cmos[i]
            }
            REG_A => {
                // UIP is set in the last ~244 us before the seconds register changes.
                let (_, ns) = clock::host_now();
                let uip = self.running() && ns >= 1_000_000_000 - 244_000;
                (self.state.cmos[REG_A] & !REG_A_UIP) | if uip { REG_A_UIP } else { 0 }
            }
            REG_C => {
                let v = self.state.cmos[REG_C];
                self.state.cmos[REG_C] = 0;
                self.irq.lower();
                v
            }
            _ => self.state.cmos[i],
        }
    }

    fn write_data(&mut self, v: u8) {
        let mut i = self.state.index as usize;
        if i == IBM_PS2_CENTURY {
            i = CENTURY;
        }
        match i {
            _ if is_time_reg(i) => {
                if self.running() {
                    self.refresh_time();
                    self.state.cmos[i] = v;
                    self.take_time();
                } else {
                    self.state.cmos[i] = v;
                }
            }
            REG_B => {
                let was_set = !self.running();
                if v & REG_B_SET != 0 && !was_set {
                    self.refresh_time();
                }
                self.state.cmos[REG_B] = if v & REG_B_SET != 0 { v & !0x10 } else { v };
                if was_set && v & REG_B_SET == 0 {
                    self.take_time();
                }
                self.reschedule_periodic(rtc_clock_ns());
                // An enable turned on while its flag is already set interrupts at once.
                if self.state.cmos[REG_C] & v & (REG_C_PF | REG_C_AF | REG_C_UF) != 0 {
                    self.state.cmos[REG_C] |= REG_C_IRQF;
                    self.irq.raise();
                }
            }
            REG_A => {
                self.state.cmos[REG_A] = v & !REG_A_UIP;
                self.reschedule_periodic(rtc_clock_ns());
            }
            REG_C | REG_D => {}
            _ => self.state.cmos[i] = v,
        }
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset & 1 == 1 {
            if let Some(b) = data.first_mut() {
                *b = self.read_data();
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        if offset & 1 == 0 {
            self.state.index = v & 0x7f;
        } else {
            self.write_data(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLevels;

    fn rtc(base: RtcBase) -> (Rtc, EventQueue) {
        let q = EventQueue::new();
        (
            Rtc::new(base, Irq::new(IrqLevels::new(), RTC_IRQ), q.clone()),
            q,
        )
    }

    fn rd(r: &mut Rtc, idx: u8) -> u8 {
        r.write(0, &[idx]);
        let mut b = [0u8];
        r.read(1, &mut b);
        b[0]
    }

    fn wr(r: &mut Rtc, idx: u8, v: u8) {
        r.write(0, &[idx]);
        r.write(1, &[v]);
    }

    #[test]
    fn base_date_shows_in_bcd_time_registers() {
        let (mut r, _) = rtc(RtcBase::parse("2006-06-17T16:01:21").expect("date"));
        assert_eq!(rd(&mut r, 0x09), 0x06);
        assert_eq!(rd(&mut r, 0x08), 0x06);
        assert_eq!(rd(&mut r, 0x07), 0x17);
        assert_eq!(rd(&mut r, 0x04), 0x16);
        assert_eq!(rd(&mut r, 0x32), 0x20);
        assert_eq!(rd(&mut r, 0x06), 7); // Saturday
    }

    #[test]
    fn binary_mode_gives_plain_numbers() {
        let (mut r, _) = rtc(RtcBase::parse("2006-06-17T16:01:21").expect("date"));
        wr(&mut r, 0x0b, REG_B_24H | REG_B_DM);
        assert_eq!(rd(&mut r, 0x07), 17);
    }

    #[test]
    fn setting_the_clock_in_set_mode_reports_rtc_change() {
        let (mut r, q) = rtc(RtcBase::Utc);
        wr(&mut r, 0x0b, REG_B_SET | REG_B_24H);
        wr(&mut r, 0x32, 0x20);
        wr(&mut r, 0x09, 0x01);
        wr(&mut r, 0x08, 0x01);
        wr(&mut r, 0x07, 0x01);
        wr(&mut r, 0x04, 0x00);
        wr(&mut r, 0x02, 0x00);
        wr(&mut r, 0x00, 0x00);
        assert!(q.is_empty());
        wr(&mut r, 0x0b, REG_B_24H);
        let ev = q.drain();
        let expected = 978_307_200 - clock::host_now().0;
        match ev.as_slice() {
            [MachineEvent::RtcChange { offset }] => assert!((offset - expected).abs() <= 2),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(rd(&mut r, 0x09), 0x01);
    }

    #[test]
    fn periodic_interrupt_fires_at_the_programmed_rate() {
        let chip = IrqLevels::new();
        let mut r = Rtc::new(
            RtcBase::Utc,
            Irq::new(chip.clone(), RTC_IRQ),
            EventQueue::new(),
        );
        wr(&mut r, 0x0a, 0x2f); // rate 15: 2 Hz
        wr(&mut r, 0x0b, REG_B_24H | REG_B_PIE);
        let deadline = r.next_deadline().expect("periodic deadline");
        let now = rtc_clock_ns();
        assert!(
            (deadline - now - 500_000_000).abs() < 50_000_000,
            "period {}",
            deadline - now
        );
        r.run_timers(deadline - 1);
        assert!(!chip.level(8));
        r.run_timers(deadline);
        assert!(chip.level(8));
        // UF may also be set if a second boundary passed; it is not enabled.
        assert_eq!(rd(&mut r, 0x0c) & !REG_C_UF, REG_C_IRQF | REG_C_PF);
        assert!(!chip.level(8));
        assert!(r.next_deadline().expect("next") > deadline);
    }

    #[test]
    fn update_ended_and_alarm_interrupts_fire_on_second_boundaries() {
        let chip = IrqLevels::new();
        let mut r = Rtc::new(
            RtcBase::Utc,
            Irq::new(chip.clone(), RTC_IRQ),
            EventQueue::new(),
        );
        wr(&mut r, 0x01, 0xc0);
        wr(&mut r, 0x03, 0xc0);
        wr(&mut r, 0x05, 0xc0);
        wr(&mut r, 0x0b, REG_B_24H | REG_B_UIE | REG_B_AIE);
        let d = r.next_deadline().expect("deadline");
        r.run_timers(d + 1);
        assert!(chip.level(8));
        assert_eq!(rd(&mut r, 0x0c), REG_C_IRQF | REG_C_UF | REG_C_AF);
    }

    #[test]
    fn disabled_interrupts_leave_no_deadline() {
        let (r, _) = rtc(RtcBase::Utc);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn nvram_survives_reset_but_interrupt_enables_do_not() {
        let (mut r, _) = rtc(RtcBase::Utc);
        wr(&mut r, 0x40, 0xab);
        wr(&mut r, 0x0b, 0x42);
        r.reset();
        assert_eq!(rd(&mut r, 0x40), 0xab);
        assert_eq!(rd(&mut r, 0x0b), 0x02);
    }

    #[test]
    fn register_c_reads_clear_and_d_reports_valid_ram() {
        let (mut r, _) = rtc(RtcBase::Utc);
        r.state.cmos[REG_C] = 0x90;
        assert_eq!(rd(&mut r, 0x0c), 0x90);
        assert_eq!(rd(&mut r, 0x0c), 0);
        assert_eq!(rd(&mut r, 0x0d), 0x80);
    }

    #[test]
    fn index_port_masks_the_nmi_bit() {
        let (mut r, _) = rtc(RtcBase::Utc);
        wr(&mut r, 0x80 | 0x41, 0x12);
        assert_eq!(rd(&mut r, 0x41), 0x12);
    }

    #[test]
    fn pc_memory_bytes_follow_qemu_layout() {
        let (mut r, _) = rtc(RtcBase::Utc);
        r.set_pc_memory(512 << 20, 0, 2);
        assert_eq!(r.nvram(0x15), 0x80);
        assert_eq!(r.nvram(0x16), 0x02);
        assert_eq!(
            u16::from_le_bytes([r.nvram(0x34), r.nvram(0x35)]),
            ((512u32 - 16) * 16) as u16
        );
        assert_eq!(r.nvram(0x5f), 1);
    }
}
