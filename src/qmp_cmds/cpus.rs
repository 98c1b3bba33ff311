//! query-cpus: the vCPUs of the machine, their host threads and PCs;
//! inject-nmi; memsave and pmemsave (guest memory to a file).

use serde_json::{json, Value};

use qmp::error::QmpError;

use super::{Args, CmdCtx};
use crate::emulator::Emulator;

/// The x86 reset vector (CS base 0xffff0000 + IP 0xfff0), where a vCPU
/// that never ran stands.
const RESET_PC: u64 = 0xffff_fff0;

/// QOM path of vCPU `i`, as QEMU's pc puts its CPUs.
pub fn cpu_qom_path(i: usize) -> String {
    format!("/machine/unattached/device[{i}]")
}

pub fn query_cpus(emu: &mut Emulator, ctx: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    let current = ctx.monitor.map_or(0, |m| emu.monitor_cpu(m));
    let cpus: Vec<Value> = if emu.machine.has_vcpus() {
        let infos = emu.machine.vcpu_infos();
        let states = emu.machine.cpu_states();
        infos
            .iter()
            .map(|info| {
                let st = states.iter().find(|s| s.index == info.index);
                json!({
                    "CPU": info.index,
                    "current": info.index == current,
                    "halted": st.is_some_and(|s| s.halted()),
                    "qom_path": cpu_qom_path(info.index),
                    "thread_id": info.thread_id,
                    "arch": "x86",
                    "pc": st.map_or(RESET_PC, |s| s.pc()) as i64,
                })
            })
            .collect()
    } else if emu.machine.pc().is_some() {
        // qtest: the CPUs exist but never run; they stay at reset.
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        (0..emu.machine.smp.cpus as usize)
            .map(|i| {
                json!({
                    "CPU": i,
                    "current": i == current,
                    "halted": false,
                    "qom_path": cpu_qom_path(i),
                    "thread_id": tid,
                    "arch": "x86",
                    "pc": RESET_PC,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Value::Array(cpus))
}

/// inject-nmi: an NMI on every vCPU.
pub fn inject_nmi(emu: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    emu.machine
        .inject_nmi()
        .map_err(|e| QmpError::generic(e.0))?;
    Ok(json!({}))
}

/// Bytes copied per step, as QEMU's loop does.
const SAVE_CHUNK: u64 = 1024;

fn int_arg(args: &Args, key: &str) -> i64 {
    args.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn create_file(name: &str) -> Result<std::fs::File, QmpError> {
    std::fs::File::create(name).map_err(|e| {
        QmpError::generic(format!(
            "Could not open '{name}': {}",
            crate::qom::hostmem::strerror(&e)
        ))
    })
}

/// Writes `size` bytes from `read` (which may refuse a range) to `name`.
fn save(
    name: &str,
    addr: i64,
    size: i64,
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> Result<Value, QmpError> {
    use std::io::Write;
    let invalid = || {
        QmpError::generic(format!(
            "Invalid addr 0x{:016x}/size {size} specified",
            addr as u64
        ))
    };
    let mut f = create_file(name)?;
    let mut left = u64::try_from(size).map_err(|_| invalid())?;
    let mut a = addr as u64;
    let mut buf = [0u8; SAVE_CHUNK as usize];
    while left > 0 {
        let l = left.min(SAVE_CHUNK) as usize;
        if !read(a, &mut buf[..l]) {
            return Err(invalid());
        }
        f.write_all(&buf[..l])
            .map_err(|_| QmpError::generic("An IO error has occurred"))?;
        a = a.wrapping_add(l as u64);
        left -= l as u64;
    }
    Ok(json!({}))
}

/// pmemsave: guest physical memory to a file (unassigned memory reads as
/// zeros there, as in QEMU).
pub fn pmemsave(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let name = args.get("filename").and_then(Value::as_str).unwrap_or("");
    let m = &emu.machine;
    save(name, int_arg(args, "val"), int_arg(args, "size"), |a, b| {
        m.read_phys(a, b);
        true
    })
}

/// memsave: guest virtual memory of one vCPU (its page tables) to a file.
pub fn memsave(emu: &mut Emulator, _: &mut CmdCtx, args: &Args) -> Result<Value, QmpError> {
    let cpu = args.get("cpu-index").and_then(Value::as_i64).unwrap_or(0);
    if cpu < 0 || cpu >= i64::from(emu.machine.smp.cpus) {
        return Err(QmpError::generic(
            "Parameter 'cpu-index' expects a CPU number",
        ));
    }
    memsave_on(emu, cpu as usize, args)
}

/// memsave for `cpu`, also HMP's (which uses the monitor's CPU).
pub fn memsave_on(emu: &mut Emulator, cpu: usize, args: &Args) -> Result<Value, QmpError> {
    use hw::memory::paging::{read_virt, PagingMode};
    let name = args.get("filename").and_then(Value::as_str).unwrap_or("");
    // Without a vCPU that ran (qtest) nothing is paged: virtual is physical.
    let mode = emu
        .machine
        .cpu_state(cpu)
        .map(|s| PagingMode::from_sregs(&s.sregs))
        .unwrap_or_default();
    let mem = emu.machine.mem.clone();
    save(name, int_arg(args, "val"), int_arg(args, "size"), |a, b| {
        read_virt(&mem, &mode, a, b).is_some()
    })
}

/// query-hotpluggable-cpus: every possible CPU slot (up to maxcpus) with
/// its socket/core/thread ids, newest slot first as QEMU lists them; the
/// present ones with their QOM path.
pub fn query_hotpluggable_cpus(
    emu: &mut Emulator,
    _: &mut CmdCtx,
    _: &Args,
) -> Result<Value, QmpError> {
    if emu.machine.pc().is_none() {
        return Err(QmpError::generic(
            "machine does not support hot-plugging CPUs",
        ));
    }
    let smp = &emu.machine.smp;
    let threads = smp.threads.max(1);
    let cores = smp.cores.max(1);
    let possible = smp.max_cpus.max(smp.cpus);
    let mut list = Vec::new();
    for i in 0..possible {
        let mut item = serde_json::Map::new();
        item.insert("type".into(), json!("qemu64-x86_64-cpu"));
        item.insert("vcpus-count".into(), json!(1));
        item.insert(
            "props".into(),
            json!({
                "socket-id": i / (cores * threads),
                "core-id": (i / threads) % cores,
                "thread-id": i % threads,
            }),
        );
        if i < smp.cpus {
            item.insert("qom-path".into(), json!(cpu_qom_path(i as usize)));
        }
        list.push(Value::Object(item));
    }
    list.reverse();
    Ok(Value::Array(list))
}

/// cpu: QEMU's QMP `cpu` does nothing (each command names its CPU).
pub fn cpu(_: &mut Emulator, _: &mut CmdCtx, _: &Args) -> Result<Value, QmpError> {
    Ok(json!({}))
}
