//! What the command line asked for, checked and with defaults applied.

use super::opts::QemuOpts;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Qtest,
    Tcg,
    Xen,
}

impl Accel {
    /// The accelerator as QEMU's start-up messages name it (its class's
    /// name: "failed to initialize KVM", "Back to QTest accelerator.").
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Qtest => "QTest",
            Accel::Tcg => "tcg",
            Accel::Xen => "Xen",
        }
    }

    pub fn from_name(s: &str) -> Option<Accel> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "qtest" => Some(Accel::Qtest),
            "tcg" => Some(Accel::Tcg),
            "xen" => Some(Accel::Xen),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    pub size: u64,
    pub slots: u64,
    pub maxmem: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmpConfig {
    pub cpus: u32,
    pub max_cpus: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    Control,
    Readline,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorConfig {
    /// The option that asked for it, named in start-up errors.
    pub loc: String,
    pub chardev: String,
    pub mode: MonitorMode,
    pub pretty: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Machine type name as given (`none`, `pc`, `pc-i440fx-2.8`, ...).
    pub machine: Option<String>,
    pub machine_opts: QemuOpts,
    /// Accelerators to try in order (`kvm:qtest`).
    pub accel: Vec<String>,
    pub memory: Option<MemoryConfig>,
    pub smp: Option<SmpConfig>,
    pub name: Option<String>,
    pub process_name: Option<String>,
    pub debug_threads: bool,
    pub uuid: Option<[u8; 16]>,
    pub start_stopped: bool,
    pub chardevs: Vec<QemuOpts>,
    /// For each chardev, the option that created it (`-qmp unix:...`), which
    /// QEMU names in its start-up errors.
    pub chardev_locs: Vec<String>,
    pub monitors: Vec<MonitorConfig>,
    pub serials: Vec<String>,
    pub display_none: bool,
    pub nographic: bool,
    pub nodefaults: bool,
    pub no_shutdown: bool,
    pub no_reboot: bool,
    pub daemonize: bool,
    pub pidfile: Option<String>,
    pub objects: Vec<QemuOpts>,
    pub qtest: Option<String>,
    pub qtest_log: Option<String>,
    pub incoming: Option<String>,
    pub rtc: Option<QemuOpts>,
    /// `-add-fd` descriptors to put into fd sets at start-up.
    /// With the option text QEMU names in its errors.
    pub add_fds: Vec<(String, QemuOpts)>,
    /// Options accepted on the command line for a subsystem that the
    /// machine layer consumes (`-device loader`, `-kernel`...): name and
    /// argument, in order.
    pub machine_args: Vec<(String, String)>,
}
