//! What vCPU threads call under the big lock: device accesses and the
//! exits that change the run state (triple fault, KVM internal errors).

use hw::kvm::{ExitHandler, VcpuAction, VcpuEvent};

use crate::emulator::Emulator;

impl ExitHandler for Emulator {
    fn pio_read(&mut self, _cpu: usize, port: u16, data: &mut [u8]) {
        self.machine.pio_read(port, data);
        self.flush_machine_output();
    }

    fn pio_write(&mut self, _cpu: usize, port: u16, data: &[u8]) {
        self.machine.pio_write(port, data);
        self.flush_machine_output();
    }

    fn mmio_read(&mut self, _cpu: usize, addr: u64, data: &mut [u8]) {
        self.machine.mmio_read(addr, data);
    }

    fn mmio_write(&mut self, _cpu: usize, addr: u64, data: &[u8]) {
        self.machine.mmio_write(addr, data);
        self.flush_machine_output();
    }

    fn vcpu_event(&mut self, cpu: usize, event: VcpuEvent) -> VcpuAction {
        match event {
            // With the in-kernel LAPIC HLT stays in the kernel; if it comes
            // out anyway, running again is what the guest expects.
            VcpuEvent::Hlt => return VcpuAction::Continue,
            // A triple fault resets the machine (or ends it with -no-reboot).
            VcpuEvent::Shutdown => self.request_reset(),
            VcpuEvent::InternalError { suberror, data } => {
                eprintln!("KVM internal error. Suberror: {suberror}");
                for (i, d) in data.iter().enumerate() {
                    eprintln!("extra data[{i}]: 0x{d:016x}");
                }
                self.requests.internal_error = true;
            }
            VcpuEvent::FailEntry { reason } => {
                eprintln!("KVM: entry failed, hardware error 0x{reason:x}");
                self.requests.internal_error = true;
            }
            // KVM_SYSTEM_EVENT_SHUTDOWN and _RESET (PSCI-style requests).
            VcpuEvent::SystemEvent { kind: 1, .. } => self.requests.shutdown = true,
            VcpuEvent::SystemEvent { kind: 2, .. } => self.request_reset(),
            VcpuEvent::SystemEvent { kind, .. } => {
                eprintln!("KVM: unhandled system event {kind} on CPU {cpu}");
                self.requests.internal_error = true;
            }
            VcpuEvent::Other { exit_reason } => {
                eprintln!("KVM: unhandled exit {exit_reason} on CPU {cpu}");
                self.requests.internal_error = true;
            }
            VcpuEvent::RunError { errno } => {
                eprintln!(
                    "error: kvm run failed {}",
                    std::io::Error::from_raw_os_error(errno)
                );
                self.requests.internal_error = true;
            }
        }
        self.wake_main_loop();
        VcpuAction::Park
    }
}
