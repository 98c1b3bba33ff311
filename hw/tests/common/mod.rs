//! Shared pieces of the KVM integration tests: availability check, firmware assembly,
//! and a small machine with a recording exit handler.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hw::kvm::{spawn_vcpus, ExitHandler, Vcpu, VcpuAction, VcpuControl, VcpuEvent, Vm};
use hw::memory::{GuestMemory, PcLayout, RamSpec};

/// `Some(reason)` when /dev/kvm cannot be used (the test then prints `not run`).
pub fn kvm_missing() -> Option<String> {
    hw::kvm::kvm_available().err()
}

/// Assembles `tests/firmware/<name>.S` into a flat binary with GNU as + objcopy.
pub fn assemble(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/firmware");
    let out = std::env::temp_dir().join(format!("hw-fw-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&out).expect("temp dir");
    let obj = out.join(format!("{name}.o"));
    let bin = out.join(format!("{name}.bin"));
    let st = Command::new("as")
        .args(["--32", "-o"])
        .arg(&obj)
        .arg(dir.join(format!("{name}.S")))
        .status()
        .expect("run as");
    assert!(st.success(), "as failed for {name}");
    let st = Command::new("objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&obj)
        .arg(&bin)
        .status()
        .expect("run objcopy");
    assert!(st.success(), "objcopy failed for {name}");
    let data = std::fs::read(&bin).expect("read firmware");
    let _ = std::fs::remove_dir_all(&out);
    data
}

/// What the recording handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Out {
        cpu: usize,
        port: u16,
        data: Vec<u8>,
    },
    Event {
        cpu: usize,
        event: VcpuEvent,
    },
}

/// Records every port write and exit event; reads return what `inputs` says.
pub struct Recorder {
    pub tx: Sender<Seen>,
    pub mem: Arc<GuestMemory>,
    /// Optional device dispatch for tests that use real devices.
    pub pio: Option<hw::bus::Bus>,
}

impl ExitHandler for Recorder {
    fn pio_read(&mut self, _cpu: usize, port: u16, data: &mut [u8]) {
        match &self.pio {
            Some(bus) => {
                bus.read(port as u64, data);
            }
            None => data.fill(0xff),
        }
    }
    fn pio_write(&mut self, cpu: usize, port: u16, data: &[u8]) {
        if let Some(bus) = &self.pio {
            bus.write(port as u64, data);
        }
        let _ = self.tx.send(Seen::Out {
            cpu,
            port,
            data: data.to_vec(),
        });
    }
    fn mmio_read(&mut self, _cpu: usize, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&mut self, _cpu: usize, _addr: u64, _data: &[u8]) {}
    fn vcpu_event(&mut self, cpu: usize, event: VcpuEvent) -> VcpuAction {
        let _ = self.tx.send(Seen::Event { cpu, event });
        VcpuAction::Park
    }
}

pub struct TestMachine {
    pub vm: Arc<Vm>,
    pub mem: Arc<GuestMemory>,
    pub control: VcpuControl,
    pub handler: Arc<Mutex<Recorder>>,
    pub rx: Receiver<Seen>,
}

/// A pc machine with `ram_mb` of RAM, `bios` at the top of 4 GiB, `cpus` vCPUs.
/// `setup` may change the vCPUs (loaders) before the threads start.
pub fn start(
    bios: &[u8],
    ram_mb: u64,
    cpus: usize,
    pio: Option<hw::bus::Bus>,
    setup: impl FnOnce(&GuestMemory, &mut [Vcpu]),
) -> TestMachine {
    let size = ram_mb << 20;
    let mut mem =
        GuestMemory::new_pc(PcLayout::pc(size, None), &[RamSpec::anonymous(size)]).expect("ram");
    mem.add_bios(bios).expect("bios");
    let mem = Arc::new(mem);
    let vm = Arc::new(Vm::new().expect("vm"));
    vm.map_memory(&mem).expect("map");
    let mut vcpus: Vec<Vcpu> = (0..cpus)
        .map(|i| vm.create_vcpu(i, cpus).expect("vcpu"))
        .collect();
    setup(&mem, &mut vcpus);
    let (tx, rx) = channel();
    let handler = Arc::new(Mutex::new(Recorder {
        tx,
        mem: mem.clone(),
        pio,
    }));
    let control = spawn_vcpus(vcpus, handler.clone(), false).expect("spawn");
    TestMachine {
        vm,
        mem,
        control,
        handler,
        rx,
    }
}

impl TestMachine {
    /// Next record, or panic after `secs`.
    pub fn next(&self, secs: u64) -> Seen {
        self.rx
            .recv_timeout(Duration::from_secs(secs))
            .expect("guest did not get there in time")
    }

    /// Collects port writes until one to `port`; returns bytes written to `collect`.
    pub fn until_port(&self, port: u16, collect: u16, secs: u64) -> (Vec<u8>, Vec<u8>) {
        let mut got = Vec::new();
        loop {
            match self.next(secs) {
                Seen::Out { port: p, data, .. } if p == port => return (got, data),
                Seen::Out { port: p, data, .. } if p == collect => got.extend(data),
                Seen::Out { .. } => {}
                Seen::Event { cpu, event } => panic!("unexpected event on cpu {cpu}: {event:?}"),
            }
        }
    }
}

impl Drop for TestMachine {
    fn drop(&mut self) {
        self.control.quit();
    }
}
