//! HMP input commands: sendkey, mouse_move, mouse_button, mouse_set and
//! `info mice`, with the reference's parsing and messages.

use serde_json::Value;

use hw::devices::ps2::keymap::KeyValue;
use hw::devices::ps2::mouse::{MouseInput, BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT};
use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::input::{self as qinput, KEYBOARD_INDEX, KEYBOARD_NAME, MOUSE_INDEX};
use crate::qmp_cmds::{self, CmdCtx};

/// Parses `ctrl-alt-delete` / `0x1d-0x38` into keys; Err holds the name
/// that is not a key.
pub fn parse_keys(spec: &str) -> Result<Vec<KeyValue>, String> {
    spec.split('-')
        .map(|name| {
            // A lone "<" is the old spelling of "less".
            let name = if name == "<" { "less" } else { name };
            if let Some(hex) = name.strip_prefix("0x") {
                // The whole name must be the number, as strtoul would read it.
                return u64::from_str_radix(hex, 16)
                    .ok()
                    .filter(|_| !hex.starts_with(['+', '-']))
                    .map(|v| KeyValue::Number(i64::from(v as i32)))
                    .ok_or_else(|| name.to_string());
            }
            KeyValue::qcode(name).ok_or_else(|| name.to_string())
        })
        .collect()
}

pub fn sendkey(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let spec = a.get("keys").and_then(Value::as_str).unwrap_or("");
    match parse_keys(spec) {
        Ok(keys) => {
            let hold = a.get("hold-time").and_then(Value::as_i64);
            qinput::send_keys(emu, &keys, hold);
        }
        Err(bad) => out.push_str(&format!("invalid parameter: {bad}\n")),
    }
    Ok(())
}

/// C's strtol(s, NULL, 0) narrowed to int: leading blanks, a sign, 0x for
/// hex, 0 for octal; stops at the first non-digit; no digits gives 0.
pub fn c_strtol(s: &str) -> i32 {
    let s = s.trim_start();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(h) = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|h| h.starts_with(|c: char| c.is_ascii_hexdigit()))
    {
        (16, h)
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let mut v: i64 = 0;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else { break };
        v = v
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    let v = if neg { v.saturating_neg() } else { v };
    v as i32
}

pub fn mouse_move(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let num = |k: &str| a.get(k).and_then(Value::as_str).map(c_strtol);
    qinput::mouse_event(emu, Some(MouseInput::MoveX(num("dx_str").unwrap_or(0))));
    qinput::mouse_event(emu, Some(MouseInput::MoveY(num("dy_str").unwrap_or(0))));
    if let Some(dz) = num("dz_str").filter(|&dz| dz != 0) {
        let wheel = if dz > 0 {
            MouseInput::WheelUp
        } else {
            MouseInput::WheelDown
        };
        qinput::mouse_event(emu, Some(wheel));
        qinput::sync(emu);
        // The release has no PS/2 bit; it still counts as an event.
        qinput::mouse_event(emu, None);
    }
    qinput::sync(emu);
    Ok(())
}

pub fn mouse_button(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let state = a.get("button_state").and_then(Value::as_i64).unwrap_or(0);
    let old = emu.input.hmp_buttons;
    if old == state {
        return Ok(());
    }
    // The state uses the PS/2 packet's bits (1 left, 2 right, 4 middle,
    // whatever the help line says); changes go out left, middle, right.
    for (hmp_bit, bits) in [(1, BUTTON_LEFT), (4, BUTTON_MIDDLE), (2, BUTTON_RIGHT)] {
        if old & hmp_bit != state & hmp_bit {
            let down = state & hmp_bit != 0;
            qinput::mouse_event(emu, Some(MouseInput::Button { bits, down }));
        }
    }
    qinput::sync(emu);
    emu.input.hmp_buttons = state;
    Ok(())
}

pub fn mouse_set(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let index = a.get("index").and_then(Value::as_i64).unwrap_or(0) as i32;
    let pc = emu.machine.pc().is_some();
    if pc && i64::from(index) == KEYBOARD_INDEX {
        out.push_str(&format!("Input device '{KEYBOARD_NAME}' is not a mouse\n"));
    } else if !(pc && i64::from(index) == MOUSE_INDEX) {
        out.push_str(&format!("Mouse at index '{index}' not found\n"));
    }
    // The only mouse is already the current one.
    Ok(())
}

pub fn info_mice(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let mice = qmp_cmds::dispatch(emu, ctx, "query-mice", &HmpArgs::new())?;
    let list = mice.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        out.push_str("No mouse devices connected\n");
    }
    for m in list {
        out.push_str(&format!(
            "{} Mouse #{}: {}{}\n",
            if m["current"].as_bool() == Some(true) {
                '*'
            } else {
                ' '
            },
            m["index"].as_i64().unwrap_or(0),
            m["name"].as_str().unwrap_or(""),
            if m["absolute"].as_bool() == Some(true) {
                " (absolute)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_spec_splits_on_dashes() {
        assert_eq!(
            parse_keys("ctrl-alt-delete"),
            Ok(vec![
                KeyValue::Qcode("ctrl"),
                KeyValue::Qcode("alt"),
                KeyValue::Qcode("delete")
            ])
        );
    }

    #[test]
    fn key_spec_takes_hex_numbers_and_old_less() {
        assert_eq!(
            parse_keys("0x1d-<"),
            Ok(vec![KeyValue::Number(0x1d), KeyValue::Qcode("less")])
        );
    }

    #[test]
    fn key_spec_names_the_bad_part() {
        assert_eq!(parse_keys("ctrl-xyz-a"), Err("xyz".to_string()));
        assert_eq!(parse_keys("0x1g"), Err("0x1g".to_string()));
        assert_eq!(parse_keys("ctrl-"), Err(String::new()));
    }

    #[test]
    fn strtol_reads_like_c() {
        assert_eq!(c_strtol("10"), 10);
        assert_eq!(c_strtol("-0x10"), -16);
        assert_eq!(c_strtol("010"), 8);
        assert_eq!(c_strtol("12abc"), 12);
        assert_eq!(c_strtol("abc"), 0);
    }
}
