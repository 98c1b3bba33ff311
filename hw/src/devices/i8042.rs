//! i8042 keyboard controller at 0x60 (data) / 0x64 (status, command), with a PS/2
//! keyboard (IRQ 1) and mouse (IRQ 12). Pulsing the reset line (command 0xFE, or an
//! output-port write with bit 0 clear) queues a reset request.

use std::collections::VecDeque;

use crate::bus::BusDevice;
use crate::events::{EventQueue, MachineEvent, ResetSource};
use crate::irq::Irq;

pub const DATA_PORT: u16 = 0x60;
pub const CMD_PORT: u16 = 0x64;
pub const KBD_IRQ: u32 = 1;
pub const MOUSE_IRQ: u32 = 12;

const STAT_OBF: u8 = 0x01;
const STAT_SELFTEST: u8 = 0x04;
const STAT_CMD: u8 = 0x08;
const STAT_UNLOCKED: u8 = 0x10;
const STAT_MOUSE_OBF: u8 = 0x20;

const MODE_KBD_INT: u8 = 0x01;
const MODE_MOUSE_INT: u8 = 0x02;
const MODE_DISABLE_KBD: u8 = 0x10;
const MODE_DISABLE_MOUSE: u8 = 0x20;
const MODE_XLATE: u8 = 0x40;

const ACK: u8 = 0xfa;
const QUEUE_LEN: usize = 256;

/// Guest-visible controller, keyboard and mouse state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I8042State {
    pub status: u8,
    pub mode: u8,
    pub outport: u8,
    /// Controller command waiting for its data byte (0x60, 0xD1...).
    pub pending_cmd: Option<u8>,
    /// Byte currently in the output buffer and whether it came from the mouse.
    pub out: Option<(u8, bool)>,
    /// Controller replies (self test, command byte...), delivered before device data.
    pub ctrl_queue: VecDeque<u8>,
    pub kbd_queue: VecDeque<u8>,
    pub mouse_queue: VecDeque<u8>,
    /// Keyboard command waiting for its argument (0xED, 0xF3, 0xF0).
    pub kbd_arg_cmd: Option<u8>,
    pub kbd_enabled: bool,
    pub scancode_set: u8,
    pub mouse_arg_cmd: Option<u8>,
    pub mouse_enabled: bool,
    pub mouse_rate: u8,
    pub mouse_resolution: u8,
    pub mouse_scaling21: bool,
    pub mouse_buttons: u8,
}

impl Default for I8042State {
    fn default() -> Self {
        I8042State {
            status: STAT_CMD | STAT_UNLOCKED,
            mode: MODE_KBD_INT | MODE_MOUSE_INT,
            outport: 0x01 | 0x02 | 0xcc, // reset line high, A20 on, unused bits set
            pending_cmd: None,
            out: None,
            ctrl_queue: VecDeque::new(),
            kbd_queue: VecDeque::new(),
            mouse_queue: VecDeque::new(),
            kbd_arg_cmd: None,
            kbd_enabled: true,
            scancode_set: 2,
            mouse_arg_cmd: None,
            mouse_enabled: false,
            mouse_rate: 100,
            mouse_resolution: 2,
            mouse_scaling21: false,
            mouse_buttons: 0,
        }
    }
}

pub struct I8042 {
    pub state: I8042State,
    kbd_irq: Irq,
    mouse_irq: Irq,
    events: EventQueue,
}

impl I8042 {
    pub fn new(kbd_irq: Irq, mouse_irq: Irq, events: EventQueue) -> I8042 {
        I8042 {
            state: I8042State::default(),
            kbd_irq,
            mouse_irq,
            events,
        }
    }

    pub fn reset(&mut self) {
        self.state = I8042State::default();
        self.update();
    }

    /// Queues keyboard scancode bytes (as the guest reads them: set 1 when the
    /// controller translates, set 2 otherwise).
    pub fn put_scancodes(&mut self, codes: &[u8]) {
        if !self.state.kbd_enabled {
            return;
        }
        for &c in codes {
            push(&mut self.state.kbd_queue, c);
        }
        self.update();
    }

    /// A relative mouse movement (`dy` positive is up) with button bits
    /// (1 left, 2 right, 4 middle).
    pub fn mouse_event(&mut self, dx: i32, dy: i32, buttons: u8) {
        self.state.mouse_buttons = buttons & 7;
        if !self.state.mouse_enabled {
            return;
        }
        let packet = mouse_packet(dx, dy, buttons);
        for b in packet {
            push(&mut self.state.mouse_queue, b);
        }
        self.update();
    }

    fn request_reset(&mut self) {
        self.events.push(MachineEvent::Reset {
            source: ResetSource::Keyboard,
        });
    }

    /// Moves the next byte into the output buffer and sets the interrupt lines.
    fn update(&mut self) {
        let s = &mut self.state;
        if s.out.is_none() {
            if let Some(b) = s.ctrl_queue.pop_front() {
                s.out = Some((b, false));
            }
        }
        if s.out.is_none() && s.mode & MODE_DISABLE_KBD == 0 {
            if let Some(b) = s.kbd_queue.pop_front() {
                s.out = Some((b, false));
            }
        }
        if s.out.is_none() && s.mode & MODE_DISABLE_MOUSE == 0 {
            if let Some(b) = s.mouse_queue.pop_front() {
                s.out = Some((b, true));
            }
        }
        s.status &= !(STAT_OBF | STAT_MOUSE_OBF);
        let (kbd, mouse) = match s.out {
            Some((_, false)) => {
                s.status |= STAT_OBF;
                (s.mode & MODE_KBD_INT != 0, false)
            }
            Some((_, true)) => {
                s.status |= STAT_OBF | STAT_MOUSE_OBF;
                (false, s.mode & MODE_MOUSE_INT != 0)
            }
            None => (false, false),
        };
        self.kbd_irq.set(kbd);
        self.mouse_irq.set(mouse);
    }

    /// Queues a controller reply.
    fn reply(&mut self, b: u8) {
        push(&mut self.state.ctrl_queue, b);
    }

    fn controller_command(&mut self, cmd: u8) {
        let s = &mut self.state;
        match cmd {
            0x20 => push(&mut s.ctrl_queue, s.mode),
            0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => s.pending_cmd = Some(cmd),
            0xa7 => s.mode |= MODE_DISABLE_MOUSE,
            0xa8 => s.mode &= !MODE_DISABLE_MOUSE,
            0xa9 | 0xab => self.reply(0x00),
            0xaa => {
                s.status |= STAT_SELFTEST;
                self.reply(0x55);
            }
            0xad => s.mode |= MODE_DISABLE_KBD,
            0xae => s.mode &= !MODE_DISABLE_KBD,
            0xc0 => self.reply(0x00),
            0xd0 => {
                let v = s.outport;
                self.reply(v);
            }
            0xdd => s.outport &= !0x02,
            0xdf => s.outport |= 0x02,
            0xf0..=0xff if cmd & 1 == 0 => self.request_reset(),
            _ => {}
        }
    }

    fn controller_data(&mut self, cmd: u8, v: u8) {
        match cmd {
            0x60 => {
                self.state.mode = v;
                if v & 0x04 != 0 {
                    self.state.status |= STAT_SELFTEST;
                } else {
                    self.state.status &= !STAT_SELFTEST;
                }
            }
            0xd1 => {
                self.state.outport = v;
                if v & 1 == 0 {
                    self.request_reset();
                }
            }
            0xd2 => push(&mut self.state.ctrl_queue, v),
            0xd3 => push(&mut self.state.mouse_queue, v),
            0xd4 => self.mouse_write(v),
            _ => {}
        }
    }

    fn kbd_write(&mut self, v: u8) {
        let s = &mut self.state;
        if let Some(cmd) = s.kbd_arg_cmd.take() {
            push(&mut s.kbd_queue, ACK);
            if cmd == 0xf0 {
                if v == 0 {
                    let set = s.scancode_set;
                    push(&mut s.kbd_queue, set);
                } else if (1..=3).contains(&v) {
                    s.scancode_set = v;
                }
            }
            return;
        }
        match v {
            0xed | 0xf3 | 0xf0 => {
                s.kbd_arg_cmd = Some(v);
                push(&mut s.kbd_queue, ACK);
            }
            0xee => push(&mut s.kbd_queue, 0xee),
            0xf2 => {
                let second = if s.mode & MODE_XLATE != 0 { 0x41 } else { 0x83 };
                for b in [ACK, 0xab, second] {
                    push(&mut s.kbd_queue, b);
                }
            }
            0xf4 => {
                s.kbd_enabled = true;
                push(&mut s.kbd_queue, ACK);
            }
            0xf5 => {
                s.kbd_enabled = false;
                push(&mut s.kbd_queue, ACK);
            }
            0xff => {
                s.kbd_queue.clear();
                s.kbd_enabled = true;
                s.scancode_set = 2;
                push(&mut s.kbd_queue, ACK);
                push(&mut s.kbd_queue, 0xaa);
            }
            _ => push(&mut s.kbd_queue, ACK),
        }
    }

    fn mouse_write(&mut self, v: u8) {
        let s = &mut self.state;
        if let Some(cmd) = s.mouse_arg_cmd.take() {
            match cmd {
                0xe8 => s.mouse_resolution = v,
                0xf3 => s.mouse_rate = v,
                _ => {}
            }
            push(&mut s.mouse_queue, ACK);
            return;
        }
        match v {
            0xe8 | 0xf3 => {
                s.mouse_arg_cmd = Some(v);
                push(&mut s.mouse_queue, ACK);
            }
            0xe6 => {
                s.mouse_scaling21 = false;
                push(&mut s.mouse_queue, ACK);
            }
            0xe7 => {
                s.mouse_scaling21 = true;
                push(&mut s.mouse_queue, ACK);
            }
            0xe9 => {
                let st = (s.mouse_buttons & 7)
                    | if s.mouse_scaling21 { 0x10 } else { 0 }
                    | if s.mouse_enabled { 0x20 } else { 0 };
                for b in [ACK, st, s.mouse_resolution, s.mouse_rate] {
                    push(&mut s.mouse_queue, b);
                }
            }
            0xeb => {
                push(&mut s.mouse_queue, ACK);
                for b in mouse_packet(0, 0, s.mouse_buttons) {
                    push(&mut s.mouse_queue, b);
                }
            }
            0xf2 => {
                push(&mut s.mouse_queue, ACK);
                push(&mut s.mouse_queue, 0x00);
            }
            0xf4 => {
                s.mouse_enabled = true;
                push(&mut s.mouse_queue, ACK);
            }
            0xf5 => {
                s.mouse_enabled = false;
                push(&mut s.mouse_queue, ACK);
            }
            0xf6 => {
                s.mouse_rate = 100;
                s.mouse_resolution = 2;
                s.mouse_scaling21 = false;
                s.mouse_enabled = false;
                push(&mut s.mouse_queue, ACK);
            }
            0xff => {
                s.mouse_queue.clear();
                s.mouse_enabled = false;
                s.mouse_rate = 100;
                s.mouse_resolution = 2;
                s.mouse_scaling21 = false;
                for b in [ACK, 0xaa, 0x00] {
                    push(&mut s.mouse_queue, b);
                }
            }
            _ => push(&mut s.mouse_queue, ACK),
        }
    }
}

fn push(q: &mut VecDeque<u8>, b: u8) {
    if q.len() < QUEUE_LEN {
        q.push_back(b);
    }
}

fn mouse_packet(dx: i32, dy: i32, buttons: u8) -> [u8; 3] {
    let dx = dx.clamp(-256, 255);
    let dy = dy.clamp(-256, 255);
    let b0 = 0x08 | (buttons & 7) | if dx < 0 { 0x10 } else { 0 } | if dy < 0 { 0x20 } else { 0 };
    [b0, dx as u8, dy as u8]
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v = if offset == 0 {
            let v = match self.state.out.take() {
                Some((b, _)) => b,
                None => 0,
            };
            self.update();
            v
        } else {
            self.state.status
        };
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        if offset == 0 {
            self.state.status &= !STAT_CMD;
            match self.state.pending_cmd.take() {
                Some(cmd) => self.controller_data(cmd, v),
                None => self.kbd_write(v),
            }
        } else {
            self.state.status |= STAT_CMD;
            self.controller_command(v);
        }
        self.update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IrqLevels;
    use std::sync::Arc;

    fn kbc() -> (I8042, Arc<IrqLevels>, EventQueue) {
        let chip = IrqLevels::new();
        let q = EventQueue::new();
        let k = I8042::new(
            Irq::new(chip.clone(), KBD_IRQ),
            Irq::new(chip.clone(), MOUSE_IRQ),
            q.clone(),
        );
        (k, chip, q)
    }

    fn rd(k: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        k.read(off, &mut b);
        b[0]
    }

    #[test]
    fn pulse_fe_requests_a_reset() {
        let (mut k, _, q) = kbc();
        k.write(4, &[0xfe]);
        assert_eq!(
            q.drain(),
            vec![MachineEvent::Reset {
                source: ResetSource::Keyboard
            }]
        );
    }

    #[test]
    fn output_port_write_with_bit0_clear_requests_a_reset() {
        let (mut k, _, q) = kbc();
        k.write(4, &[0xd1]);
        k.write(0, &[0xfe]);
        assert_eq!(q.drain().len(), 1);
    }

    #[test]
    fn self_test_answers_0x55_and_sets_system_flag() {
        let (mut k, chip, _) = kbc();
        k.write(4, &[0xaa]);
        assert_eq!(
            rd(&mut k, 4) & (STAT_OBF | STAT_SELFTEST),
            STAT_OBF | STAT_SELFTEST
        );
        assert!(chip.level(1));
        assert_eq!(rd(&mut k, 0), 0x55);
        assert_eq!(rd(&mut k, 4) & STAT_OBF, 0);
        assert!(!chip.level(1));
    }

    #[test]
    fn command_byte_reads_back_what_was_written() {
        let (mut k, _, _) = kbc();
        k.write(4, &[0x60]);
        k.write(0, &[0x47]);
        k.write(4, &[0x20]);
        assert_eq!(rd(&mut k, 0), 0x47);
    }

    #[test]
    fn keyboard_reset_acks_then_passes_self_test() {
        let (mut k, _, _) = kbc();
        k.write(0, &[0xff]);
        assert_eq!(rd(&mut k, 0), ACK);
        assert_eq!(rd(&mut k, 0), 0xaa);
    }

    #[test]
    fn scancodes_arrive_in_order_on_irq1() {
        let (mut k, chip, _) = kbc();
        k.put_scancodes(&[0x1e, 0x9e]);
        assert!(chip.level(1));
        assert_eq!(rd(&mut k, 0), 0x1e);
        assert_eq!(rd(&mut k, 0), 0x9e);
        assert!(!chip.level(1));
    }

    #[test]
    fn mouse_reports_packets_on_irq12_once_enabled() {
        let (mut k, chip, _) = kbc();
        k.write(4, &[0xd4]);
        k.write(0, &[0xf4]);
        assert_eq!(rd(&mut k, 4) & STAT_MOUSE_OBF, STAT_MOUSE_OBF);
        assert_eq!(rd(&mut k, 0), ACK);
        k.mouse_event(5, -3, 1);
        assert!(chip.level(12));
        assert_eq!(
            [rd(&mut k, 0), rd(&mut k, 0), rd(&mut k, 0)],
            [0x29, 5, 0xfd]
        );
        assert!(!chip.level(12));
    }

    #[test]
    fn mouse_identify_answers_id_zero() {
        let (mut k, _, _) = kbc();
        k.write(4, &[0xd4]);
        k.write(0, &[0xf2]);
        assert_eq!([rd(&mut k, 0), rd(&mut k, 0)], [ACK, 0x00]);
    }
}
