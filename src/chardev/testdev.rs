//! `testdev`: the exit device of kvm-unit-tests. The guest writes
//! `<number> q` and the emulator exits with status `(number << 1) | 1`.

use std::io;

use super::{CharBackend, CharEvent, FdRegistry};
use crate::main_loop::Token;

const BUF_SIZE: usize = 32;

#[derive(Default)]
pub struct TestdevChardev {
    buf: Vec<u8>,
    exit: Option<i32>,
}

impl TestdevChardev {
    /// Interprets one packet at the start of the buffer: the bytes eaten,
    /// or 0 when it is still incomplete.
    fn eat_packet(&mut self) -> usize {
        let b = &self.buf;
        let mut i = 0;
        let mut next = || {
            let c = b.get(i).copied();
            i += 1;
            c
        };
        let mut c = match next() {
            Some(c) => c,
            None => return 0,
        };
        while c.is_ascii_whitespace() {
            c = match next() {
                Some(c) => c,
                None => return 0,
            };
        }
        let mut arg: i32 = 0;
        while c.is_ascii_digit() {
            arg = arg.wrapping_mul(10).wrapping_add(i32::from(c - b'0'));
            c = match next() {
                Some(c) => c,
                None => return 0,
            };
        }
        while c.is_ascii_whitespace() {
            c = match next() {
                Some(c) => c,
                None => return 0,
            };
        }
        if c == b'q' && self.exit.is_none() {
            self.exit = Some((arg << 1) | 1);
        }
        i
    }
}

impl CharBackend for TestdevChardev {
    fn attach(&mut self, _fds: &mut FdRegistry) -> io::Result<()> {
        Ok(())
    }
    fn ready(&mut self, _: &mut FdRegistry, _: Token, _: bool, _: bool) -> Vec<CharEvent> {
        Vec::new()
    }
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for chunk in data.chunks(BUF_SIZE) {
            self.buf.extend_from_slice(chunk);
            loop {
                let eaten = self.eat_packet();
                if eaten == 0 {
                    break;
                }
                self.buf.drain(..eaten.min(self.buf.len()));
            }
            if self.buf.len() >= BUF_SIZE {
                // A packet longer than the buffer never completes (QEMU
                // would spin); forget it.
                self.buf.clear();
            }
        }
        Ok(data.len())
    }
    fn is_open(&self) -> bool {
        true
    }
    fn close(&mut self, _fds: &mut FdRegistry) {}
    fn filename(&self) -> String {
        "testdev".to_string()
    }
    fn exit_request(&mut self) -> Option<i32> {
        self.exit.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_q_requests_exit_status() {
        let mut d = TestdevChardev::default();
        d.write(b"junk ").unwrap();
        assert_eq!(d.exit_request(), None);
        d.write(b" 3").unwrap();
        d.write(b" q").unwrap();
        assert_eq!(d.exit_request(), Some(7));
    }

    #[test]
    fn endless_digits_do_not_grow_or_hang() {
        let mut d = TestdevChardev::default();
        d.write(&[b'1'; 1000]).unwrap();
        assert!(d.buf.len() < BUF_SIZE);
    }
}
