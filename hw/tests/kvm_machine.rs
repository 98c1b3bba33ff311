//! The whole path an owner takes: `PcMachine::build` with KVM, an exit handler that
//! forwards to `PcDevices`, `spawn_vcpus`, and COM1 output reaching the serial sink.

mod common;

use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assemble, kvm_missing};
use hw::devices::rtc::RtcBase;
use hw::events::MachineEvent;
use hw::kvm::{spawn_vcpus, ExitHandler, VcpuAction, VcpuEvent};
use hw::machine::{Accel, KernelImages, MachineConfig, PcMachine};
use hw::pc::PcDevices;

struct Emulator {
    devices: PcDevices,
    events: Sender<MachineEvent>,
}

impl ExitHandler for Emulator {
    fn pio_read(&mut self, _cpu: usize, port: u16, data: &mut [u8]) {
        self.devices.pio_read(port, data);
    }
    fn pio_write(&mut self, _cpu: usize, port: u16, data: &[u8]) {
        self.devices.pio_write(port, data);
        for ev in self.devices.events.drain() {
            let _ = self.events.send(ev);
        }
    }
    fn mmio_read(&mut self, _cpu: usize, addr: u64, data: &mut [u8]) {
        self.devices.mmio_read(addr, data);
    }
    fn mmio_write(&mut self, _cpu: usize, addr: u64, data: &[u8]) {
        self.devices.mmio_write(addr, data);
    }
    fn vcpu_event(&mut self, _cpu: usize, _event: VcpuEvent) -> VcpuAction {
        VcpuAction::Park
    }
}

#[test]
fn firmware_output_reaches_the_serial_sink_through_pc_machine() {
    if let Some(why) = kvm_missing() {
        println!("not run: {why}");
        return;
    }
    let out = Arc::new(Mutex::new(Vec::new()));
    let o2 = out.clone();
    let cfg = MachineConfig {
        accel: Accel::Kvm,
        ram_size: 32 << 20,
        ram: vec![],
        max_ram_below_4g: None,
        cpus: 1,
        bios: Some(assemble("hello")),
        kernel: None,
        rtc_base: RtcBase::Utc,
        serial_sink: Some(Box::new(move |b| {
            o2.lock().expect("sink").extend_from_slice(b)
        })),
    };
    let mut m = PcMachine::build(cfg).expect("machine");
    m.devices.add_debug_exit(0x501, 2).expect("debug exit");
    let vcpus = std::mem::take(&mut m.vcpus);
    let (tx, rx) = channel();
    let emu = Arc::new(Mutex::new(Emulator {
        devices: m.devices,
        events: tx,
    }));
    let control = spawn_vcpus(vcpus, emu, false).expect("spawn");
    let ev = rx.recv_timeout(Duration::from_secs(30)).expect("exit");
    control.quit();
    assert_eq!(ev, MachineEvent::DebugExit { code: 0x43 });
    assert_eq!(*out.lock().expect("sink"), b"hello\n");
}

#[test]
fn direct_kernel_boot_runs_again_after_system_reset() {
    if let Some(why) = kvm_missing() {
        println!("not run: {why}");
        return;
    }
    let code = assemble("linux64");
    let mut pm = vec![0xf4u8; 0x200];
    pm.extend_from_slice(&code);
    let cfg = MachineConfig {
        accel: Accel::Kvm,
        ram_size: 64 << 20,
        ram: vec![],
        max_ram_below_4g: None,
        cpus: 2,
        bios: None,
        kernel: Some(KernelImages {
            kernel: common::bzimage(&pm, true),
            initrd: None,
            cmdline: "console=ttyS0".into(),
        }),
        rtc_base: RtcBase::Utc,
        serial_sink: Some(Box::new(|_| {})),
    };
    let mut m = PcMachine::build(cfg).expect("machine");
    m.devices.add_debug_exit(0x501, 2).expect("debug exit");
    let vcpus = std::mem::take(&mut m.vcpus);
    let (tx, rx) = channel();
    struct Owner {
        machine: PcMachine,
        events: Sender<MachineEvent>,
    }
    impl ExitHandler for Owner {
        fn pio_read(&mut self, _cpu: usize, port: u16, data: &mut [u8]) {
            self.machine.devices.pio_read(port, data);
        }
        fn pio_write(&mut self, _cpu: usize, port: u16, data: &[u8]) {
            self.machine.devices.pio_write(port, data);
            for ev in self.machine.devices.events.drain() {
                let _ = self.events.send(ev);
            }
        }
        fn mmio_read(&mut self, _cpu: usize, addr: u64, data: &mut [u8]) {
            self.machine.devices.mmio_read(addr, data);
        }
        fn mmio_write(&mut self, _cpu: usize, addr: u64, data: &[u8]) {
            self.machine.devices.mmio_write(addr, data);
        }
        fn vcpu_event(&mut self, _cpu: usize, _event: VcpuEvent) -> VcpuAction {
            VcpuAction::Park
        }
    }
    let owner = Arc::new(Mutex::new(Owner {
        machine: m,
        events: tx,
    }));
    let control = spawn_vcpus(vcpus, owner.clone(), false).expect("spawn");
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("first boot");
    {
        let o = owner.lock().expect("bql");
        control.pause_all();
        o.machine.reset_devices().expect("reset devices");
        for i in 0..control.count() {
            control
                .post(i, o.machine.vcpu_reset_job(i).expect("job"))
                .expect("post");
        }
        control.resume_all();
    }
    let second = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("second boot");
    control.quit();
    assert_eq!(first, MachineEvent::DebugExit { code: 0xc9 });
    assert_eq!(second, first);
}
