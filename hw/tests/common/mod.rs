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
use hw::pc::{PcConfig, PcDevices};

/// `Some(reason)` when /dev/kvm cannot be used (the test then prints `not run`).
pub fn kvm_missing() -> Option<String> {
    hw::kvm::kvm_available().err()
}

/// Assembles `tests/firmware/<name>.S` into a flat binary with GNU as + ld.
pub fn assemble(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/firmware");
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out = std::env::temp_dir().join(format!("hw-fw-{}-{}-{}", std::process::id(), seq, name));
    std::fs::create_dir_all(&out).expect("temp dir");
    let obj = out.join(format!("{name}.o"));
    let bin = out.join(format!("{name}.bin"));
    let st = Command::new("as")
        .args(["--64", "-o"])
        .arg(&obj)
        .arg(dir.join(format!("{name}.S")))
        .status()
        .expect("run as");
    assert!(st.success(), "as failed for {name}");
    let st = Command::new("ld")
        .args([
            "-m",
            "elf_x86_64",
            "-Ttext=0",
            "-e",
            "0",
            "--oformat",
            "binary",
            "-o",
        ])
        .arg(&bin)
        .arg(&obj)
        .status()
        .expect("run ld");
    assert!(st.success(), "ld failed for {name}");
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
    Machine(hw::events::MachineEvent),
}

/// Records every port write and exit event; optionally dispatches to real PC devices.
pub struct Recorder {
    pub tx: Sender<Seen>,
    pub mem: Arc<GuestMemory>,
    pub pc: Option<PcDevices>,
}

impl Recorder {
    fn forward_machine_events(&self) {
        if let Some(pc) = &self.pc {
            for ev in pc.events.drain() {
                let _ = self.tx.send(Seen::Machine(ev));
            }
        }
    }
}

impl ExitHandler for Recorder {
    fn pio_read(&mut self, _cpu: usize, port: u16, data: &mut [u8]) {
        match &self.pc {
            Some(pc) => pc.pio_read(port, data),
            None => data.fill(0xff),
        }
        self.forward_machine_events();
    }
    fn pio_write(&mut self, cpu: usize, port: u16, data: &[u8]) {
        if let Some(pc) = &self.pc {
            pc.pio_write(port, data);
        }
        let _ = self.tx.send(Seen::Out {
            cpu,
            port,
            data: data.to_vec(),
        });
        self.forward_machine_events();
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

/// A pc machine with `ram_mb` of RAM, `bios` at the top of 4 GiB, `cpus` vCPUs, and
/// (with `with_pc`) the standard devices plus isa-debug-exit at 0x501. `setup` may
/// change memory and vCPUs (loaders) before the threads start.
pub fn start(
    bios: &[u8],
    ram_mb: u64,
    cpus: usize,
    with_pc: bool,
    setup: impl FnOnce(&GuestMemory, &mut [Vcpu]),
) -> TestMachine {
    let size = ram_mb << 20;
    let mut mem =
        GuestMemory::new_pc(PcLayout::pc(size, None), &[RamSpec::anonymous(size)]).expect("ram");
    if !bios.is_empty() {
        mem.add_bios(bios).expect("bios");
    }
    let mem = Arc::new(mem);
    let vm = Arc::new(Vm::new().expect("vm"));
    vm.map_memory(&mem).expect("map");
    let mut vcpus: Vec<Vcpu> = (0..cpus)
        .map(|i| vm.create_vcpu(i, cpus).expect("vcpu"))
        .collect();
    setup(&mem, &mut vcpus);
    let (tx, rx) = channel();
    let pc = with_pc.then(|| {
        let cfg = PcConfig {
            rtc_base: hw::devices::rtc::RtcBase::Utc,
            acpi_enabled_at_reset: false,
            layout: mem.layout(),
            cpus: cpus as u32,
        };
        let mut pc =
            PcDevices::new(vm.clone(), hw::events::EventQueue::new(), cfg).expect("pc devices");
        pc.add_debug_exit(0x501, 2).expect("debug exit");
        let com1 = hw::devices::serial::COM1_BASE;
        pc.add_serial(com1, hw::devices::serial::COM1_IRQ, Box::new(|_| {}))
            .expect("COM1");
        pc
    });
    let handler = Arc::new(Mutex::new(Recorder {
        tx,
        mem: mem.clone(),
        pc,
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

    /// Collects port writes until one to `port`; returns bytes written to `collect`
    /// and the data of that last write.
    pub fn until_port(&self, port: u16, collect: u16, secs: u64) -> (Vec<u8>, Vec<u8>) {
        let mut got = Vec::new();
        loop {
            match self.next(secs) {
                Seen::Out { port: p, data, .. } if p == port => return (got, data),
                Seen::Out { port: p, data, .. } if p == collect => got.extend(data),
                Seen::Out { .. } | Seen::Machine(_) => {}
                Seen::Event { cpu, event } => panic!("unexpected event on cpu {cpu}: {event:?}"),
            }
        }
    }

    /// System reset as the owner does it: park, reset devices and vCPUs, go on.
    pub fn system_reset(&self) {
        self.control.pause_all();
        if let Some(pc) = &self.handler.lock().expect("bql").pc {
            pc.reset();
        }
        self.vm.reset_irqchips().expect("irqchip reset");
        for i in 0..self.control.count() {
            self.control
                .post(i, |v| v.reset().expect("vcpu reset"))
                .expect("post");
        }
        self.control.resume_all();
    }
}

impl Drop for TestMachine {
    fn drop(&mut self) {
        self.control.quit();
    }
}

/// A bzImage header (protocol 2.15, 4 setup sectors) followed by `pm`.
pub fn bzimage(pm: &[u8], kernel64: bool) -> Vec<u8> {
    let mut k = vec![0u8; 5 * 512];
    k[0x1f1] = 4;
    k[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    k[0x200] = 0xeb;
    k[0x201] = 0x66;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    k[0x211] = 0x01;
    k[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    k[0x236..0x238].copy_from_slice(&u16::from(kernel64).to_le_bytes());
    k[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes());
    k.extend_from_slice(pm);
    k
}
