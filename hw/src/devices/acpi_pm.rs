//! ACPI power-management registers as PIIX4 has them: PM1 event (status/enable),
//! PM1 control, the PM timer, and a GPE0 block. The power button sets PWRBTN_STS and
//! raises the SCI (IRQ 9) when enabled; SLP_EN with SLP_TYP 0 powers off (S5), 1
//! suspends (S3).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bus::BusDevice;
use crate::events::{EventQueue, MachineEvent};
use crate::irq::Irq;

/// QEMU's piix4 PM I/O base as SeaBIOS programs it.
pub const PM_BASE: u16 = 0x600;
pub const PM_LEN: u16 = 0x40;
pub const GPE0_BASE: u16 = 0xafe0;
pub const GPE0_LEN: u16 = 4;
pub const SCI_IRQ: u32 = 9;

pub const PM1_TMR_STS: u16 = 1 << 0;
pub const PM1_GBL_STS: u16 = 1 << 5;
pub const PM1_PWRBTN_STS: u16 = 1 << 8;
pub const PM1_RTC_STS: u16 = 1 << 10;
pub const PM1_WAK_STS: u16 = 1 << 15;
pub const PM1_CNT_SCI_EN: u16 = 1 << 0;
pub const PM1_CNT_SLP_EN: u16 = 1 << 13;

const PM_TIMER_HZ: u128 = 3_579_545;

/// Guest-visible PM state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcpiPmState {
    pub pm1_sts: u16,
    pub pm1_en: u16,
    pub pm1_cnt: u16,
    pub gpe0_sts: u16,
    pub gpe0_en: u16,
}

pub struct AcpiPm {
    pub state: AcpiPmState,
    sci: Irq,
    events: EventQueue,
    start: Instant,
    /// SCI_EN at reset: set when no firmware is there to enable ACPI mode.
    sci_en_at_reset: bool,
}

impl AcpiPm {
    pub fn new(sci: Irq, events: EventQueue, sci_en_at_reset: bool) -> AcpiPm {
        let mut pm = AcpiPm {
            state: AcpiPmState::default(),
            sci,
            events,
            start: Instant::now(),
            sci_en_at_reset,
        };
        pm.reset();
        pm
    }

    pub fn reset(&mut self) {
        self.state = AcpiPmState::default();
        if self.sci_en_at_reset {
            self.state.pm1_cnt = PM1_CNT_SCI_EN;
        }
        self.update_sci();
    }

    /// `system_powerdown`: the fixed power button was pressed.
    pub fn press_power_button(&mut self) {
        self.state.pm1_sts |= PM1_PWRBTN_STS;
        self.update_sci();
    }

    /// `system_wakeup` from S3: WAK_STS set.
    pub fn wakeup(&mut self) {
        self.state.pm1_sts |= PM1_WAK_STS;
        self.update_sci();
    }

    /// Sets GPE0 status bits (hotplug events) and updates the SCI.
    pub fn raise_gpe(&mut self, bits: u16) {
        self.state.gpe0_sts |= bits;
        self.update_sci();
    }

    /// The SCI level QEMU computes: enabled fixed events or enabled GPEs.
    pub fn sci_level(&self) -> bool {
        let s = &self.state;
        let fixed = PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN_STS | PM1_RTC_STS;
        (s.pm1_sts & s.pm1_en & fixed) != 0 || (s.gpe0_sts & s.gpe0_en) != 0
    }

    fn update_sci(&self) {
        self.sci.set(self.sci_level());
    }

    fn timer(&self) -> u32 {
        let ns = self.start.elapsed().as_nanos();
        ((ns * PM_TIMER_HZ / 1_000_000_000) & 0x00ff_ffff) as u32
    }

    fn write_cnt(&mut self, v: u16) {
        self.state.pm1_cnt = v & !PM1_CNT_SLP_EN;
        if v & PM1_CNT_SLP_EN != 0 {
            match (v >> 10) & 7 {
                0 => self.events.push(MachineEvent::PowerOff),
                1 => self.events.push(MachineEvent::Suspend),
                // PIIX4's S4 value: QEMU treats it as a power-off too.
                2 => self.events.push(MachineEvent::PowerOff),
                _ => {}
            }
        }
    }

    fn read_gpe(&mut self, offset: u64, data: &mut [u8]) {
        let regs = [
            self.state.gpe0_sts.to_le_bytes(),
            self.state.gpe0_en.to_le_bytes(),
        ]
        .concat();
        for (k, d) in data.iter_mut().enumerate() {
            *d = regs.get(offset as usize + k).copied().unwrap_or(0);
        }
    }

    fn write_gpe(&mut self, offset: u64, data: &[u8]) {
        for (k, &d) in data.iter().enumerate() {
            let i = offset as usize + k;
            let (reg, shift) = match i {
                0 | 1 => (&mut self.state.gpe0_sts, i * 8),
                2 | 3 => (&mut self.state.gpe0_en, (i - 2) * 8),
                _ => continue,
            };
            if i < 2 {
                *reg &= !((d as u16) << shift);
            } else {
                *reg = (*reg & !(0xff << shift)) | ((d as u16) << shift);
            }
        }
        self.update_sci();
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut regs = [0u8; 12];
        regs[0..2].copy_from_slice(&self.state.pm1_sts.to_le_bytes());
        regs[2..4].copy_from_slice(&self.state.pm1_en.to_le_bytes());
        regs[4..6].copy_from_slice(&self.state.pm1_cnt.to_le_bytes());
        regs[8..12].copy_from_slice(&self.timer().to_le_bytes());
        for (k, d) in data.iter_mut().enumerate() {
            *d = regs.get(offset as usize + k).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut v = [0u8; 2];
        let n = data.len().min(2);
        v[..n].copy_from_slice(&data[..n]);
        let word = u16::from_le_bytes(v);
        match (offset, data.len()) {
            (0, _) => self.state.pm1_sts &= !(if n == 1 { word & 0xff } else { word }),
            (1, 1) => self.state.pm1_sts &= !(word << 8),
            (2, 1) => self.state.pm1_en = (self.state.pm1_en & 0xff00) | (word & 0xff),
            (2, _) => self.state.pm1_en = word,
            (3, 1) => self.state.pm1_en = (self.state.pm1_en & 0x00ff) | (word << 8),
            (4, 1) => self.write_cnt((self.state.pm1_cnt & 0xff00) | (word & 0xff)),
            (4, _) => self.write_cnt(word),
            (5, 1) => self.write_cnt((self.state.pm1_cnt & 0x00ff) | (word << 8)),
            _ => {}
        }
        self.update_sci();
    }
}

/// The GPE0 block as a bus device of its own, sharing the PM state.
pub struct AcpiGpe(pub Arc<Mutex<AcpiPm>>);

impl BusDevice for AcpiGpe {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_gpe(offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_gpe(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLevels;

    fn pm() -> (AcpiPm, Arc<IrqLevels>, EventQueue) {
        let chip = IrqLevels::new();
        let q = EventQueue::new();
        (
            AcpiPm::new(Irq::new(chip.clone(), SCI_IRQ), q.clone(), false),
            chip,
            q,
        )
    }

    fn rd16(p: &mut AcpiPm, off: u64) -> u16 {
        let mut b = [0u8; 2];
        p.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    #[test]
    fn power_button_sets_status_and_sci_only_when_enabled() {
        let (mut p, chip, _) = pm();
        p.press_power_button();
        assert_eq!(rd16(&mut p, 0) & PM1_PWRBTN_STS, PM1_PWRBTN_STS);
        assert!(!chip.level(9));
        p.write(2, &PM1_PWRBTN_STS.to_le_bytes());
        assert!(chip.level(9));
        p.write(0, &PM1_PWRBTN_STS.to_le_bytes());
        assert_eq!(rd16(&mut p, 0) & PM1_PWRBTN_STS, 0);
        assert!(!chip.level(9));
    }

    #[test]
    fn slp_en_with_type_zero_powers_off() {
        let (mut p, _, q) = pm();
        p.write(4, &(PM1_CNT_SLP_EN | PM1_CNT_SCI_EN).to_le_bytes());
        assert_eq!(q.drain(), vec![MachineEvent::PowerOff]);
        assert_eq!(rd16(&mut p, 4), PM1_CNT_SCI_EN);
    }

    #[test]
    fn slp_en_with_type_one_suspends() {
        let (mut p, _, q) = pm();
        p.write(4, &(PM1_CNT_SLP_EN | 1 << 10).to_le_bytes());
        assert_eq!(q.drain(), vec![MachineEvent::Suspend]);
    }

    #[test]
    fn pm_timer_advances() {
        let (mut p, _, _) = pm();
        let mut a = [0u8; 4];
        p.read(8, &mut a);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let mut b = [0u8; 4];
        p.read(8, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn gpe_status_is_write_one_to_clear() {
        let (p, chip, _) = pm();
        let shared = Arc::new(Mutex::new(p));
        let mut g = AcpiGpe(shared.clone());
        g.write(2, &[0x02]);
        shared.lock().expect("lock").raise_gpe(0x02);
        assert!(chip.level(9));
        g.write(0, &[0x02]);
        let mut b = [0u8; 2];
        g.read(0, &mut b);
        assert_eq!(b, [0, 0]);
        assert!(!chip.level(9));
    }
}
