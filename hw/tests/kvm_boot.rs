//! Direct kernel boots under KVM with synthetic kernels: the entry state the loaders
//! compute must be accepted by KVM and reach the kernel's first instructions with the
//! registers the protocols promise.

mod common;

use common::{assemble, bzimage, kvm_missing, start, Seen};
use hw::loader::linux::{load_linux, BootEntry, LinuxBoot};
use hw::loader::pvh::{load_pvh, PvhBoot};

macro_rules! need_kvm {
    () => {
        if let Some(why) = kvm_missing() {
            println!("not run: {why}");
            return;
        }
    };
}

fn ports(m: &common::TestMachine) -> Vec<(u16, u8)> {
    let mut v = Vec::new();
    loop {
        match m.next(30) {
            Seen::Out { port, data, .. } => {
                v.push((port, data[0]));
                if port == 0x501 {
                    return v;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn bzimage_64_bit_entry_runs_with_rsi_at_zero_page_and_boot_cs() {
    need_kvm!();
    let code = assemble("linux64");
    let mut pm = vec![0xf4u8; 0x200];
    pm.extend_from_slice(&code);
    let kernel = bzimage(&pm, true);
    let m = start(&[], 64, 1, false, |mem, vcpus| {
        let boot = LinuxBoot {
            kernel: &kernel,
            initrd: None,
            cmdline: "x",
            entry: BootEntry::Auto,
            rsdp: None,
        };
        let l = load_linux(mem, &boot).expect("load");
        vcpus[0].apply_entry(&l.entry).expect("entry");
    });
    assert_eq!(ports(&m), vec![(0x80, 0xff), (0x81, 0x10), (0x501, 0x64)]);
}

#[test]
fn bzimage_32_bit_entry_runs_with_esi_at_zero_page_and_boot_cs() {
    need_kvm!();
    let code = assemble("linux32");
    let kernel = bzimage(&code, false);
    let m = start(&[], 64, 1, false, |mem, vcpus| {
        let boot = LinuxBoot {
            kernel: &kernel,
            initrd: None,
            cmdline: "",
            entry: BootEntry::Auto,
            rsdp: None,
        };
        let l = load_linux(mem, &boot).expect("load");
        vcpus[0].apply_entry(&l.entry).expect("entry");
    });
    assert_eq!(ports(&m), vec![(0x80, 0xff), (0x81, 0x10), (0x501, 0x32)]);
}

#[test]
fn pvh_entry_runs_with_ebx_at_start_info() {
    need_kvm!();
    let code = assemble("pvh32");
    let kernel = pvh_elf(0x20_0000, &code);
    let m = start(&[], 64, 1, false, |mem, vcpus| {
        let e = load_pvh(
            mem,
            &PvhBoot {
                kernel: &kernel,
                initrd: None,
                cmdline: "",
                rsdp: None,
            },
        )
        .expect("load");
        vcpus[0].apply_entry(&e).expect("entry");
    });
    assert_eq!(ports(&m), vec![(0x80, 0x78), (0x81, 0x10), (0x501, 0x48)]);
}

/// An ELF64 with `code` loaded at `paddr` and a PVH note pointing at it.
fn pvh_elf(paddr: u64, code: &[u8]) -> Vec<u8> {
    let data_off = 64 + 2 * 56;
    let mut f = vec![0u8; data_off];
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&4u32.to_le_bytes());
    note.extend_from_slice(&18u32.to_le_bytes());
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&(paddr as u32).to_le_bytes());
    let mut ph = |i: usize, t: u32, off: u64, pa: u64, sz: u64| {
        let at = 64 + i * 56;
        f[at..at + 4].copy_from_slice(&t.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&pa.to_le_bytes());
        f[at + 24..at + 32].copy_from_slice(&pa.to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&sz.to_le_bytes());
        f[at + 40..at + 48].copy_from_slice(&sz.to_le_bytes());
    };
    ph(0, 1, data_off as u64, paddr, code.len() as u64);
    ph(1, 4, (data_off + code.len()) as u64, 0, note.len() as u64);
    f.extend_from_slice(code);
    f.extend(note);
    f
}
