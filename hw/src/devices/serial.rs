//! 16550A UART (COM1 is port 0x3f8, IRQ 4).
//!
//! Transmission is instantaneous: every byte written to THR goes straight to the sink
//! the owner gave (its chardev). Received bytes come from the owner via `receive`,
//! bounded by `can_receive`.

use std::collections::VecDeque;

use crate::bus::BusDevice;
use crate::irq::Irq;

pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;

const FIFO_LEN: usize = 16;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;

const IIR_NO_INT: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_CTI: u8 = 0x0c;
const IIR_FIFO: u8 = 0xc0;

const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
const MCR_OUT2: u8 = 0x08;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_BI: u8 = 0x10;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

/// The guest-visible registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRegs {
    pub divider: u16,
    pub ier: u8,
    pub fcr: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub lsr: u8,
    pub msr: u8,
    pub scr: u8,
    /// A THR-empty interrupt is pending (cleared by reading IIR or writing THR).
    pub thr_ipending: bool,
    pub rx: VecDeque<u8>,
}

impl Default for SerialRegs {
    fn default() -> Self {
        SerialRegs {
            divider: 12,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: MCR_OUT2,
            lsr: LSR_THRE | LSR_TEMT,
            msr: 0xb0, // DCD, DSR, CTS
            scr: 0,
            thr_ipending: false,
            rx: VecDeque::new(),
        }
    }
}

pub type SerialSink = Box<dyn FnMut(&[u8]) + Send>;

pub struct Serial {
    pub regs: SerialRegs,
    irq: Irq,
    sink: SerialSink,
}

impl Serial {
    pub fn new(irq: Irq, sink: SerialSink) -> Serial {
        Serial {
            regs: SerialRegs::default(),
            irq,
            sink,
        }
    }

    /// Replaces where transmitted bytes go (chardev change).
    pub fn set_sink(&mut self, sink: SerialSink) {
        self.sink = sink;
    }

    fn fifo_on(&self) -> bool {
        self.regs.fcr & FCR_ENABLE != 0
    }

    /// How many bytes the UART can take now.
    pub fn can_receive(&self) -> usize {
        if self.fifo_on() {
            FIFO_LEN.saturating_sub(self.regs.rx.len())
        } else {
            usize::from(self.regs.rx.is_empty())
        }
    }

    /// Feeds received bytes; returns how many were taken (the rest overran).
    pub fn receive(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        for &b in data {
            if !self.push_rx(b) {
                break;
            }
            taken += 1;
        }
        self.update_irq();
        taken
    }

    fn push_rx(&mut self, b: u8) -> bool {
        let cap = if self.fifo_on() { FIFO_LEN } else { 1 };
        if self.regs.rx.len() >= cap {
            self.regs.lsr |= LSR_OE;
            return false;
        }
        self.regs.rx.push_back(b);
        self.regs.lsr |= LSR_DR;
        true
    }

    /// Power-on state (system reset).
    pub fn reset(&mut self) {
        self.regs = SerialRegs::default();
        self.update_irq();
    }

    fn trigger_level(&self) -> usize {
        match self.regs.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    fn iir(&self) -> u8 {
        let r = &self.regs;
        let id = if r.ier & IER_RLSI != 0 && r.lsr & (LSR_OE | LSR_BI) != 0 {
            IIR_RLSI
        } else if r.ier & IER_RDI != 0 && !r.rx.is_empty() {
            // No timer drives the character timeout, so data below the trigger level
            // reports the timeout interrupt at once.
            if !self.fifo_on() || r.rx.len() >= self.trigger_level() {
                IIR_RDI
            } else {
                IIR_CTI
            }
        } else if r.ier & IER_THRI != 0 && r.thr_ipending {
            IIR_THRI
        } else if r.ier & IER_MSI != 0 && r.msr & 0x0f != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        };
        if self.fifo_on() {
            id | IIR_FIFO
        } else {
            id
        }
    }

    fn update_irq(&self) {
        self.irq.set(self.iir() & IIR_NO_INT == 0);
    }

    fn loopback_msr(&self) -> u8 {
        let m = self.regs.mcr;
        // CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2
        ((m & 0x02) << 3) | ((m & 0x01) << 5) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
    }

    fn read_reg(&mut self, off: u64) -> u8 {
        let dlab = self.regs.lcr & LCR_DLAB != 0;
        match off {
            0 if dlab => self.regs.divider as u8,
            0 => {
                let b = self.regs.rx.pop_front().unwrap_or(0);
                if self.regs.rx.is_empty() {
                    self.regs.lsr &= !LSR_DR;
                }
                b
            }
            1 if dlab => (self.regs.divider >> 8) as u8,
            1 => self.regs.ier,
            2 => {
                let v = self.iir();
                if v & 0x0f == IIR_THRI {
                    self.regs.thr_ipending = false;
                }
                v
            }
            3 => self.regs.lcr,
            4 => self.regs.mcr,
            5 => {
                let v = self.regs.lsr;
                self.regs.lsr &= !(LSR_OE | LSR_BI);
                v
            }
            6 => {
                if self.regs.mcr & MCR_LOOP != 0 {
                    self.loopback_msr()
                } else {
                    let v = self.regs.msr;
                    self.regs.msr &= 0xf0; // delta bits clear on read
                    v
                }
            }
            7 => self.regs.scr,
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, off: u64, v: u8) {
        let dlab = self.regs.lcr & LCR_DLAB != 0;
        match off {
            0 if dlab => self.regs.divider = (self.regs.divider & 0xff00) | v as u16,
            0 => {
                if self.regs.mcr & MCR_LOOP != 0 {
                    self.push_rx(v);
                } else {
                    (self.sink)(&[v]);
                }
                // Sent at once: THR is empty again and may interrupt.
                self.regs.thr_ipending = true;
                self.regs.lsr |= LSR_THRE | LSR_TEMT;
            }
            1 if dlab => self.regs.divider = (self.regs.divider & 0x00ff) | ((v as u16) << 8),
            1 => {
                let was = self.regs.ier;
                self.regs.ier = v & 0x0f;
                if v & IER_THRI != 0 && was & IER_THRI == 0 && self.regs.lsr & LSR_THRE != 0 {
                    self.regs.thr_ipending = true;
                }
            }
            2 => {
                if (v ^ self.regs.fcr) & FCR_ENABLE != 0 || v & FCR_CLEAR_RX != 0 {
                    self.regs.rx.clear();
                    self.regs.lsr &= !LSR_DR;
                }
                self.regs.fcr = v & 0xc9;
            }
            3 => self.regs.lcr = v,
            4 => self.regs.mcr = v & 0x1f,
            7 => self.regs.scr = v,
            _ => {}
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.read_reg(offset);
        }
        self.update_irq();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            self.write_reg(offset, b);
        }
        self.update_irq();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLevels;
    use std::sync::{Arc, Mutex};

    fn uart() -> (Serial, Arc<IrqLevels>, Arc<Mutex<Vec<u8>>>) {
        let chip = IrqLevels::new();
        let out = Arc::new(Mutex::new(Vec::new()));
        let o2 = out.clone();
        let s = Serial::new(
            Irq::new(chip.clone(), COM1_IRQ),
            Box::new(move |b| o2.lock().expect("lock").extend_from_slice(b)),
        );
        (s, chip, out)
    }

    fn rd(s: &mut Serial, off: u64) -> u8 {
        let mut b = [0u8];
        s.read(off, &mut b);
        b[0]
    }

    #[test]
    fn thr_writes_reach_the_sink() {
        let (mut s, _, out) = uart();
        s.write(0, b"h");
        s.write(0, b"i");
        assert_eq!(*out.lock().expect("lock"), b"hi");
        assert_eq!(rd(&mut s, 5) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn dlab_exposes_the_divisor_latch() {
        let (mut s, _, out) = uart();
        s.write(3, &[0x80]);
        s.write(0, &[0x01]);
        s.write(1, &[0x02]);
        s.write(3, &[0x03]);
        assert_eq!(s.regs.divider, 0x0201);
        assert_eq!(rd(&mut s, 3), 0x03);
        assert!(out.lock().expect("lock").is_empty());
    }

    #[test]
    fn received_byte_raises_rda_interrupt_and_reads_back() {
        let (mut s, chip, _) = uart();
        s.write(1, &[IER_RDI]);
        assert_eq!(s.receive(b"a"), 1);
        assert!(chip.level(4));
        assert_eq!(rd(&mut s, 2), IIR_RDI);
        assert_eq!(rd(&mut s, 5) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut s, 0), b'a');
        assert!(!chip.level(4));
        assert_eq!(rd(&mut s, 2), IIR_NO_INT);
    }

    #[test]
    fn without_fifo_only_one_byte_is_taken() {
        let (mut s, _, _) = uart();
        assert_eq!(s.can_receive(), 1);
        assert_eq!(s.receive(b"ab"), 1);
        assert_eq!(s.can_receive(), 0);
    }

    #[test]
    fn fifo_holds_sixteen_bytes_and_reports_fifo_bits() {
        let (mut s, _, _) = uart();
        s.write(2, &[0x01]);
        assert_eq!(s.receive(&[0u8; 20]), 16);
        assert_eq!(rd(&mut s, 2) & 0xc0, 0xc0);
        s.write(2, &[0x03]);
        assert_eq!(s.can_receive(), 16);
    }

    #[test]
    fn thr_empty_interrupt_is_cleared_by_reading_iir() {
        let (mut s, chip, _) = uart();
        s.write(1, &[IER_THRI]);
        assert!(chip.level(4));
        assert_eq!(rd(&mut s, 2), IIR_THRI);
        assert!(!chip.level(4));
    }

    #[test]
    fn loopback_sends_thr_to_rbr_not_the_sink() {
        let (mut s, _, out) = uart();
        s.write(4, &[MCR_LOOP | 0x03]);
        s.write(0, b"x");
        assert_eq!(rd(&mut s, 0), b'x');
        assert!(out.lock().expect("lock").is_empty());
        assert_eq!(rd(&mut s, 6) & 0x30, 0x30);
    }

    #[test]
    fn scratch_register_keeps_its_value() {
        let (mut s, _, _) = uart();
        s.write(7, &[0x5a]);
        assert_eq!(rd(&mut s, 7), 0x5a);
    }
}
