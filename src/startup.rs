//! Building the emulator from the command line, in QEMU's order: objects,
//! chardevs, monitors, serial ports, qtest; then wait for `server,wait`
//! sockets.

use crate::emulator::Emulator;
use crate::vl::Config;

pub fn build(emu: &mut Emulator, cfg: &Config) -> Result<(), String> {
    crate::qom::populate_machine(emu, cfg);
    crate::machine::populate_qom(emu);
    for o in &cfg.objects {
        crate::qom::objects::add_from_opts(emu, o)?;
    }
    crate::machine::apply_numa(emu, cfg)?;
    for (i, c) in cfg.chardevs.iter().enumerate() {
        emu.add_chardev(c).map_err(|e| {
            let loc = cfg
                .chardev_locs
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("-chardev {}", c.id.as_deref().unwrap_or("")));
            format!("{loc}: {e}")
        })?;
    }
    for m in &cfg.monitors {
        crate::monitor::add_monitor(emu, &m.chardev, m.mode, m.pretty)
            .map_err(|e| format!("{}: {e}", m.loc))?;
    }
    for (i, s) in cfg.serials.iter().enumerate() {
        if emu.chardev(s).is_none() {
            return Err(format!(
                "-serial chardev:{s}: could not connect serial device to character backend 'chardev:{s}'"
            ));
        }
        // `-M none` has no serial port at all.
        if emu.machine.pc().is_some() {
            emu.attach_frontend(s, crate::chardev::Frontend::Serial(i))?;
            emu.serial_chardevs.push(Some(s.clone()));
        }
    }
    if let Some(q) = &cfg.qtest {
        let opts = crate::chardev::compat::parse_compat("qtest", q)
            .ok_or_else(|| format!("-qtest {q}: Failed to parse chardev spec"))?;
        emu.add_chardev(&opts)
            .map_err(|e| format!("-qtest {q}: {e}"))?;
        crate::qtest::start(emu, "qtest", cfg.qtest_log.as_deref())?;
    }
    for (loc, fdopt) in &cfg.add_fds {
        crate::qmp_cmds::fd::add_fd_from_cmdline(emu, fdopt).map_err(|e| format!("{loc}: {e}"))?;
    }
    crate::blockdev::open_cmdline_drives(emu, cfg)?;
    wait_for_server_sockets(emu)
}

/// `server,wait` sockets block start-up until a client connects.
fn wait_for_server_sockets(emu: &mut Emulator) -> Result<(), String> {
    let ids: Vec<String> = emu.chardevs.iter().map(|c| c.id.clone()).collect();
    for id in ids {
        let Some(idx) = emu.chardev_index(&id) else {
            continue;
        };
        let mut reg = crate::chardev::FdRegistry::new(&mut emu.fdwatch);
        let dev = &mut emu.chardevs[idx];
        let events = dev
            .backend
            .wait_for_connection(&mut reg)
            .map_err(|e| format!("chardev {id}: {e}"))?;
        let (added, removed) = (reg.added.clone(), reg.removed.clone());
        dev.note_tokens(&reg);
        emu.set_owners(&id, &added, &removed);
        for ev in events {
            emu.deliver(&id, ev);
        }
    }
    Ok(())
}
