//! HMP QOM commands: `info qom-tree`, `info iothreads`, `object_add`,
//! `object_del`, `qom-list`, `qom-set`, printed as QEMU's hmp.c and
//! qdev-monitor.c print them.

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::HmpArgs;
use crate::emulator::Emulator;
use crate::qmp_cmds::{self, CmdCtx};
use crate::qom::{objects, Input, Qom, QomError, Resolved};

fn arg<'a>(a: &'a HmpArgs, name: &str) -> Option<&'a str> {
    a.get(name).and_then(Value::as_str)
}

fn print_tree(qom: &Qom, idx: usize, indent: usize, out: &mut String, depth: usize) {
    let Some(n) = qom.node(idx) else {
        return;
    };
    out.push_str(&format!("{:indent$}/{} ({})\n", "", n.name, n.type_name));
    // Bounded recursion: the arena is a tree, this only guards a bug.
    if depth > 256 {
        return;
    }
    // QEMU walks a hash table here; name order is stable and is what
    // later QEMU releases print.
    let mut kids: Vec<(&str, usize)> = n
        .children
        .iter()
        .filter_map(|&c| qom.node(c).map(|k| (k.name.as_str(), c)))
        .collect();
    kids.sort();
    for (_, c) in kids {
        print_tree(qom, c, indent + 2, out, depth + 1);
    }
}

pub fn info_qom_tree(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let idx = match arg(a, "path") {
        Some(path) => match emu.qom.resolve_path(path) {
            Resolved::Found(i) => i,
            // An ambiguous path resolves to nothing, so QEMU reports it
            // as unresolved too.
            Resolved::Ambiguous | Resolved::NotFound => {
                out.push_str(&format!("Path '{path}' could not be resolved.\n"));
                return Ok(());
            }
        },
        None => match emu.qom.machine() {
            Some(m) => m,
            None => return Ok(()),
        },
    };
    print_tree(&emu.qom, idx, 0, out, 0);
    Ok(())
}

pub fn info_iothreads(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    _: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let v = qmp_cmds::dispatch(emu, ctx, "query-iothreads", &HmpArgs::new())?;
    for t in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{}: thread_id={}\n",
            t["id"].as_str().unwrap_or(""),
            t["thread-id"].as_i64().unwrap_or(-1)
        ));
    }
    Ok(())
}

pub fn object_add(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let line = arg(a, "object").unwrap_or("");
    let opts = match crate::vl::cli::FREE_OPTS_QOM_TYPE.parse(line, true) {
        Ok(o) => o,
        Err(e) => {
            out.push_str(&e.message);
            out.push('\n');
            if let Some(h) = e.hint {
                out.push_str(h);
                out.push('\n');
            }
            return Ok(());
        }
    };
    if let Some(id) = &opts.id {
        // Options from -object stay registered under their id in QEMU.
        if emu.qom.cmdline_ids.contains(id) {
            return Err(QmpError::generic(format!("Duplicate ID '{id}' for object")));
        }
    }
    objects::create_from_opts(&mut emu.qom, &opts)?;
    Ok(())
}

pub fn object_del(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let mut args = HmpArgs::new();
    args.insert("id".into(), json!(arg(a, "id").unwrap_or("")));
    qmp_cmds::dispatch(emu, ctx, "object-del", &args).map(|_| ())
}

pub fn qom_list(
    emu: &mut Emulator,
    ctx: &mut CmdCtx,
    a: &HmpArgs,
    out: &mut String,
) -> Result<(), QmpError> {
    let Some(path) = arg(a, "path") else {
        out.push_str("/\n");
        return Ok(());
    };
    let mut args = HmpArgs::new();
    args.insert("path".into(), json!(path));
    let v = qmp_cmds::dispatch(emu, ctx, "qom-list", &args)?;
    for p in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} ({})\n",
            p["name"].as_str().unwrap_or(""),
            p["type"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}

pub fn qom_set(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    a: &HmpArgs,
    _: &mut String,
) -> Result<(), QmpError> {
    let path = arg(a, "path").unwrap_or("");
    let prop = arg(a, "property").unwrap_or("");
    let value = arg(a, "value").unwrap_or("");
    let Resolved::Found(idx) = emu.qom.resolve_path(path) else {
        return Err(QomError::device_not_found(path).into());
    };
    emu.qom.set_prop(idx, prop, &Input::Str(value))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::qmp_cmds::qom::tests::emu;
    use crate::qmp_cmds::CmdCtx;

    fn hmp(e: &mut crate::emulator::Emulator, line: &str) -> String {
        let mut ctx = CmdCtx { monitor: None };
        crate::hmp_cmds::run_line(e, &mut ctx, line)
    }

    #[test]
    fn info_qom_tree_indents_by_two_per_level() {
        let mut e = emu();
        assert_eq!(
            hmp(&mut e, "info qom-tree"),
            "/machine (none-machine)\n  /peripheral (container)\n  /peripheral-anon (container)\n  /unattached (container)\n"
        );
        assert_eq!(
            hmp(&mut e, "info qom-tree /objects"),
            "/objects (container)\n"
        );
        assert_eq!(
            hmp(&mut e, "info qom-tree /x"),
            "Path '/x' could not be resolved.\n"
        );
    }

    #[test]
    fn object_add_list_and_del_through_hmp() {
        let mut e = emu();
        assert_eq!(hmp(&mut e, "object_add iothread,id=t1"), "");
        let info = hmp(&mut e, "info iothreads");
        assert!(info.starts_with("t1: thread_id="), "{info}");
        assert_eq!(hmp(&mut e, "qom-list /objects/t1"), "type (string)\n");
        assert_eq!(hmp(&mut e, "qom-list"), "/\n");
        assert_eq!(hmp(&mut e, "object_del t1"), "");
        assert_eq!(hmp(&mut e, "object_del t1"), "object 't1' not found\n");
        assert_eq!(
            hmp(&mut e, "object_add"),
            "Parameter 'qom-type' is missing\n"
        );
        assert_eq!(
            hmp(&mut e, "object_add iothread"),
            "Parameter 'id' is missing\n"
        );
        assert_eq!(
            hmp(&mut e, "object_add iothread,id=1a"),
            "Parameter 'id' expects an identifier\nIdentifiers consist of letters, digits, '-', '.', '_', starting with a letter.\n"
        );
    }

    #[test]
    fn qom_set_parses_strings_by_type() {
        let mut e = emu();
        assert_eq!(hmp(&mut e, "qom-set /machine usb on"), "");
        assert_eq!(
            hmp(&mut e, "qom-set /machine usb 7"),
            "Invalid parameter type for 'usb', expected: boolean\n"
        );
        assert_eq!(
            hmp(&mut e, "qom-set /nope usb on"),
            "Device '/nope' not found\n"
        );
        assert_eq!(
            hmp(&mut e, "qom-set /machine type x"),
            "Insufficient permission to perform this operation\n"
        );
    }
}
