//! QEMU's key names (the QAPI `QKeyCode` enum, in its order) and the PC
//! "key numbers" they stand for: set-1 make codes, with bit 7 marking the
//! keys that need an 0xE0 prefix. Names without a PC key map to 0, as in
//! the reference.

/// `(name, number)` for every `QKeyCode`, in the enum's order.
pub static QCODES: &[(&str, i32)] = &[
    ("unmapped", 0),
    ("shift", 0x2a),
    ("shift_r", 0x36),
    ("alt", 0x38),
    ("alt_r", 0xb8),
    ("altgr", 0x64),
    ("altgr_r", 0xe4),
    ("ctrl", 0x1d),
    ("ctrl_r", 0x9d),
    ("menu", 0xdd),
    ("esc", 0x01),
    ("1", 0x02),
    ("2", 0x03),
    ("3", 0x04),
    ("4", 0x05),
    ("5", 0x06),
    ("6", 0x07),
    ("7", 0x08),
    ("8", 0x09),
    ("9", 0x0a),
    ("0", 0x0b),
    ("minus", 0x0c),
    ("equal", 0x0d),
    ("backspace", 0x0e),
    ("tab", 0x0f),
    ("q", 0x10),
    ("w", 0x11),
    ("e", 0x12),
    ("r", 0x13),
    ("t", 0x14),
    ("y", 0x15),
    ("u", 0x16),
    ("i", 0x17),
    ("o", 0x18),
    ("p", 0x19),
    ("bracket_left", 0x1a),
    ("bracket_right", 0x1b),
    ("ret", 0x1c),
    ("a", 0x1e),
    ("s", 0x1f),
    ("d", 0x20),
    ("f", 0x21),
    ("g", 0x22),
    ("h", 0x23),
    ("j", 0x24),
    ("k", 0x25),
    ("l", 0x26),
    ("semicolon", 0x27),
    ("apostrophe", 0x28),
    ("grave_accent", 0x29),
    ("backslash", 0x2b),
    ("z", 0x2c),
    ("x", 0x2d),
    ("c", 0x2e),
    ("v", 0x2f),
    ("b", 0x30),
    ("n", 0x31),
    ("m", 0x32),
    ("comma", 0x33),
    ("dot", 0x34),
    ("slash", 0x35),
    ("asterisk", 0x37),
    ("spc", 0x39),
    ("caps_lock", 0x3a),
    ("f1", 0x3b),
    ("f2", 0x3c),
    ("f3", 0x3d),
    ("f4", 0x3e),
    ("f5", 0x3f),
    ("f6", 0x40),
    ("f7", 0x41),
    ("f8", 0x42),
    ("f9", 0x43),
    ("f10", 0x44),
    ("num_lock", 0x45),
    ("scroll_lock", 0x46),
    ("kp_divide", 0xb5),
    ("kp_multiply", 0x37),
    ("kp_subtract", 0x4a),
    ("kp_add", 0x4e),
    ("kp_enter", 0x9c),
    ("kp_decimal", 0x53),
    ("sysrq", 0x54),
    ("kp_0", 0x52),
    ("kp_1", 0x4f),
    ("kp_2", 0x50),
    ("kp_3", 0x51),
    ("kp_4", 0x4b),
    ("kp_5", 0x4c),
    ("kp_6", 0x4d),
    ("kp_7", 0x47),
    ("kp_8", 0x48),
    ("kp_9", 0x49),
    ("less", 0x56),
    ("f11", 0x57),
    ("f12", 0x58),
    ("print", 0xb7),
    ("home", 0xc7),
    ("pgup", 0xc9),
    ("pgdn", 0xd1),
    ("end", 0xcf),
    ("left", 0xcb),
    ("up", 0xc8),
    ("down", 0xd0),
    ("right", 0xcd),
    ("insert", 0xd2),
    ("delete", 0xd3),
    ("stop", 0),
    ("again", 0),
    ("props", 0),
    ("undo", 0),
    ("front", 0),
    ("copy", 0),
    ("open", 0),
    ("paste", 0),
    ("find", 0),
    ("cut", 0),
    ("lf", 0),
    ("help", 0),
    ("meta_l", 0xdb),
    ("meta_r", 0xdc),
    ("compose", 0),
    ("pause", 0),
    ("ro", 0x73),
    ("kp_comma", 0x7e),
    ("kp_equals", 0),
    ("power", 0),
];

/// Marks a key reached through an 0xE0 prefix.
const GREY: i32 = 0x80;
const PREFIX_E0: i32 = 0xe0;
const PREFIX_E1: i32 = 0xe1;
/// Set on a set-1 code when the key goes up.
const BREAK: i32 = 0x80;

/// A key as QMP names it: a raw key number or a `QKeyCode` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    Number(i64),
    Qcode(&'static str),
}

impl KeyValue {
    /// Looks a key name up; None for a name that is not a `QKeyCode`.
    pub fn qcode(name: &str) -> Option<KeyValue> {
        QCODES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| KeyValue::Qcode(n))
    }

    /// The key's number (set-1 make code, bit 7 for an 0xE0 key).
    pub fn number(&self) -> i32 {
        match self {
            // The reference keeps the number in a C int.
            KeyValue::Number(n) => *n as i32,
            KeyValue::Qcode(name) => QCODES
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v),
        }
    }
}

/// The set-1 byte sequence a key press or release stands for, before the
/// keyboard re-encodes it for its scancode set. Pause is the one key with
/// its own E1 sequence; its "number" is never used for it.
pub fn key_codes(key: &KeyValue, down: bool) -> Vec<i32> {
    let brk = if down { 0 } else { BREAK };
    if *key == KeyValue::Qcode("pause") {
        return vec![PREFIX_E1, 0x1d | brk, 0x45 | brk];
    }
    let mut code = key.number();
    let mut out = Vec::with_capacity(2);
    if code & GREY != 0 {
        out.push(PREFIX_E0);
        code &= !GREY;
    }
    out.push(code | brk);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> KeyValue {
        KeyValue::qcode(name).unwrap()
    }

    #[test]
    fn table_has_every_qkeycode_once() {
        assert_eq!(QCODES.len(), 127);
        for (i, (a, _)) in QCODES.iter().enumerate() {
            assert!(QCODES[i + 1..].iter().all(|(b, _)| a != b), "{a} twice");
        }
    }

    #[test]
    fn plain_key_press_and_release_are_make_and_break() {
        assert_eq!(key_codes(&q("a"), true), vec![0x1e]);
        assert_eq!(key_codes(&q("a"), false), vec![0x9e]);
    }

    #[test]
    fn grey_keys_get_an_e0_prefix() {
        assert_eq!(key_codes(&q("delete"), true), vec![0xe0, 0x53]);
        assert_eq!(key_codes(&q("ctrl_r"), false), vec![0xe0, 0x9d]);
        assert_eq!(key_codes(&q("print"), true), vec![0xe0, 0x37]);
        assert_eq!(key_codes(&q("meta_l"), true), vec![0xe0, 0x5b]);
    }

    #[test]
    fn pause_is_an_e1_sequence_both_ways() {
        assert_eq!(key_codes(&q("pause"), true), vec![0xe1, 0x1d, 0x45]);
        assert_eq!(key_codes(&q("pause"), false), vec![0xe1, 0x9d, 0xc5]);
    }

    #[test]
    fn numbers_are_taken_as_they_are() {
        assert_eq!(key_codes(&KeyValue::Number(0x1d), true), vec![0x1d]);
        assert_eq!(key_codes(&KeyValue::Number(0x9d), true), vec![0xe0, 0x1d]);
    }

    #[test]
    fn unknown_names_are_refused_and_unmapped_ones_are_zero() {
        assert_eq!(KeyValue::qcode("xyz"), None);
        assert_eq!(q("power").number(), 0);
    }
}
