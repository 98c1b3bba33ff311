//! qemu-system-x86_64: a drop-in replacement for QEMU's x86-64 system
//! emulator. This file is start-up: parse the command line, build the
//! emulator from it, run the main loop, clean up.

mod base64;
mod blockdev;
mod chardev;
mod devices;
mod dump;
mod emulator;
mod fdsets;
mod hmp_cmds;
mod machine;
mod machine_types;
mod main_loop;
mod monitor;
mod nbd;
mod qmp_cmds;
mod qom;
mod qtest;
mod runstate;
mod sys;
mod vcpu_exits;
mod version;
mod vl;

use std::process::ExitCode;

use emulator::Emulator;
use runstate::RunState;
use vl::cli::Action;
use vl::config::{Accel, Config, SmpConfig};

/// Prints `qemu-system-x86_64: MSG` and fails start-up.
fn fatal(msg: impl std::fmt::Display) -> ExitCode {
    let msg = msg.to_string();
    // The PC loaders' messages are QEMU's fprintf lines, already "qemu: ".
    if msg.starts_with("qemu: ") {
        eprintln!("{msg}");
    } else {
        eprintln!("qemu-system-x86_64: {msg}");
    }
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match vl::parse_args(&args) {
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::from(1)
        }
        Ok(Action::PrintHelp) => {
            print!("{}", vl::help::help_text());
            ExitCode::SUCCESS
        }
        Ok(Action::PrintVersion) => {
            print!("{}", version::version_banner());
            ExitCode::SUCCESS
        }
        Ok(Action::Print(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Action::Run(cfg)) => run(*cfg),
    }
}

/// Picks the first accelerator of the list that starts, as QEMU's
/// configure_accelerator: unknown names and failures are reported and the
/// next one is tried.
fn select_accel(cfg: &Config, mtype: &machine_types::MachineType) -> Result<Accel, String> {
    let default_list = vec![if mtype.name == "none" { "tcg" } else { "kvm" }.to_string()];
    let list = if cfg.accel.is_empty() {
        &default_list
    } else {
        &cfg.accel
    };
    let mut tried = false;
    for name in list {
        let Some(accel) = Accel::from_name(name) else {
            eprintln!("\"{name}\" accelerator not found.");
            continue;
        };
        let result = match accel {
            Accel::Qtest => Ok(()),
            Accel::Kvm => {
                if qmp_cmds::misc::kvm_present() {
                    Ok(())
                } else {
                    let e = qom::hostmem::strerror(&std::io::Error::last_os_error());
                    eprintln!("Could not access KVM kernel module: {e}");
                    Err(e)
                }
            }
            // Without vCPUs (machine `none`) there is no guest code to
            // translate, so the TCG choice only names the accelerator.
            Accel::Tcg if mtype.name == "none" => Ok(()),
            Accel::Tcg => {
                Err("TCG is not supported by this emulator; use accel=kvm or accel=qtest".into())
            }
            Accel::Xen => Err("Xen is not supported by this emulator".into()),
        };
        match result {
            Ok(()) => {
                if tried {
                    eprintln!("Back to {} accelerator.", accel.name());
                }
                return Ok(accel);
            }
            Err(e) => {
                eprintln!("failed to initialize {}: {e}", accel.name());
                tried = true;
            }
        }
    }
    // After a failed start QEMU has said all there is to say.
    Err(if tried {
        String::new()
    } else {
        "No accelerator found!".into()
    })
}

/// -daemonize: fork, let the parent wait until the child reports that
/// start-up finished, then exit with the child's verdict.
fn daemonize_fork() -> Result<Option<std::os::fd::RawFd>, String> {
    let mut p = [0i32; 2];
    // SAFETY: p has room for two fds.
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    // SAFETY: no threads exist yet, so fork is safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err("fork failed".into());
    }
    if pid > 0 {
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(p[1]) };
        let mut status = 1u8;
        // SAFETY: reading one byte into a stack variable.
        let n = unsafe { libc::read(p[0], (&mut status as *mut u8).cast(), 1) };
        std::process::exit(if n == 1 && status == 0 { 0 } else { 1 });
    }
    // SAFETY: the child closes the read end and starts a new session.
    unsafe {
        libc::close(p[0]);
        libc::setsid();
    }
    Ok(Some(p[1]))
}

fn daemonize_finish(fd: std::os::fd::RawFd, ok: bool) {
    let status: u8 = if ok { 0 } else { 1 };
    // SAFETY: writing one byte to the pipe; then stdio goes to /dev/null
    // as a daemon's does.
    unsafe {
        libc::write(fd, (&status as *const u8).cast(), 1);
        libc::close(fd);
        if ok {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
    }
}

fn write_pidfile(path: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| format!("could not acquire pid file: {}", sys::oserror::strerror(&e)))?;
    writeln!(f, "{}", std::process::id())
        .map_err(|e| format!("could not acquire pid file: {}", sys::oserror::strerror(&e)))
}

fn run(cfg: Config) -> ExitCode {
    let mtype = match cfg.machine.as_deref() {
        None => machine_types::default_type(),
        Some(name) => match machine_types::find(name) {
            Some(m) => m,
            None => {
                eprintln!("qemu-system-x86_64: unsupported machine type");
                eprintln!("Use -machine help to list supported machines");
                return ExitCode::from(1);
            }
        },
    };
    let accel = match select_accel(&cfg, mtype) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            return ExitCode::from(1);
        }
    };
    let mut bios = None;
    let (mut kernel, mut initrd, mut append) = (None, None, None);
    let mut device_specs = Vec::new();
    for (name, arg) in &cfg.machine_args {
        match name.as_str() {
            "bios" => bios = Some(arg.clone()),
            "kernel" => kernel = Some(arg.clone()),
            "initrd" => initrd = Some(arg.clone()),
            "append" => append = Some(arg.clone()),
            "rtc" => {}
            // Applied in startup::build, once the memory backends exist.
            "numa" => {}
            // Opened in startup::build, once fd sets exist.
            "drive" | "blockdev" | "snapshot" | "hda" | "hdb" | "hdc" | "hdd" | "cdrom" | "fda"
            | "fdb" | "" => {}
            "device" => match devices::parse_device(arg) {
                Ok(Some(d)) => {
                    if let Some(id) = d.id() {
                        if device_specs
                            .iter()
                            .any(|o: &devices::DeviceSpec| o.id() == Some(id))
                        {
                            return fatal(format!("-device {arg}: Duplicate ID '{id}' for device"));
                        }
                    }
                    device_specs.push(d)
                }
                Ok(None) => {
                    return fatal(format!(
                        "-device {arg}: device not supported yet by this emulator"
                    ))
                }
                Err(e) => return fatal(format!("-device {arg}: {e}")),
            },
            _ => {
                return fatal(format!(
                    "-{name} {arg}: option not supported yet by this emulator"
                ))
            }
        }
    }
    if kernel.is_none() {
        if append.is_some() {
            return fatal("-append only allowed with -kernel option");
        }
        if initrd.is_some() {
            return fatal("-initrd only allowed with -kernel option");
        }
    }
    let has_debug_exit = device_specs
        .iter()
        .any(|d| matches!(d, devices::DeviceSpec::DebugExit { .. }));
    if has_debug_exit && mtype.name == "none" {
        return fatal("-device isa-debug-exit: No 'ISA' bus found for device 'isa-debug-exit'");
    }
    let smp = cfg.smp.clone().unwrap_or(SmpConfig {
        cpus: 1,
        max_cpus: 1,
        sockets: 1,
        cores: 1,
        threads: 1,
    });
    if smp.cpus > mtype.cpu_max {
        return fatal(format!(
            "Number of SMP CPUs requested ({}) exceeds max CPUs supported by machine '{}' ({})",
            smp.cpus, mtype.name, mtype.cpu_max
        ));
    }
    let ram = cfg.memory.as_ref().map_or(128 << 20, |m| m.size);

    let daemon_fd = if cfg.daemonize {
        match daemonize_fork() {
            Ok(fd) => fd,
            Err(e) => return fatal(e),
        }
    } else {
        None
    };
    let fail = |msg: String| -> ExitCode {
        if let Some(fd) = daemon_fd {
            daemonize_finish(fd, false);
        }
        fatal(msg)
    };

    if let Some(name) = &cfg.process_name {
        sys::process::set_name(name);
    }
    let mopts = machine::MachineOpts {
        ram_size: ram,
        smp,
        rtc_base: cfg
            .rtc
            .as_ref()
            .and_then(|r| r.get("base"))
            .map(String::from),
        bios,
        kernel,
        initrd,
        append,
        serial_ports: cfg.serials.len().min(4),
        devices: device_specs,
        ram: Vec::new(),
    };
    let machine = match machine::Machine::new(mtype, accel, &mopts) {
        Ok(m) => m,
        Err(e) => return fail(e.0),
    };
    let mut emu = match Emulator::new(&cfg, machine) {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot create main loop: {e}")),
    };
    match sys::signals::install() {
        Ok(fd) => {
            if let Err(e) = emu.watch_signals(fd) {
                return fail(format!("cannot watch signals: {e}"));
            }
        }
        Err(e) => return fail(format!("cannot install signal handlers: {e}")),
    }
    if let Some(p) = &cfg.pidfile {
        if let Err(e) = write_pidfile(p) {
            emu.pidfile = None;
            return fail(e);
        }
    }
    if let Err(e) = startup::build(&mut emu, &cfg) {
        emu.shutdown_cleanup();
        return fail(e);
    }
    if let Some(fd) = daemon_fd {
        daemonize_finish(fd, true);
    }
    if cfg.incoming.is_some() {
        emu.set_runstate(RunState::Inmigrate);
    }
    let emu = std::sync::Arc::new(std::sync::Mutex::new(emu));
    {
        let mut g = main_loop::run::lock(&emu);
        let notifier = g.fdwatch.notifier();
        g.machine.events.set_notify(move || {
            let _ = notifier.notify();
        });
        if let Err(e) = g.machine.start_vcpus(emu.clone()) {
            g.shutdown_cleanup();
            return fatal(e.0);
        }
        if cfg.incoming.is_none() && !cfg.start_stopped {
            g.vm_start();
        }
    }
    let _reason = main_loop::run::run(&emu);
    main_loop::run::lock(&emu).shutdown_cleanup();
    ExitCode::SUCCESS
}

mod startup;
