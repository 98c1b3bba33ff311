//! Identity and introspection: qmp_capabilities, query-version,
//! query-commands, query-events, query-qmp-schema, query-name, query-uuid,
//! query-kvm, query-target, query-machines, query-command-line-options,
//! human-monitor-command.

use serde_json::{json, Map, Value};

use qmp::error::QmpError;

use super::{arg_str, empty, Args, CmdCtx, COMMANDS, EVENTS};
use crate::emulator::Emulator;

pub fn qmp_capabilities(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(empty())
}

pub fn query_version(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(crate::version::version_info())
}

/// QEMU registers commands and events in name order and lists them from
/// its list head, so clients see them in reverse name order.
fn reverse_sorted<'a>(names: impl Iterator<Item = &'a str>) -> Value {
    let mut v: Vec<&str> = names.collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    Value::Array(v.into_iter().map(|n| json!({"name": n})).collect())
}

pub fn query_commands(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(reverse_sorted(COMMANDS.iter().map(|c| c.name)))
}

pub fn query_events(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(reverse_sorted(EVENTS.iter().copied()))
}

pub fn query_qmp_schema(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(qmp::schema::schema().introspect(&super::is_implemented, &|e| EVENTS.contains(&e)))
}

pub fn query_name(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let mut m = Map::new();
    if let Some(n) = &emu.name {
        m.insert("name".into(), json!(n));
    }
    Ok(Value::Object(m))
}

pub fn format_uuid(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

pub fn query_uuid(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(json!({"UUID": format_uuid(&emu.uuid)}))
}

pub fn kvm_present() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

pub fn query_kvm(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(json!({
        "enabled": emu.machine.accel == crate::vl::config::Accel::Kvm,
        "present": kvm_present(),
    }))
}

pub fn query_target(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(json!({"arch": "x86_64"}))
}

pub fn query_machines(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let list = crate::machine_types::MACHINE_TYPES
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("name".into(), json!(m.name));
            if let Some(a) = m.alias {
                o.insert("alias".into(), json!(a));
            }
            if m.is_default {
                o.insert("is-default".into(), json!(true));
            }
            o.insert("cpu-max".into(), json!(m.cpu_max));
            o.insert("hotpluggable-cpus".into(), json!(m.hotpluggable_cpus));
            Value::Object(o)
        })
        .collect();
    Ok(Value::Array(list))
}

pub fn query_command_line_options(
    _: &mut Emulator,
    _: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let want = arg_str(args, "option");
    let lists = crate::vl::cli::option_lists();
    let mut out = Vec::new();
    for l in lists {
        if want.is_some_and(|w| w != l.name) {
            continue;
        }
        let params: Vec<Value> = l
            .descs
            .iter()
            .map(|d| {
                let ty = match d.ty {
                    crate::vl::opts::OptType::Str => "string",
                    crate::vl::opts::OptType::Bool => "boolean",
                    crate::vl::opts::OptType::Number => "number",
                    crate::vl::opts::OptType::Size => "size",
                };
                json!({"name": d.name, "type": ty})
            })
            .collect();
        out.push(json!({"option": l.name, "parameters": params}));
    }
    if want.is_some() && out.is_empty() {
        return Err(QmpError::generic(
            "Parameter 'option' expects an option name",
        ));
    }
    Ok(Value::Array(out))
}

pub fn human_monitor_command(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    args: &Args,
) -> Result<Value, QmpError> {
    let line = arg_str(args, "command-line").unwrap_or("");
    if let Some(cpu) = args.get("cpu-index").and_then(Value::as_i64) {
        if cpu < 0 || cpu >= i64::from(emu.machine.smp.cpus) {
            return Err(QmpError::generic(
                "Parameter 'cpu-index' expects a CPU number",
            ));
        }
    }
    let out = crate::hmp_cmds::run_line(emu, ctx, line);
    // HMP text goes through the monitor's output path, which turns
    // newlines into CRLF, and QMP clients see exactly that.
    let wire = crate::monitor::to_wire(&out);
    Ok(Value::String(String::from_utf8_lossy(&wire).into_owned()))
}
