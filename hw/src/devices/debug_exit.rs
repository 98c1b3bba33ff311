//! `isa-debug-exit`: a write makes the process exit with status `(value << 1) | 1`.

use crate::bus::BusDevice;
use crate::events::{EventQueue, MachineEvent};

pub const DEFAULT_IOBASE: u16 = 0x501;
pub const DEFAULT_IOSIZE: u16 = 2;

pub struct DebugExit {
    events: EventQueue,
}

impl DebugExit {
    pub fn new(events: EventQueue) -> DebugExit {
        DebugExit { events }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let mut v = [0u8; 8];
        let n = data.len().min(8);
        v[..n].copy_from_slice(&data[..n]);
        let value = u64::from_le_bytes(v);
        let code = ((value << 1) | 1) as i32;
        self.events.push(MachineEvent::DebugExit { code });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_queues_exit_code_value_shifted_or_one() {
        let q = EventQueue::new();
        let mut d = DebugExit::new(q.clone());
        d.write(0, &[0x21]);
        d.write(0, &[0x00, 0x01]);
        assert_eq!(
            q.drain(),
            vec![
                MachineEvent::DebugExit { code: 0x43 },
                MachineEvent::DebugExit { code: 0x201 }
            ]
        );
    }
}
