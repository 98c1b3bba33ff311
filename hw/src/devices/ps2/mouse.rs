//! The PS/2 mouse: its command set (as the i8042 forwards it after 0xD4),
//! the movement it has not reported yet, and the packets it reports it in.
//! A plain PS/2 mouse sends 3-byte packets; after the IntelliMouse
//! sample-rate knocks (200,100,80 / 200,200,80) it sends a 4th byte with
//! the wheel. Movement is reported only while the guest has enabled data
//! reporting (0xF4).

const ACK: u8 = 0xfa;

pub const STATUS_REMOTE: u8 = 0x40;
pub const STATUS_ENABLED: u8 = 0x20;
pub const STATUS_SCALE21: u8 = 0x10;

/// Button bits as the packet's first byte has them.
pub const BUTTON_LEFT: u8 = 0x01;
pub const BUTTON_RIGHT: u8 = 0x02;
pub const BUTTON_MIDDLE: u8 = 0x04;

/// Guest-visible mouse state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MouseState {
    pub status: u8,
    pub resolution: u8,
    pub sample_rate: u8,
    pub wrap: bool,
    /// 0 plain PS/2, 3 IntelliMouse (IMPS/2), 4 IntelliMouse Explorer.
    pub mouse_type: u8,
    pub detect_state: u8,
    /// Command waiting for its argument byte (0xE8, 0xF3).
    pub arg_cmd: Option<u8>,
    /// Movement not yet reported (y positive is up, z positive is down).
    pub dx: i32,
    pub dy: i32,
    pub dz: i32,
    pub buttons: u8,
}

/// A relative or button change from the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MouseInput {
    /// Horizontal move, positive to the right.
    MoveX(i32),
    /// Vertical move, positive downwards (screen coordinates).
    MoveY(i32),
    Button {
        bits: u8,
        down: bool,
    },
    WheelUp,
    WheelDown,
}

impl MouseState {
    pub fn enabled(&self) -> bool {
        self.status & STATUS_ENABLED != 0
    }

    /// Records host input; ignored while reporting is disabled.
    pub fn input(&mut self, ev: MouseInput) {
        if !self.enabled() {
            return;
        }
        match ev {
            MouseInput::MoveX(v) => self.dx = self.dx.saturating_add(v),
            MouseInput::MoveY(v) => self.dy = self.dy.saturating_sub(v),
            MouseInput::Button { bits, down } if down => self.buttons |= bits,
            MouseInput::Button { bits, .. } => self.buttons &= !bits,
            MouseInput::WheelUp => self.dz = self.dz.saturating_sub(1),
            MouseInput::WheelDown => self.dz = self.dz.saturating_add(1),
        }
    }

    /// One packet with as much of the pending movement as fits (±127 per
    /// axis); the rest stays pending.
    pub fn packet(&mut self) -> Vec<u8> {
        let dx = self.dx.clamp(-127, 127);
        let dy = self.dy.clamp(-127, 127);
        let mut dz = self.dz;
        let mut b0 = 0x08 | (self.buttons & 0x07);
        if dx < 0 {
            b0 |= 0x10;
        }
        if dy < 0 {
            b0 |= 0x20;
        }
        let mut p = vec![b0, dx as u8, dy as u8];
        match self.mouse_type {
            3 => {
                dz = dz.clamp(-127, 127);
                p.push(dz as u8);
            }
            4 => {
                dz = dz.clamp(-7, 7);
                p.push(((dz as u8) & 0x0f) | ((self.buttons & 0x18) << 1));
            }
            _ => {}
        }
        self.dx -= dx;
        self.dy -= dy;
        self.dz -= dz;
        p
    }

    /// Packets for the pending movement in stream mode, stopping when
    /// `room` bytes would be exceeded.
    pub fn sync(&mut self, mut room: usize) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.enabled() || self.status & STATUS_REMOTE != 0 {
            return out;
        }
        // Like the reference, start no packet with fewer than 4 bytes of
        // room left.
        while room > 3 {
            let p = self.packet();
            room = room.saturating_sub(p.len());
            out.extend(p);
            if self.dx == 0 && self.dy == 0 && self.dz == 0 {
                break;
            }
        }
        out
    }

    /// A byte from the guest; returns the mouse's reply bytes.
    pub fn write(&mut self, v: u8) -> Vec<u8> {
        if let Some(cmd) = self.arg_cmd.take() {
            if cmd == 0xf3 {
                self.sample_rate = v;
                self.detect_wheel(v);
            } else {
                self.resolution = v;
            }
            return vec![ACK];
        }
        if self.wrap {
            match v {
                0xec => {
                    self.wrap = false;
                    return vec![ACK];
                }
                0xff => {}
                _ => return vec![v],
            }
        }
        match v {
            0xe6 => {
                self.status &= !STATUS_SCALE21;
                vec![ACK]
            }
            0xe7 => {
                self.status |= STATUS_SCALE21;
                vec![ACK]
            }
            0xea => {
                self.status &= !STATUS_REMOTE;
                vec![ACK]
            }
            0xee => {
                self.wrap = true;
                vec![ACK]
            }
            0xf0 => {
                self.status |= STATUS_REMOTE;
                vec![ACK]
            }
            0xf2 => vec![ACK, self.mouse_type],
            0xe8 | 0xf3 => {
                self.arg_cmd = Some(v);
                vec![ACK]
            }
            0xe9 => vec![ACK, self.status, self.resolution, self.sample_rate],
            0xeb => {
                let mut r = vec![ACK];
                r.extend(self.packet());
                r
            }
            0xf4 => {
                self.status |= STATUS_ENABLED;
                vec![ACK]
            }
            0xf5 => {
                self.status &= !STATUS_ENABLED;
                vec![ACK]
            }
            0xf6 => {
                self.set_defaults();
                vec![ACK]
            }
            0xff => {
                self.set_defaults();
                self.mouse_type = 0;
                vec![ACK, 0xaa, self.mouse_type]
            }
            // Unknown commands get no answer, as in the reference.
            _ => Vec::new(),
        }
    }

    fn set_defaults(&mut self) {
        self.sample_rate = 100;
        self.resolution = 2;
        self.status = 0;
    }

    fn detect_wheel(&mut self, rate: u8) {
        self.detect_state = match (self.detect_state, rate) {
            (0, 200) => 1,
            (1, 100) => 2,
            (1, 200) => 3,
            (2, 80) => {
                self.mouse_type = 3;
                0
            }
            (3, 80) => {
                self.mouse_type = 4;
                0
            }
            _ => 0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> MouseState {
        let mut m = MouseState::default();
        assert_eq!(m.write(0xf4), vec![ACK]);
        m
    }

    #[test]
    fn packet_has_sign_bits_and_screen_y_inverted() {
        let mut m = enabled();
        m.input(MouseInput::MoveX(-5));
        m.input(MouseInput::MoveY(3));
        assert_eq!(m.sync(15), vec![0x38, 0xfb, 0xfd]);
    }

    #[test]
    fn buttons_show_in_the_first_byte() {
        let mut m = enabled();
        m.input(MouseInput::Button {
            bits: BUTTON_LEFT | BUTTON_MIDDLE,
            down: true,
        });
        assert_eq!(m.sync(15), vec![0x0d, 0, 0]);
        m.input(MouseInput::Button {
            bits: BUTTON_LEFT,
            down: false,
        });
        assert_eq!(m.sync(15), vec![0x0c, 0, 0]);
    }

    #[test]
    fn big_moves_are_split_into_packets_of_127() {
        let mut m = enabled();
        m.input(MouseInput::MoveX(300));
        assert_eq!(m.sync(15), vec![0x08, 127, 0, 0x08, 127, 0, 0x08, 46, 0]);
    }

    #[test]
    fn split_packets_stop_when_the_queue_is_nearly_full() {
        let mut m = enabled();
        m.input(MouseInput::MoveX(1000));
        assert_eq!(m.sync(8).len(), 6);
        assert_eq!(m.dx, 1000 - 254);
    }

    #[test]
    fn nothing_is_recorded_or_sent_while_disabled() {
        let mut m = MouseState::default();
        m.input(MouseInput::MoveX(5));
        assert_eq!(m.dx, 0);
        assert!(m.sync(15).is_empty());
    }

    #[test]
    fn intellimouse_knock_adds_a_wheel_byte() {
        let mut m = enabled();
        for r in [200, 100, 80] {
            assert_eq!(m.write(0xf3), vec![ACK]);
            assert_eq!(m.write(r), vec![ACK]);
        }
        assert_eq!(m.write(0xf2), vec![ACK, 3]);
        m.input(MouseInput::WheelUp);
        assert_eq!(m.sync(15), vec![0x08, 0, 0, 0xff]);
    }

    #[test]
    fn status_request_reports_scaling_resolution_and_rate() {
        let mut m = enabled();
        m.write(0xe7);
        m.write(0xe8);
        m.write(3);
        m.write(0xf3);
        m.write(40);
        assert_eq!(m.write(0xe9), vec![ACK, 0x30, 3, 40]);
    }

    #[test]
    fn reset_answers_self_test_and_id() {
        let mut m = enabled();
        assert_eq!(m.write(0xff), vec![ACK, 0xaa, 0x00]);
        assert!(!m.enabled());
    }

    #[test]
    fn wrap_mode_echoes_until_reset_wrap() {
        let mut m = MouseState::default();
        m.write(0xee);
        assert_eq!(m.write(0x42), vec![0x42]);
        assert_eq!(m.write(0xec), vec![ACK]);
        assert_eq!(m.write(0xf2), vec![ACK, 0]);
    }
}
