//! i8042 keyboard controller at 0x60 (data) / 0x64 (status, command), with a PS/2
//! keyboard (IRQ 1) and mouse (IRQ 12). Pulsing the reset line (command 0xFE, or an
//! output-port write with bit 0 clear) queues a reset request. Host input
//! arrives through [`I8042::key_event`] and [`I8042::mouse_input`] /
//! [`I8042::mouse_sync`]; the byte encodings live in [`super::ps2`].

use std::collections::VecDeque;

use super::ps2::keyboard;
use super::ps2::keymap::{self, KeyValue};
use super::ps2::mouse::{MouseInput, MouseState};

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
const RESEND: u8 = 0xfe;
const QUEUE_LEN: usize = 256;
/// Bytes a PS/2 device holds before it drops new ones (the reference's
/// 16-entry ring keeps one slot free); the byte in the output buffer counts.
pub const PS2_QUEUE_BYTES: usize = 15;

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
    /// The last keyboard-side byte the guest read: an empty output buffer
    /// reads as it again, as on the reference's PS/2 queue (EMM386 relies
    /// on that).
    pub last_kbd: u8,
    /// Controller replies (self test, command byte...), delivered before device data.
    pub ctrl_queue: VecDeque<u8>,
    pub kbd_queue: VecDeque<u8>,
    pub mouse_queue: VecDeque<u8>,
    /// Keyboard command waiting for its argument (0xED, 0xF3, 0xF0).
    pub kbd_arg_cmd: Option<u8>,
    /// Scanning enabled (0xF4/0xF5). Tracked only: like the reference's
    /// keyboard, host keys are queued either way.
    pub kbd_enabled: bool,
    pub scancode_set: u8,
    pub kbd_leds: u8,
    pub mouse: MouseState,
}

impl Default for I8042State {
    fn default() -> Self {
        I8042State {
            status: STAT_CMD | STAT_UNLOCKED,
            mode: MODE_KBD_INT | MODE_MOUSE_INT,
            outport: 0x01 | 0x02 | 0xcc, // reset line high, A20 on, unused bits set
            pending_cmd: None,
            out: None,
            last_kbd: 0,
            ctrl_queue: VecDeque::new(),
            kbd_queue: VecDeque::new(),
            mouse_queue: VecDeque::new(),
            kbd_arg_cmd: None,
            kbd_enabled: true,
            scancode_set: 2,
            kbd_leds: 0,
            mouse: MouseState::default(),
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

    /// Queues raw bytes from the keyboard, as the guest will read them.
    pub fn put_scancodes(&mut self, codes: &[u8]) {
        for &c in codes {
            self.kbd_queue(c);
        }
        self.update();
    }

    /// A key going down or up: queued as the keyboard sends it in its
    /// current scancode set, or in set 1 when the controller translates.
    pub fn key_event(&mut self, key: &KeyValue, down: bool) {
        let translate = self.translating();
        for code in keymap::key_codes(key, down) {
            for b in keyboard::encode(code, self.state.scancode_set, translate) {
                self.kbd_queue(b);
            }
        }
        self.update();
    }

    /// Whether the command byte asks for set-2 to set-1 translation.
    pub fn translating(&self) -> bool {
        self.state.mode & MODE_XLATE != 0
    }

    /// Host mouse input, reported at the next [`I8042::mouse_sync`].
    pub fn mouse_input(&mut self, ev: MouseInput) {
        self.state.mouse.input(ev);
    }

    /// Sends the movement and buttons gathered since the last sync as
    /// packets (stream mode, reporting enabled).
    pub fn mouse_sync(&mut self) {
        let used =
            self.state.mouse_queue.len() + usize::from(matches!(self.state.out, Some((_, true))));
        let room = PS2_QUEUE_BYTES.saturating_sub(used);
        for b in self.state.mouse.sync(room) {
            self.mouse_queue(b);
        }
        self.update();
    }

    /// Queues a byte from the keyboard side (controller replies share the
    /// keyboard's queue in the reference, so they count against it).
    fn kbd_queue(&mut self, b: u8) {
        let s = &mut self.state;
        let used =
            s.kbd_queue.len() + s.ctrl_queue.len() + usize::from(matches!(s.out, Some((_, false))));
        if used < PS2_QUEUE_BYTES {
            s.kbd_queue.push_back(b);
        }
    }

    fn mouse_queue(&mut self, b: u8) {
        let s = &mut self.state;
        let used = s.mouse_queue.len() + usize::from(matches!(s.out, Some((_, true))));
        if used < PS2_QUEUE_BYTES {
            s.mouse_queue.push_back(b);
        }
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
            0xd3 => self.mouse_queue(v),
            0xd4 => self.mouse_write(v),
            _ => {}
        }
    }

    fn kbd_write(&mut self, v: u8) {
        if let Some(cmd) = self.state.kbd_arg_cmd.take() {
            match cmd {
                0xf0 if v == 0 => {
                    // The current set's number goes out as a key code would,
                    // so translation applies to it (0x43/0x41/0x3f in set 1).
                    let code = match self.state.scancode_set {
                        1 => 0x43,
                        2 => 0x41,
                        _ => 0x3f,
                    };
                    let translate = self.translating();
                    for b in keyboard::encode(code, self.state.scancode_set, translate) {
                        self.kbd_queue(b);
                    }
                }
                0xf0 => {
                    if (1..=3).contains(&v) {
                        self.state.scancode_set = v;
                    }
                    self.kbd_queue(ACK);
                }
                0xed => {
                    self.state.kbd_leds = v;
                    self.kbd_queue(ACK);
                }
                _ => self.kbd_queue(ACK),
            }
            return;
        }
        match v {
            0x05 => self.kbd_queue(RESEND),
            0xed | 0xf3 | 0xf0 => {
                self.state.kbd_arg_cmd = Some(v);
                self.kbd_queue(ACK);
            }
            0xee => self.kbd_queue(0xee),
            0xf2 => {
                let second = if self.translating() { 0x41 } else { 0x83 };
                for b in [ACK, 0xab, second] {
                    self.kbd_queue(b);
                }
            }
            0xf4 => {
                self.state.kbd_enabled = true;
                self.kbd_queue(ACK);
            }
            0xf5 | 0xf6 => {
                self.reset_keyboard();
                self.state.kbd_enabled = v == 0xf6;
                self.kbd_queue(ACK);
            }
            0xff => {
                self.reset_keyboard();
                self.kbd_queue(ACK);
                self.kbd_queue(0xaa);
            }
            _ => self.kbd_queue(ACK),
        }
    }

    fn reset_keyboard(&mut self) {
        self.state.kbd_enabled = true;
        self.state.scancode_set = 2;
        self.state.kbd_leds = 0;
    }

    fn mouse_write(&mut self, v: u8) {
        for b in self.state.mouse.write(v) {
            self.mouse_queue(b);
        }
    }
}

fn push(q: &mut VecDeque<u8>, b: u8) {
    if q.len() < QUEUE_LEN {
        q.push_back(b);
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let v = if offset == 0 {
            let v = match self.state.out.take() {
                Some((b, false)) => {
                    self.state.last_kbd = b;
                    b
                }
                Some((b, true)) => b,
                None => self.state.last_kbd,
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
    fn an_empty_output_buffer_reads_as_the_last_keyboard_byte() {
        let (mut k, _, _) = kbc();
        assert_eq!(rd(&mut k, 0), 0);
        k.put_scancodes(&[0x1c]);
        assert_eq!(rd(&mut k, 0), 0x1c);
        assert_eq!(rd(&mut k, 4) & 1, 0, "output buffer empty");
        assert_eq!(rd(&mut k, 0), 0x1c);
        k.reset();
        assert_eq!(rd(&mut k, 0), 0);
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
        k.mouse_input(MouseInput::MoveX(5));
        k.mouse_input(MouseInput::MoveY(3));
        k.mouse_input(MouseInput::Button {
            bits: 1,
            down: true,
        });
        k.mouse_sync();
        assert!(chip.level(12));
        assert_eq!(
            [rd(&mut k, 0), rd(&mut k, 0), rd(&mut k, 0)],
            [0x29, 5, 0xfd]
        );
        assert!(!chip.level(12));
    }

    #[test]
    fn mouse_sends_nothing_before_f4() {
        let (mut k, chip, _) = kbc();
        k.mouse_input(MouseInput::MoveX(5));
        k.mouse_sync();
        assert!(!chip.level(12));
        assert_eq!(rd(&mut k, 4) & STAT_OBF, 0);
    }

    fn drain(k: &mut I8042) -> Vec<u8> {
        let mut v = Vec::new();
        while rd(k, 4) & STAT_OBF != 0 {
            v.push(rd(k, 0));
        }
        v
    }

    #[test]
    fn keys_arrive_in_set_2_by_default() {
        let (mut k, _, _) = kbc();
        let del = KeyValue::qcode("delete").unwrap();
        k.key_event(&del, true);
        k.key_event(&del, false);
        assert_eq!(drain(&mut k), vec![0xe0, 0x71, 0xe0, 0xf0, 0x71]);
    }

    #[test]
    fn keys_arrive_in_set_1_when_the_controller_translates() {
        let (mut k, _, _) = kbc();
        k.write(4, &[0x60]);
        k.write(0, &[0x43]);
        let del = KeyValue::qcode("delete").unwrap();
        k.key_event(&del, true);
        k.key_event(&del, false);
        assert_eq!(drain(&mut k), vec![0xe0, 0x53, 0xe0, 0xd3]);
    }

    #[test]
    fn scancode_set_query_answers_like_a_key() {
        let (mut k, _, _) = kbc();
        k.write(0, &[0xf0]);
        k.write(0, &[0x00]);
        assert_eq!(drain(&mut k), vec![ACK, 0x02]);
        k.write(0, &[0xf0]);
        k.write(0, &[0x03]);
        k.write(0, &[0xf0]);
        k.write(0, &[0x00]);
        // Set 3 looks 0x3f up in its own table, as the reference does.
        assert_eq!(drain(&mut k), vec![ACK, ACK, ACK, 0x27]);
    }

    #[test]
    fn keyboard_queue_drops_bytes_past_fifteen() {
        let (mut k, _, _) = kbc();
        let a = KeyValue::qcode("a").unwrap();
        for _ in 0..10 {
            k.key_event(&a, false);
        }
        assert_eq!(drain(&mut k).len(), PS2_QUEUE_BYTES);
    }

    #[test]
    fn mouse_identify_answers_id_zero() {
        let (mut k, _, _) = kbc();
        k.write(4, &[0xd4]);
        k.write(0, &[0xf2]);
        assert_eq!([rd(&mut k, 0), rd(&mut k, 0)], [ACK, 0x00]);
    }
}
