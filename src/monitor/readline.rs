//! Line editing for the human monitor, enough for terminals and for
//! scripts: printable input is echoed, backspace, cursor keys, Ctrl-A/E/K/U,
//! history with up/down. Output is what QEMU's readline draws.

const MAX_LINE: usize = 4096;
const HISTORY: usize = 64;

#[derive(Default)]
pub struct Readline {
    line: Vec<u8>,
    cursor: usize,
    history: Vec<String>,
    hist_pos: Option<usize>,
    esc: EscState,
}

#[derive(Default, PartialEq, Eq)]
enum EscState {
    #[default]
    Normal,
    Esc,
    Csi(Vec<u8>),
}

/// What feeding a byte produced.
pub enum Edit {
    /// Bytes to echo back.
    Echo(Vec<u8>),
    /// A complete line was entered.
    Line(String),
    None,
}

impl Readline {
    fn redraw(&self, prompt: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"\r\x1b[K");
        out.extend_from_slice(prompt.as_bytes());
        out.extend_from_slice(&self.line);
        for _ in self.cursor..self.line.len() {
            out.extend_from_slice(b"\x1b[D");
        }
        out
    }

    fn set_line(&mut self, s: &str) {
        self.line = s.as_bytes().to_vec();
        self.cursor = self.line.len();
    }

    pub fn feed(&mut self, b: u8, prompt: &str) -> Edit {
        match std::mem::take(&mut self.esc) {
            EscState::Esc => {
                if b == b'[' || b == b'O' {
                    self.esc = EscState::Csi(Vec::new());
                }
                return Edit::None;
            }
            EscState::Csi(mut params) => {
                if b.is_ascii_digit() || b == b';' {
                    if params.len() < 16 {
                        params.push(b);
                    }
                    self.esc = EscState::Csi(params);
                    return Edit::None;
                }
                return self.csi(b, &params, prompt);
            }
            EscState::Normal => {}
        }
        match b {
            b'\r' | b'\n' => {
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                self.cursor = 0;
                self.hist_pos = None;
                if !line.trim().is_empty() && self.history.last() != Some(&line) {
                    if self.history.len() == HISTORY {
                        self.history.remove(0);
                    }
                    self.history.push(line.clone());
                }
                Edit::Line(line)
            }
            0x1b => {
                self.esc = EscState::Esc;
                Edit::None
            }
            0x7f | 0x08 => {
                if self.cursor == 0 {
                    return Edit::None;
                }
                self.cursor -= 1;
                self.line.remove(self.cursor);
                Edit::Echo(self.redraw(prompt))
            }
            0x01 => {
                self.cursor = 0;
                Edit::Echo(self.redraw(prompt))
            }
            0x05 => {
                self.cursor = self.line.len();
                Edit::Echo(self.redraw(prompt))
            }
            0x0b => {
                self.line.truncate(self.cursor);
                Edit::Echo(self.redraw(prompt))
            }
            0x15 => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
                Edit::Echo(self.redraw(prompt))
            }
            b if b >= 0x20 => {
                if self.line.len() >= MAX_LINE {
                    return Edit::None;
                }
                self.line.insert(self.cursor, b);
                self.cursor += 1;
                if self.cursor == self.line.len() {
                    Edit::Echo(vec![b])
                } else {
                    Edit::Echo(self.redraw(prompt))
                }
            }
            _ => Edit::None,
        }
    }

    fn csi(&mut self, b: u8, _params: &[u8], prompt: &str) -> Edit {
        match b {
            b'D' if self.cursor > 0 => {
                self.cursor -= 1;
                Edit::Echo(b"\x1b[D".to_vec())
            }
            b'C' if self.cursor < self.line.len() => {
                self.cursor += 1;
                Edit::Echo(b"\x1b[C".to_vec())
            }
            b'A' => {
                if self.history.is_empty() {
                    return Edit::None;
                }
                let pos = match self.hist_pos {
                    None => self.history.len() - 1,
                    Some(0) => 0,
                    Some(p) => p - 1,
                };
                self.hist_pos = Some(pos);
                let h = self.history[pos].clone();
                self.set_line(&h);
                Edit::Echo(self.redraw(prompt))
            }
            b'B' => {
                match self.hist_pos {
                    Some(p) if p + 1 < self.history.len() => {
                        self.hist_pos = Some(p + 1);
                        let h = self.history[p + 1].clone();
                        self.set_line(&h);
                    }
                    _ => {
                        self.hist_pos = None;
                        self.set_line("");
                    }
                }
                Edit::Echo(self.redraw(prompt))
            }
            b'H' => {
                self.cursor = 0;
                Edit::Echo(self.redraw(prompt))
            }
            b'F' => {
                self.cursor = self.line.len();
                Edit::Echo(self.redraw(prompt))
            }
            _ => Edit::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(r: &mut Readline, s: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in s {
            if let Edit::Line(l) = r.feed(b, "(qemu) ") {
                lines.push(l);
            }
        }
        lines
    }

    #[test]
    fn lines_with_backspace_and_history() {
        let mut r = Readline::default();
        assert_eq!(feed_all(&mut r, b"info statuz\x7fs\r"), vec!["info status"]);
        assert_eq!(feed_all(&mut r, b"\x1b[A\n"), vec!["info status"]);
    }

    #[test]
    fn cursor_editing_inserts_in_the_middle() {
        let mut r = Readline::default();
        assert_eq!(feed_all(&mut r, b"stp\x1b[Do\r"), vec!["stop"]);
    }

    #[test]
    fn overlong_line_is_capped() {
        let mut r = Readline::default();
        let long = vec![b'a'; 10000];
        feed_all(&mut r, &long);
        let lines = feed_all(&mut r, b"\r");
        assert_eq!(lines[0].len(), MAX_LINE);
    }
}
