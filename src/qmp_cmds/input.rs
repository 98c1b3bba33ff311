//! Input commands: send-key, input-send-event and query-mice, and the
//! input routing behind them (also used by HMP's sendkey and mouse_*).
//!
//! As in the reference, the pc machine has two input handlers, the PS/2
//! keyboard (index 1) and the PS/2 mouse (index 2), both in the i8042;
//! `-M none` has none. Events reach them only while the VM runs (or is
//! suspended). Key presses from send-key go through a queue with delays on
//! the virtual clock: every key event is followed by `hold-time`
//! milliseconds (10 when absent or 0) before the next one, so under qtest
//! the releases come only once `clock_step` passes the delays.

use std::collections::VecDeque;

use serde_json::{json, Value};

use hw::devices::ps2::keymap::KeyValue;
use hw::devices::ps2::mouse::{MouseInput, BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT};
use qmp::error::{ErrorClass, QmpError};

use super::{arg_i64, arg_str, Args, CmdCtx};
use crate::emulator::Emulator;
use crate::main_loop::ClockType;
use crate::runstate::RunState;

pub const KEYBOARD_NAME: &str = "QEMU PS/2 Keyboard";
pub const MOUSE_NAME: &str = "QEMU PS/2 Mouse";
pub const KEYBOARD_INDEX: i64 = 1;
pub const MOUSE_INDEX: i64 = 2;
/// Delay between queued key events when send-key gives no hold-time.
const DEFAULT_KEY_DELAY_MS: u32 = 10;

/// One step of the delayed key queue.
enum Queued {
    Delay(u32),
    Key(KeyValue, bool),
}

/// Input routing state kept between commands.
#[derive(Default)]
pub struct InputState {
    kbd_queue: VecDeque<Queued>,
    /// Mouse events delivered since the last sync (the mouse sends packets
    /// at a sync only when it had events).
    mouse_events: u32,
    /// HMP mouse_button's last state (1 left, 2 right, 4 middle).
    pub hmp_buttons: i64,
}

/// What kind of input event, for "Input handler not found" errors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Key,
    Btn,
    Rel,
    Abs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Btn => "btn",
            Kind::Rel => "rel",
            Kind::Abs => "abs",
        }
    }
}

/// A parsed InputEvent.
enum Event {
    Key(KeyValue, bool),
    Mouse(MouseInput),
    /// A button without a PS/2 bit (a wheel release): counts as an event.
    MouseNoop,
    Abs,
}

impl Event {
    fn kind(&self) -> Kind {
        match self {
            Event::Key(..) => Kind::Key,
            Event::Mouse(MouseInput::MoveX(_) | MouseInput::MoveY(_)) => Kind::Rel,
            Event::Mouse(_) | Event::MouseNoop => Kind::Btn,
            Event::Abs => Kind::Abs,
        }
    }
}

fn vm_takes_input(emu: &Emulator) -> bool {
    matches!(emu.runstate, RunState::Running | RunState::Suspended)
}

fn has_handler(emu: &Emulator, kind: Kind) -> bool {
    // The pc machine's PS/2 pair is relative; nothing takes abs events.
    emu.machine.pc().is_some() && kind != Kind::Abs
}

fn deliver_key(emu: &mut Emulator, key: &KeyValue, down: bool) {
    if !vm_takes_input(emu) {
        return;
    }
    if let Some(pc) = emu.machine.pc() {
        if let Ok(mut k) = pc.i8042.lock() {
            k.key_event(key, down);
        }
    }
}

/// Sends a mouse event to the PS/2 mouse (dropped when the VM is stopped).
pub fn mouse_event(emu: &mut Emulator, ev: Option<MouseInput>) {
    if !vm_takes_input(emu) {
        return;
    }
    let Some(pc) = emu.machine.pc() else { return };
    if let (Some(ev), Ok(mut k)) = (ev, pc.i8042.lock()) {
        k.mouse_input(ev);
    }
    emu.input.mouse_events += 1;
}

/// Ends a group of events: the mouse turns what it gathered into packets.
pub fn sync(emu: &mut Emulator) {
    if !vm_takes_input(emu) || emu.input.mouse_events == 0 {
        return;
    }
    emu.input.mouse_events = 0;
    if let Some(pc) = emu.machine.pc() {
        if let Ok(mut k) = pc.i8042.lock() {
            k.mouse_sync();
        }
    }
}

/// A key event now, or after the delays already queued.
fn send_key_event(emu: &mut Emulator, key: KeyValue, down: bool) {
    if emu.input.kbd_queue.is_empty() {
        deliver_key(emu, &key, down);
    } else {
        emu.input.kbd_queue.push_back(Queued::Key(key, down));
    }
}

fn send_key_delay(emu: &mut Emulator, ms: u32) {
    let ms = if ms == 0 { DEFAULT_KEY_DELAY_MS } else { ms };
    let start = emu.input.kbd_queue.is_empty();
    emu.input.kbd_queue.push_back(Queued::Delay(ms));
    if start {
        arm_key_timer(emu, ms);
    }
}

fn arm_key_timer(emu: &mut Emulator, ms: u32) {
    emu.add_timer(
        ClockType::Virtual,
        i64::from(ms) * 1_000_000,
        Box::new(run_key_queue),
    );
}

/// The delay at the head of the queue has passed: send what follows it,
/// up to the next delay.
fn run_key_queue(emu: &mut Emulator) {
    emu.input.kbd_queue.pop_front();
    loop {
        match emu.input.kbd_queue.front() {
            None => return,
            Some(Queued::Delay(ms)) => {
                let ms = *ms;
                arm_key_timer(emu, ms);
                return;
            }
            Some(Queued::Key(..)) => {
                if let Some(Queued::Key(key, down)) = emu.input.kbd_queue.pop_front() {
                    deliver_key(emu, &key, down);
                }
            }
        }
    }
}

/// send-key: presses the keys in order, then releases them in reverse,
/// each event `hold_ms` after the previous one.
pub fn send_keys(emu: &mut Emulator, keys: &[KeyValue], hold_ms: Option<i64>) {
    // The reference passes the time on as an unsigned 32-bit value.
    let delay = hold_ms.unwrap_or(0) as u32;
    for key in keys {
        send_key_event(emu, key.clone(), true);
        send_key_delay(emu, delay);
    }
    for key in keys.iter().rev() {
        send_key_event(emu, key.clone(), false);
        send_key_delay(emu, delay);
    }
}

fn invalid(what: &str) -> QmpError {
    QmpError::new(
        ErrorClass::GenericError,
        format!("Invalid parameter '{what}'"),
    )
}

fn parse_key(v: &Value) -> Result<KeyValue, QmpError> {
    let data = &v["data"];
    match v["type"].as_str() {
        Some("number") => data
            .as_i64()
            .map(KeyValue::Number)
            .ok_or_else(|| invalid("data")),
        Some("qcode") => {
            let name = data.as_str().ok_or_else(|| invalid("data"))?;
            KeyValue::qcode(name).ok_or_else(|| invalid(name))
        }
        Some(other) => Err(invalid(other)),
        None => Err(invalid("type")),
    }
}

pub fn send_key(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let keys = args
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("keys"))?
        .iter()
        .map(parse_key)
        .collect::<Result<Vec<_>, _>>()?;
    send_keys(emu, &keys, arg_i64(args, "hold-time"));
    Ok(super::empty())
}

fn button_bits(name: &str) -> Option<u8> {
    match name {
        "left" => Some(BUTTON_LEFT),
        "middle" => Some(BUTTON_MIDDLE),
        "right" => Some(BUTTON_RIGHT),
        _ => None,
    }
}

fn parse_event(v: &Value) -> Result<Event, QmpError> {
    let data = &v["data"];
    let down = data["down"].as_bool().unwrap_or(false);
    let value = data["value"].as_i64().unwrap_or(0) as i32;
    Ok(match v["type"].as_str() {
        Some("key") => Event::Key(parse_key(&data["key"])?, down),
        Some("btn") => match data["button"].as_str().unwrap_or("") {
            "wheel-up" if down => Event::Mouse(MouseInput::WheelUp),
            "wheel-down" if down => Event::Mouse(MouseInput::WheelDown),
            "wheel-up" | "wheel-down" => Event::MouseNoop,
            b => Event::Mouse(MouseInput::Button {
                bits: button_bits(b).ok_or_else(|| invalid(b))?,
                down,
            }),
        },
        Some("rel") => match data["axis"].as_str() {
            Some("x") => Event::Mouse(MouseInput::MoveX(value)),
            Some("y") => Event::Mouse(MouseInput::MoveY(value)),
            _ => return Err(invalid("axis")),
        },
        Some("abs") => Event::Abs,
        Some(other) => return Err(invalid(other)),
        None => return Err(invalid("type")),
    })
}

pub fn input_send_event(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let events = args
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("events"))?
        .iter()
        .map(parse_event)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(dev) = arg_str(args, "device") {
        let head = arg_i64(args, "head").unwrap_or(0);
        if !emu.qom.path_exists(&format!("/machine/peripheral/{dev}")) {
            return Err(QmpError::new(
                ErrorClass::DeviceNotFound,
                format!("Device '{dev}' not found"),
            ));
        }
        // No device here drives a graphical console.
        return Err(QmpError::generic(format!(
            "Device {dev} (head {head}) is not bound to a QemuConsole"
        )));
    }
    if !vm_takes_input(emu) {
        return Err(QmpError::generic("VM not running"));
    }
    if let Some(e) = events.iter().find(|e| !has_handler(emu, e.kind())) {
        return Err(QmpError::generic(format!(
            "Input handler not found for event type {}",
            e.kind().name()
        )));
    }
    for e in events {
        match e {
            Event::Key(key, down) => deliver_key(emu, &key, down),
            Event::Mouse(ev) => mouse_event(emu, Some(ev)),
            Event::MouseNoop => mouse_event(emu, None),
            Event::Abs => {}
        }
    }
    sync(emu);
    Ok(super::empty())
}

pub fn query_mice(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    if emu.machine.pc().is_none() {
        return Ok(json!([]));
    }
    Ok(json!([{
        "name": MOUSE_NAME,
        "index": MOUSE_INDEX,
        "current": true,
        "absolute": false,
    }]))
}
