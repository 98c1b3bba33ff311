//! Interrupt delivery: a small trigger object handed to each device.
//!
//! A device holds an [`Irq`] (a line number plus the controller that takes it) and never
//! a reference back into the machine. With KVM the controller is the VM's in-kernel
//! irqchip (`KVM_IRQ_LINE`); without a vCPU (qtest) it is an [`IrqLevels`] recorder.

use std::sync::atomic::{AtomicI8, Ordering};
use std::sync::{Arc, Mutex};

/// Something that takes level changes on numbered interrupt lines (GSIs).
pub trait IrqChip: Send + Sync {
    fn set_level(&self, gsi: u32, level: bool);
}

/// One interrupt line of one controller. Clones share the line's last level, so a
/// device that re-asserts an unchanged level costs no ioctl.
#[derive(Clone)]
pub struct Irq {
    chip: Arc<dyn IrqChip>,
    gsi: u32,
    /// -1 unknown, 0 low, 1 high.
    last: Arc<AtomicI8>,
}

impl Irq {
    pub fn new(chip: Arc<dyn IrqChip>, gsi: u32) -> Irq {
        Irq {
            chip,
            gsi,
            last: Arc::new(AtomicI8::new(-1)),
        }
    }
    pub fn gsi(&self) -> u32 {
        self.gsi
    }
    pub fn set(&self, level: bool) {
        if self.last.swap(level as i8, Ordering::SeqCst) != level as i8 {
            self.chip.set_level(self.gsi, level);
        }
    }
    /// Forgets the cached level (after the controller itself was reset).
    pub fn resync(&self) {
        self.last.store(-1, Ordering::SeqCst);
    }
    pub fn raise(&self) {
        self.set(true);
    }
    pub fn lower(&self) {
        self.set(false);
    }
    /// An edge: raise then lower.
    pub fn pulse(&self) {
        self.set(true);
        self.set(false);
    }
}

/// Records line levels (for qtest's `irq_intercept_in` and for unit tests).
#[derive(Default)]
pub struct IrqLevels {
    levels: Mutex<Vec<bool>>,
    changes: Mutex<Vec<(u32, bool)>>,
}

impl IrqLevels {
    pub fn new() -> Arc<IrqLevels> {
        Arc::new(IrqLevels::default())
    }
    pub fn level(&self, gsi: u32) -> bool {
        let l = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        l.get(gsi as usize).copied().unwrap_or(false)
    }
    /// Level changes since the last call, in order (for qtest's IRQ raise/lower lines).
    pub fn take_changes(&self) -> Vec<(u32, bool)> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl IrqChip for IrqLevels {
    fn set_level(&self, gsi: u32, level: bool) {
        let mut l = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        let i = gsi as usize;
        if l.len() <= i {
            l.resize(i + 1, false);
        }
        if l[i] != level {
            l[i] = level;
            self.changes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((gsi, level));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_record_only_changes() {
        let chip = IrqLevels::new();
        let irq = Irq::new(chip.clone(), 4);
        irq.raise();
        irq.raise();
        irq.lower();
        assert_eq!(chip.take_changes(), vec![(4, true), (4, false)]);
        assert!(!chip.level(4));
    }
}
