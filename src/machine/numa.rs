//! `-numa node,...`: the NUMA nodes as far as guest RAM cares. With
//! `memdev=` the guest's RAM is the memory of the named backends.

use hw::memory::RamSpec;

use super::Machine;

static NUMA_OPTS: crate::vl::opts::OptsList = crate::vl::opts::OptsList {
    name: "numa",
    implied: Some("type"),
    descs: &[],
};

/// One `-numa node` as far as guest RAM cares.
struct NumaNode {
    arg: String,
    memdev: Option<String>,
    mem: Option<u64>,
}

fn parse_numa_node(arg: &str) -> Result<NumaNode, String> {
    let o = NUMA_OPTS
        .parse(arg, true)
        .map_err(|e| format!("-numa {arg}: {}", e.message))?;
    match o.get("type") {
        Some("node") => {}
        Some(t) => {
            return Err(format!(
                "-numa {arg}: Invalid parameter 'type'; {t} is not a valid value"
            ))
        }
        None => return Err(format!("-numa {arg}: Parameter 'type' is missing")),
    }
    for k in o.keys() {
        if !matches!(k, "type" | "nodeid" | "cpus" | "mem" | "memdev") {
            return Err(format!("-numa {arg}: Invalid parameter '{k}'"));
        }
    }
    let mem = match o.get("mem") {
        None => None,
        Some(v) => {
            let n = crate::vl::opts::parse_size("mem", v)
                .map_err(|e| format!("-numa {arg}: {}", e.message))?;
            // A suffix-less size is in MiB, for compatibility.
            Some(if v.ends_with(|c: char| c.is_ascii_digit()) {
                n << 20
            } else {
                n
            })
        }
    };
    let node = NumaNode {
        arg: arg.to_string(),
        memdev: o.get("memdev").map(String::from),
        mem,
    };
    if node.mem.is_some() && node.memdev.is_some() {
        return Err(format!(
            "-numa {arg}: qemu: cannot specify both mem= and memdev="
        ));
    }
    Ok(node)
}

/// The host memory of one backend as guest RAM. The backend's file (or
/// memory file) is mapped again through its open descriptor, so the guest
/// uses the very pages the backend holds (and, with `share=on`, the host
/// file's). A private file backend gets a private copy-on-write mapping
/// of the same file, which is what QEMU's `share=off` is.
fn ram_spec_of(b: &crate::qom::hostmem::MemoryBackend) -> RamSpec {
    use hw::memory::RamBackend;
    let backend = match (&b.kind, b.fd()) {
        (crate::qom::hostmem::BackendKind::File { share, .. }, Some(fd)) => RamBackend::File {
            path: format!("/proc/self/fd/{fd}").into(),
            share: *share,
        },
        // memory-backend-ram keeps its pages in a memory file: shared, so
        // the guest's RAM is those pages.
        (crate::qom::hostmem::BackendKind::Ram, Some(fd)) => RamBackend::File {
            path: format!("/proc/self/fd/{fd}").into(),
            share: true,
        },
        _ => RamBackend::Anonymous,
    };
    RamSpec {
        size: b.size(),
        backend,
        prealloc: false,
    }
}

/// `-numa node,memdev=ID`: once the `-object`s exist, the machine is
/// built again on their memory and the backends are marked in use.
pub fn apply_numa(
    emu: &mut crate::emulator::Emulator,
    cfg: &crate::vl::Config,
) -> Result<(), String> {
    let mut nodes = Vec::new();
    for (name, arg) in &cfg.machine_args {
        if name == "numa" {
            nodes.push(parse_numa_node(arg)?);
        }
    }
    if nodes.is_empty() {
        return Ok(());
    }
    let with_memdev = nodes[0].memdev.is_some();
    if let Some(n) = nodes.iter().find(|n| n.memdev.is_some() != with_memdev) {
        return Err(format!(
            "-numa {}: qemu: memdev option must be specified for either all or no nodes",
            n.arg
        ));
    }
    let ram_size = emu.machine.opts.ram_size;
    let mut specs = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    for n in &nodes {
        let Some(id) = n.memdev.as_deref() else {
            continue;
        };
        let Some(b) = emu.qom.memory_backend(id) else {
            return Err(format!("-numa {}: memdev={id} is ambiguous", n.arg));
        };
        if used.contains(&id) {
            return Err(format!(
                "memory backend {id} is used multiple times. Each -numa option must use a different memdev value."
            ));
        }
        used.push(id);
        specs.push(ram_spec_of(b));
    }
    let total: u64 = if with_memdev {
        specs.iter().map(|s| s.size).sum()
    } else {
        let given: u64 = nodes.iter().filter_map(|n| n.mem).sum();
        // Nodes without mem= share what is left, as QEMU spreads it.
        if nodes.iter().any(|n| n.mem.is_none()) {
            ram_size
        } else {
            given
        }
    };
    if total != ram_size {
        return Err(format!(
            "total memory for NUMA nodes (0x{total:x}) should equal RAM size (0x{ram_size:x})"
        ));
    }
    if !with_memdev || emu.machine.pc().is_none() {
        return Ok(());
    }
    let mut opts = emu.machine.opts.clone();
    opts.ram = specs;
    let (mtype, accel) = (emu.machine.mtype, emu.machine.accel);
    let new = Machine::new(mtype, accel, &opts).map_err(|e| e.0)?;
    emu.machine = new;
    for id in used {
        if let Some(b) = emu.qom.memory_backend_mut(id) {
            b.set_mapped(true);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numa_node_mem_without_suffix_is_mebibytes() {
        let n = parse_numa_node("node,mem=32").expect("parse");
        assert_eq!(n.mem, Some(32 << 20));
        let n = parse_numa_node("node,nodeid=1,memdev=m0").expect("parse");
        assert_eq!(n.memdev.as_deref(), Some("m0"));
    }

    #[test]
    fn numa_mistakes_get_qemus_messages() {
        assert_eq!(
            parse_numa_node("node,mem=1G,memdev=m0")
                .err()
                .expect("error"),
            "-numa node,mem=1G,memdev=m0: qemu: cannot specify both mem= and memdev="
        );
        assert_eq!(
            parse_numa_node("node,bogus=1").err().expect("error"),
            "-numa node,bogus=1: Invalid parameter 'bogus'"
        );
    }
}
