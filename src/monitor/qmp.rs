//! A QMP session: greeting, capabilities negotiation, request parsing,
//! dispatch and replies, events.

use serde_json::{json, Map, Value};

use qmp::error::{ErrorClass, QmpError};
use qmp::json::{to_json_string, JsonStreamer};
use qmp::request::parse_request;

use super::MonitorKind;
use crate::chardev::CharEvent;
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};

pub struct QmpSession {
    streamer: JsonStreamer,
    pub command_mode: bool,
    pub pretty: bool,
}

impl QmpSession {
    pub fn new(pretty: bool) -> Self {
        QmpSession {
            streamer: JsonStreamer::new(),
            command_mode: false,
            pretty,
        }
    }
}

fn session(emu: &mut Emulator, idx: usize) -> Option<&mut QmpSession> {
    match emu.monitors.get_mut(idx) {
        Some(Some(m)) => match &mut m.kind {
            MonitorKind::Qmp(s) => Some(s),
            MonitorKind::Hmp(_) => None,
        },
        _ => None,
    }
}

pub fn greeting() -> Value {
    json!({"QMP": {"version": crate::version::version_info(), "capabilities": []}})
}

fn send(emu: &mut Emulator, idx: usize, v: &Value) {
    let Some(s) = session(emu, idx) else { return };
    let mut text = to_json_string(v, s.pretty);
    text.push('\n');
    super::write_text(emu, idx, &text);
}

pub fn send_event(emu: &mut Emulator, idx: usize, ev: &Value) {
    if session(emu, idx).is_some_and(|s| s.command_mode) {
        send(emu, idx, ev);
    }
}

pub fn handle_char_event(emu: &mut Emulator, idx: usize, ev: CharEvent) {
    match ev {
        CharEvent::Opened => {
            if let Some(s) = session(emu, idx) {
                s.command_mode = false;
                s.streamer = JsonStreamer::new();
            }
            send(emu, idx, &greeting());
        }
        CharEvent::Closed => {
            if let Some(s) = session(emu, idx) {
                s.command_mode = false;
                s.streamer = JsonStreamer::new();
            }
            if let Some(Some(m)) = emu.monitors.get_mut(idx) {
                m.named_fds.clear();
            }
        }
        CharEvent::Data(bytes) => {
            let mut msgs = Vec::new();
            if let Some(s) = session(emu, idx) {
                s.streamer.feed(&bytes, &mut msgs);
            }
            for m in msgs {
                let reply = handle_message(emu, idx, m);
                if let Some(r) = reply {
                    send(emu, idx, &r);
                }
            }
        }
    }
}

fn error_reply(e: &QmpError, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("error".into(), e.to_json());
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

fn handle_message(
    emu: &mut Emulator,
    idx: usize,
    msg: Result<Value, qmp::json::JsonError>,
) -> Option<Value> {
    let v = match msg {
        Ok(v) => v,
        Err(e) => return Some(error_reply(&QmpError::generic(e.message), None)),
    };
    let req = match parse_request(v) {
        Ok(r) => r,
        Err(e) => return Some(error_reply(&e.error, e.id)),
    };
    let command_mode = session(emu, idx).is_some_and(|s| s.command_mode);
    let is_cap = req.execute == "qmp_capabilities";
    if is_cap && command_mode {
        let e = QmpError::new(
            ErrorClass::CommandNotFound,
            format!(
                "Capabilities negotiation is already complete, command '{}' ignored",
                req.execute
            ),
        );
        return Some(error_reply(&e, req.id));
    }
    if !is_cap && !command_mode {
        let e = QmpError::new(
            ErrorClass::CommandNotFound,
            format!(
                "Expecting capabilities negotiation with 'qmp_capabilities' before command '{}'",
                req.execute
            ),
        );
        return Some(error_reply(&e, req.id));
    }
    let mut ctx = CmdCtx { monitor: Some(idx) };
    let result = qmp_cmds::dispatch(emu, &mut ctx, &req.execute, &req.arguments);
    let mut m = Map::new();
    match result {
        Ok(v) => {
            if is_cap {
                if let Some(s) = session(emu, idx) {
                    s.command_mode = true;
                }
            }
            m.insert("return".into(), v);
        }
        Err(e) => {
            m.insert("error".into(), e.to_json());
        }
    }
    if let Some(id) = req.id {
        m.insert("id".into(), id);
    }
    Some(Value::Object(m))
}
