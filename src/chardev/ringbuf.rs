//! `ringbuf` and `memory`: a power-of-two byte ring that keeps the newest
//! output frontends wrote (older bytes are overwritten), read back with
//! QMP's ringbuf-read. Memory grows with the data actually held, not with
//! the configured size.

use std::collections::VecDeque;
use std::io;

use super::{CharBackend, CharEvent, ChardevError, FdRegistry};
use crate::main_loop::Token;

/// QEMU's default ring size.
pub const DEFAULT_SIZE: u64 = 65536;

pub struct RingBuf {
    size: u64,
    data: VecDeque<u8>,
}

impl RingBuf {
    /// `size` must be a power of two, as QEMU requires.
    pub fn new(size: Option<i64>) -> Result<Self, ChardevError> {
        let size = match size {
            None => DEFAULT_SIZE,
            Some(s) if s > 0 && (s as u64).is_power_of_two() => s as u64,
            Some(_) => {
                return Err(ChardevError::msg(
                    "size of ringbuf chardev must be power of two",
                ))
            }
        };
        Ok(RingBuf {
            size,
            data: VecDeque::new(),
        })
    }

    /// Appends, dropping the oldest bytes beyond the ring's size.
    pub fn write(&mut self, bytes: &[u8]) {
        let cap = usize::try_from(self.size).unwrap_or(usize::MAX);
        let bytes = if bytes.len() > cap {
            &bytes[bytes.len() - cap..]
        } else {
            bytes
        };
        let overflow = (self.data.len() + bytes.len()).saturating_sub(cap);
        self.data.drain(..overflow.min(self.data.len()));
        self.data.extend(bytes);
    }

    /// Takes up to `max` of the oldest bytes.
    pub fn read(&mut self, max: u64) -> Vec<u8> {
        let n = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        self.data.drain(..n).collect()
    }
}

pub struct RingbufChardev {
    kind: &'static str,
    ring: RingBuf,
}

impl RingbufChardev {
    pub fn new(kind: &'static str, size: Option<i64>) -> Result<Self, ChardevError> {
        Ok(RingbufChardev {
            kind,
            ring: RingBuf::new(size)?,
        })
    }
}

impl CharBackend for RingbufChardev {
    fn attach(&mut self, _fds: &mut FdRegistry) -> io::Result<()> {
        Ok(())
    }
    fn ready(&mut self, _: &mut FdRegistry, _: Token, _: bool, _: bool) -> Vec<CharEvent> {
        Vec::new()
    }
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.ring.write(data);
        Ok(data.len())
    }
    fn is_open(&self) -> bool {
        true
    }
    fn close(&mut self, _fds: &mut FdRegistry) {}
    fn filename(&self) -> String {
        self.kind.to_string()
    }
    fn as_ringbuf(&mut self) -> Option<&mut RingBuf> {
        Some(&mut self.ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_must_be_a_power_of_two() {
        assert!(RingBuf::new(Some(4096)).is_ok());
        for bad in [0, -8, 3, 1000] {
            assert_eq!(
                RingBuf::new(Some(bad)).err().unwrap().to_string(),
                "size of ringbuf chardev must be power of two"
            );
        }
    }

    #[test]
    fn overflow_keeps_the_newest_bytes() {
        let mut r = RingBuf::new(Some(4)).unwrap();
        r.write(b"abc");
        r.write(b"def");
        assert_eq!(r.read(100), b"cdef");
        r.write(b"0123456789");
        assert_eq!(r.read(2), b"67");
        assert_eq!(r.read(2), b"89");
        assert_eq!(r.read(2), b"");
    }

    #[test]
    fn huge_size_allocates_only_what_is_written() {
        let mut r = RingBuf::new(Some(1 << 40)).unwrap();
        r.write(b"x");
        assert!(r.data.capacity() < 1 << 20);
        assert_eq!(r.read(u64::MAX), b"x");
    }
}
