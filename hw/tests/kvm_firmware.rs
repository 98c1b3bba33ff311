//! Runs tiny firmware under KVM with a recording exit handler. Each test prints
//! `not run: <reason>` and passes when /dev/kvm is not usable.

mod common;

use std::time::Duration;

use common::{assemble, kvm_missing, start, Seen};
use hw::events::{MachineEvent, ResetSource};
use hw::kvm::VcpuEvent;

macro_rules! need_kvm {
    () => {
        if let Some(why) = kvm_missing() {
            println!("not run: {why}");
            return;
        }
    };
}

#[test]
fn firmware_prints_hello_on_com1_and_writes_debug_exit() {
    need_kvm!();
    let bios = assemble("hello");
    let m = start(&bios, 16, 1, false, |_, _| {});
    let (serial, exit) = m.until_port(0x501, 0x3f8, 30);
    assert_eq!(serial, b"hello\n");
    assert_eq!(exit, vec![0x21]);
}

#[test]
fn debug_exit_device_queues_exit_code() {
    need_kvm!();
    let bios = assemble("hello");
    let m = start(&bios, 16, 1, true, |_, _| {});
    let ev = loop {
        if let Seen::Machine(ev) = m.next(30) {
            break ev;
        }
    };
    assert_eq!(ev, MachineEvent::DebugExit { code: 0x43 });
}

#[test]
fn triple_fault_reports_shutdown() {
    need_kvm!();
    let bios = assemble("triple");
    let m = start(&bios, 16, 1, false, |_, _| {});
    let seen = m.next(30);
    assert_eq!(
        seen,
        Seen::Event {
            cpu: 0,
            event: VcpuEvent::Shutdown
        }
    );
}

#[test]
fn second_vcpu_starts_through_init_sipi() {
    need_kvm!();
    let bios = assemble("smp");
    let m = start(&bios, 16, 2, false, |_, _| {});
    let mut who = Vec::new();
    while who.len() < 2 {
        match m.next(60) {
            Seen::Out {
                cpu,
                port: 0x3f8,
                data,
            } => who.push((cpu, data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    who.sort();
    assert_eq!(who, vec![(0, b"B".to_vec()), (1, b"A".to_vec())]);
}

#[test]
fn long_mode_switch_with_page_tables_in_ram() {
    need_kvm!();
    let bios = assemble("longmode");
    let m = start(&bios, 16, 1, false, |_, _| {});
    let (serial, exit) = m.until_port(0x501, 0x3f8, 60);
    assert_eq!(serial, b"64");
    assert_eq!(exit, vec![0x42]);
    assert_eq!(m.mem.read_u64(0x5000).expect("ram"), 0x1122_3344_5566_7788);
    let state = m
        .control
        .run_on(0, |v| v.get_state())
        .expect("run_on")
        .expect("state");
    assert!(state.long_mode());
    assert_eq!(state.sregs.cs.selector, 0x18);
}

#[test]
fn paused_vcpu_stops_counting_and_resumes_after_cont() {
    need_kvm!();
    let bios = assemble("count");
    let m = start(&bios, 16, 1, false, |_, _| {});
    assert!(matches!(m.next(30), Seen::Out { port: 0x3f8, .. }));
    let counter = || m.mem.read_u32(0x6000).expect("ram");
    assert!(advances(&counter), "counter never ran");
    m.control.pause_all();
    let a = counter();
    std::thread::sleep(Duration::from_millis(200));
    let b = counter();
    let state = m
        .control
        .run_on(0, |v| v.get_state())
        .expect("run_on")
        .expect("state");
    m.control.resume_all();
    assert_eq!(a, b, "counted while paused");
    assert!(advances(&counter), "did not count after resume");
    assert!(
        state.pc() >= 0xf0000 && state.pc() < 0x100000,
        "pc {:x}",
        state.pc()
    );
    assert!(m.control.info()[0].thread_id > 0);
}

/// Whether `read` changes within 10 s (the host may be busy).
fn advances(read: &dyn Fn() -> u32) -> bool {
    let start = read();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if read() != start {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn run_on_reads_registers_of_a_running_vcpu() {
    need_kvm!();
    let bios = assemble("count");
    let m = start(&bios, 16, 1, false, |_, _| {});
    assert!(matches!(m.next(30), Seen::Out { port: 0x3f8, .. }));
    let state = m
        .control
        .run_on(0, |v| v.get_state())
        .expect("run_on")
        .expect("state");
    assert_eq!(state.sregs.cs.selector, 0xf000);
    let counter = || m.mem.read_u32(0x6000).expect("ram");
    assert!(advances(&counter), "vCPU did not go on after run_on");
}

#[test]
fn i8042_and_cf9_resets_rerun_firmware_and_keep_nvram() {
    need_kvm!();
    let bios = assemble("reset");
    let m = start(&bios, 16, 1, true, |_, _| {});
    let mut serial = Vec::new();
    let mut resets = Vec::new();
    loop {
        match m.next(60) {
            Seen::Out {
                port: 0x3f8, data, ..
            } => serial.extend(data),
            Seen::Machine(MachineEvent::Reset { source }) => {
                resets.push(source);
                m.system_reset();
            }
            Seen::Machine(MachineEvent::DebugExit { code }) => {
                assert_eq!(code, 0x21);
                break;
            }
            Seen::Event { cpu, event } => panic!("unexpected event on cpu {cpu}: {event:?}"),
            _ => {}
        }
    }
    assert_eq!(serial, b"012");
    assert_eq!(
        resets,
        vec![ResetSource::Keyboard, ResetSource::ResetControl]
    );
}

#[test]
fn port_reads_return_device_data_to_the_guest() {
    need_kvm!();
    let bios = assemble("inport");
    let m = start(&bios, 16, 1, true, |_, _| {});
    let mut echoed = Vec::new();
    loop {
        match m.next(30) {
            Seen::Out {
                port: 0x80, data, ..
            } => echoed.extend(data),
            Seen::Out { port: 0x501, .. } => break,
            _ => {}
        }
    }
    assert_eq!(echoed[1], 0x5a);
}

#[test]
fn injected_nmi_runs_the_guest_nmi_handler() {
    need_kvm!();
    let bios = assemble("nmi");
    let m = start(&bios, 16, 1, false, |_, _| {});
    assert_eq!(
        m.next(30),
        Seen::Out {
            cpu: 0,
            port: 0x3f8,
            data: b"R".to_vec()
        }
    );
    m.control
        .run_on(0, |v| v.nmi())
        .expect("run_on")
        .expect("nmi");
    assert_eq!(
        m.next(30),
        Seen::Out {
            cpu: 0,
            port: 0x3f8,
            data: b"N".to_vec()
        }
    );
}

#[test]
fn power_button_is_seen_by_polling_firmware_which_powers_off_via_s5() {
    need_kvm!();
    let bios = assemble("powerbtn");
    let m = start(&bios, 16, 1, true, |_, _| {});
    loop {
        if let Seen::Out {
            port: 0x3f8, data, ..
        } = m.next(30)
        {
            assert_eq!(data, b"R");
            break;
        }
    }
    if let Some(pc) = &m.handler.lock().expect("bql").pc {
        pc.acpi_pm.lock().expect("pm").press_power_button();
    }
    let mut serial = Vec::new();
    loop {
        match m.next(30) {
            Seen::Out {
                port: 0x3f8, data, ..
            } => serial.extend(data),
            Seen::Machine(MachineEvent::PowerOff) => break,
            Seen::Event { event, .. } => panic!("unexpected {event:?}"),
            _ => {}
        }
    }
    assert_eq!(serial, b"P");
}

#[test]
fn int3_either_runs_the_handler_or_reports_an_internal_error_and_stays_inspectable() {
    need_kvm!();
    let bios = assemble("int3");
    let m = start(&bios, 16, 1, false, |_, _| {});
    match m.next(30) {
        Seen::Out {
            port: 0x3f8, data, ..
        } => assert_eq!(data, b"B"),
        Seen::Event {
            cpu: 0,
            event: VcpuEvent::InternalError { suberror, .. },
        } => {
            assert!(suberror > 0);
            let state = m
                .control
                .run_on(0, |v| v.get_state())
                .expect("run_on")
                .expect("state");
            assert!(
                state.pc() >= 0xf0000 && state.pc() < 0x100000,
                "pc {:x}",
                state.pc()
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn halted_vcpu_reports_halted_state() {
    need_kvm!();
    let bios = assemble("hello");
    let m = start(&bios, 16, 1, false, |_, _| {});
    m.until_port(0x501, 0x3f8, 30);
    let mut halted = false;
    for _ in 0..100 {
        let s = m
            .control
            .run_on(0, |v| v.get_state())
            .expect("run_on")
            .expect("state");
        if s.halted() {
            halted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(halted);
}

#[test]
fn pause_and_run_on_while_holding_the_big_lock_never_deadlock() {
    need_kvm!();
    let bios = assemble("spin");
    let m = start(&bios, 16, 2, false, |_, _| {});
    assert!(matches!(m.next(30), Seen::Out { port: 0x80, .. }));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let control = m.control.clone();
    let handler = m.handler.clone();
    let worker = std::thread::spawn(move || {
        for i in 0..40 {
            let bql = handler.lock().expect("bql");
            if i % 2 == 0 {
                control.pause_all();
            }
            let s = control
                .run_on(0, |v| v.get_state())
                .expect("run_on")
                .expect("state");
            assert!(s.pc() >= 0xf0000);
            // The AP never got INIT/SIPI: it must still be waiting.
            let ap = control
                .run_on(1, |v| v.get_state())
                .expect("run_on")
                .expect("state");
            assert_eq!(ap.mp_state, hw::kvm_bindings::KVM_MP_STATE_UNINITIALIZED);
            drop(bql);
            control.resume_all();
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = done_tx.send(());
    });
    let finished = done_rx.recv_timeout(Duration::from_secs(60)).is_ok();
    assert!(finished, "deadlock between the big lock and vCPU control");
    worker.join().expect("worker");
}

#[test]
fn dirty_log_reports_pages_the_guest_wrote() {
    need_kvm!();
    let bios = assemble("count");
    let m = start(&bios, 16, 1, false, |_, _| {});
    assert!(matches!(m.next(30), Seen::Out { port: 0x3f8, .. }));
    m.vm.set_dirty_logging(true).expect("log on");
    let counter = || m.mem.read_u32(0x6000).expect("ram");
    assert!(advances(&counter), "counter stopped");
    let dirty = m.vm.take_dirty_pages().expect("harvest");
    m.vm.set_dirty_logging(false).expect("log off");
    let low = dirty.iter().find(|d| d.gpa == 0).expect("low ram block");
    // The counter lives at 0x6000: page 6.
    assert_ne!(low.bitmap[0] & (1 << 6), 0);
    assert_eq!(low.bitmap[0] & (1 << 7), 0);
}

#[test]
fn string_port_output_is_neither_lost_nor_repeated_across_pauses() {
    need_kvm!();
    let bios = assemble("repout");
    let m = start(&bios, 16, 1, false, |_, _| {});
    let control = m.control.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let pauser = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            control.pause_all();
            let _ = control.run_on(0, |v| v.get_state());
            control.resume_all();
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let (serial, exit) = m.until_port(0x501, 0x3f8, 60);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    pauser.join().expect("pauser");
    assert_eq!(exit, vec![0x11]);
    assert_eq!(
        serial,
        b"0123456789abcdefghijklmnopqrstuvwxyzABCD".repeat(50)
    );
}

#[test]
fn info_registers_at_reset_matches_qemu_text() {
    need_kvm!();
    let vm = hw::kvm::Vm::new().expect("vm");
    let vcpu = vm.create_vcpu(0, 1).expect("vcpu");
    let text = vcpu.get_state().expect("state").info_registers();
    let lines: Vec<&str> = text.lines().collect();
    // As printed by QEMU for a KVM vCPU at reset (EDX holds the host's CPU signature).
    let expected = [
        "ESI=00000000 EDI=00000000 EBP=00000000 ESP=00000000",
        "EIP=0000fff0 EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0",
        "ES =0000 00000000 0000ffff 00009300",
        "CS =f000 ffff0000 0000ffff 00009b00",
        "SS =0000 00000000 0000ffff 00009300",
        "DS =0000 00000000 0000ffff 00009300",
        "FS =0000 00000000 0000ffff 00009300",
        "GS =0000 00000000 0000ffff 00009300",
        "LDT=0000 00000000 0000ffff 00008200",
        "TR =0000 00000000 0000ffff 00008b00",
        "GDT=     00000000 0000ffff",
        "IDT=     00000000 0000ffff",
        "CR0=60000010 CR2=00000000 CR3=00000000 CR4=00000000",
        "DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000 ",
        "DR6=00000000ffff0ff0 DR7=0000000000000400",
        "EFER=0000000000000000",
        "FCW=037f FSW=0000 [ST=0] FTW=00 MXCSR=00001f80",
    ];
    assert_eq!(&lines[1..18], &expected[..]);
}

#[test]
fn kicks_reach_vcpus_spawned_from_a_thread_that_blocks_all_signals() {
    need_kvm!();
    let bios = assemble("count");
    let m = std::thread::spawn(move || {
        // SAFETY: filling and applying a signal mask for this thread only.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        }
        start(&bios, 16, 1, false, |_, _| {})
    })
    .join()
    .expect("spawner");
    assert!(matches!(m.next(30), Seen::Out { port: 0x3f8, .. }));
    let (tx, rx) = std::sync::mpsc::channel();
    let control = m.control.clone();
    std::thread::spawn(move || {
        control.pause_all();
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "pause_all never returned"
    );
    m.control.resume_all();
}

#[test]
fn serial_interrupt_reaches_the_guest_through_the_in_kernel_pic() {
    need_kvm!();
    let bios = assemble("serialirq");
    let m = start(&bios, 16, 1, true, |_, _| {});
    let (serial, exit) = m.until_port(0x501, 0x3f8, 30);
    assert_eq!(serial, b"I");
    assert_eq!(exit, vec![0x07]);
}
