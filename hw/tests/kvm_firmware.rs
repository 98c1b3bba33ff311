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
    std::thread::sleep(Duration::from_millis(200));
    m.control.pause_all();
    let a = m.mem.read_u32(0x6000).expect("ram");
    std::thread::sleep(Duration::from_millis(200));
    let b = m.mem.read_u32(0x6000).expect("ram");
    let state = m
        .control
        .run_on(0, |v| v.get_state())
        .expect("run_on")
        .expect("state");
    m.control.resume_all();
    std::thread::sleep(Duration::from_millis(200));
    let c = m.mem.read_u32(0x6000).expect("ram");
    assert!(a > 0, "counter never ran");
    assert_eq!(a, b, "counted while paused");
    assert!(c > b, "did not count after resume");
    assert!(
        state.pc() >= 0xf0000 && state.pc() < 0x100000,
        "pc {:x}",
        state.pc()
    );
    assert!(m.control.info()[0].thread_id > 0);
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
    std::thread::sleep(Duration::from_millis(100));
    let before = m.mem.read_u32(0x6000).expect("ram");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        m.mem.read_u32(0x6000).expect("ram") > before,
        "vCPU did not go on after run_on"
    );
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
