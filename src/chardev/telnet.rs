//! Telnet framing of `socket,server,telnet`: the options QEMU announces
//! to each new client (character mode, no local echo, binary) and the
//! filter that removes telnet commands from input.

/// IAC WILL ECHO, IAC WILL SUPPRESS-GO-AHEAD, IAC WILL BINARY, IAC DO
/// BINARY: sent before the connection counts as open.
pub const NEGOTIATION: [u8; 12] = [
    0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03, 0xff, 0xfb, 0x00, 0xff, 0xfd, 0x00,
];

const IAC: u8 = 255;
const IAC_BREAK: u8 = 243;

/// QEMU's tcp_chr_process_IAC_bytes state: 1 between commands, 2 after
/// IAC, 3 inside a three-byte command. It lives as long as the device,
/// so a command split across reads (or connections) is still removed.
#[derive(Debug)]
pub struct IacFilter {
    state: u8,
}

impl Default for IacFilter {
    fn default() -> Self {
        IacFilter { state: 1 }
    }
}

impl IacFilter {
    /// Removes telnet commands in place; `IAC IAC` stands for one 0xff
    /// byte. Returns whether an IAC BREAK was seen.
    pub fn filter(&mut self, buf: &mut Vec<u8>) -> bool {
        let mut brk = false;
        let mut j = 0;
        for i in 0..buf.len() {
            let c = buf[i];
            if self.state > 1 {
                if c == IAC && self.state == 2 {
                    buf[j] = c;
                    j += 1;
                    self.state = 1;
                } else {
                    if c == IAC_BREAK && self.state == 2 {
                        brk = true;
                        self.state += 1;
                    }
                    self.state += 1;
                }
                if self.state >= 4 {
                    self.state = 1;
                }
            } else if c == IAC {
                self.state = 2;
            } else {
                buf[j] = c;
                j += 1;
            }
        }
        buf.truncate(j);
        brk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &mut IacFilter, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        f.filter(&mut v);
        v
    }

    #[test]
    fn three_byte_commands_are_removed() {
        let mut f = IacFilter::default();
        assert_eq!(run(&mut f, b"a\xff\xfd\x01b\xff\xfb\x03c"), b"abc");
    }

    #[test]
    fn double_iac_is_a_literal_ff() {
        let mut f = IacFilter::default();
        assert_eq!(run(&mut f, b"x\xff\xffy"), b"x\xffy");
    }

    #[test]
    fn command_split_across_reads() {
        let mut f = IacFilter::default();
        assert_eq!(run(&mut f, b"a\xff"), b"a");
        assert_eq!(run(&mut f, b"\xfd"), b"");
        assert_eq!(run(&mut f, b"\x18b"), b"b");
    }

    #[test]
    fn break_is_two_bytes_and_reported() {
        let mut f = IacFilter::default();
        let mut v = b"a\xff\xf3b".to_vec();
        assert!(f.filter(&mut v));
        assert_eq!(v, b"ab");
    }
}
