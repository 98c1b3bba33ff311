//! Building the ACPI tables into guest memory.

use super::aml;
use crate::devices::acpi_pm::{GPE0_BASE, GPE0_LEN, PM_BASE, SCI_IRQ};
use crate::error::{HwError, Result};
use crate::memory::GuestMemory;

/// Where the tables go for a firmware-less boot: the BIOS area Linux scans for the RSDP.
pub const ACPI_TABLES_BASE: u64 = 0xe_0000;
/// Room reserved for them (reported as reserved in e820).
pub const ACPI_TABLES_SIZE: u64 = 0x1_0000;

const OEM_ID: &[u8; 6] = b"BOCHS ";
const CREATOR: &[u8; 4] = b"BXPC";
const IOAPIC_ADDR: u32 = 0xfec0_0000;
const LAPIC_ADDR: u32 = 0xfee0_0000;

/// What the tables describe.
#[derive(Debug, Clone)]
pub struct AcpiConfig {
    pub cpus: u32,
}

fn checksum(data: &[u8]) -> u8 {
    0u8.wrapping_sub(data.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A table with the standard 36-byte header; `body` follows it.
fn table(sig: &[u8; 4], revision: u8, oem_table: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let len = 36 + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(sig);
    t.extend_from_slice(&(len as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(oem_table);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

fn fadt(facs: u32, dsdt: u32) -> Vec<u8> {
    let mut b = vec![0u8; 116 - 36];
    let put32 = |b: &mut Vec<u8>, off: usize, v: u32| {
        b[off - 36..off - 32].copy_from_slice(&v.to_le_bytes())
    };
    put32(&mut b, 36, facs);
    put32(&mut b, 40, dsdt);
    b[44 - 36] = 1; // INT_MODEL: multiple APIC
    b[46 - 36..48 - 36].copy_from_slice(&(SCI_IRQ as u16).to_le_bytes());
    // SMI_CMD stays 0: no mode switch, the PM block starts in ACPI mode.
    put32(&mut b, 56, PM_BASE as u32); // PM1a_EVT_BLK
    put32(&mut b, 64, PM_BASE as u32 + 4); // PM1a_CNT_BLK
    put32(&mut b, 76, PM_BASE as u32 + 8); // PM_TMR_BLK
    put32(&mut b, 80, GPE0_BASE as u32); // GPE0_BLK
    b[88 - 36] = 4; // PM1_EVT_LEN
    b[89 - 36] = 2; // PM1_CNT_LEN
    b[91 - 36] = 4; // PM_TMR_LEN
    b[92 - 36] = GPE0_LEN as u8;
    b[96 - 36..98 - 36].copy_from_slice(&0x0fffu16.to_le_bytes()); // no C2
    b[98 - 36..100 - 36].copy_from_slice(&0x0fffu16.to_le_bytes()); // no C3
    b[108 - 36] = 0x32; // CENTURY register in CMOS
                        // WBINVD, PROC_C1, no fixed sleep button, RTC_S4; fixed power button present.
    put32(&mut b, 112, 0x1 | 0x4 | 0x20 | 0x80);
    table(b"FACP", 1, b"FACP", &b)
}

fn facs() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f
}

fn dsdt() -> Vec<u8> {
    let mut body = Vec::new();
    // Sleep states as PIIX4 decodes SLP_TYP: 1 = S3, 2 = S4, 0 = soft off.
    body.extend(aml::name("\\_S3", &aml::package(&[1, 1, 0, 0])));
    body.extend(aml::name("\\_S4", &aml::package(&[2, 2, 0, 0])));
    body.extend(aml::name("\\_S5", &aml::package(&[0, 0, 0, 0])));
    let mut pci = aml::name("_HID", &aml::eisa_id("PNP0A03"));
    pci.extend(aml::name("_ADR", &aml::integer(0)));
    pci.extend(aml::name("_UID", &aml::integer(1)));
    body.extend(aml::scope("\\_SB", &aml::device("PCI0", &pci)));
    table(b"DSDT", 1, b"DSDT", &body)
}

fn madt(cpus: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: dual 8259s present
    for i in 0..cpus.min(255) {
        b.extend_from_slice(&[0, 8, i as u8, i as u8]);
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    b.extend_from_slice(&[1, 12, 0, 0]);
    b.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // ISA IRQ 0 is wired to GSI 2; the PCI-routed IRQs are level, active high.
    let mut iso = |src: u8, gsi: u32, flags: u16| {
        b.extend_from_slice(&[2, 10, 0, src]);
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
    };
    iso(0, 2, 0);
    for irq in [5u8, 9, 10, 11] {
        iso(irq, irq as u32, 0x000d);
    }
    // LINT1 of every CPU is the NMI input.
    b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    table(b"APIC", 1, b"APIC", &b)
}

fn align(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Writes the tables at `base` (16-byte aligned, at most `ACPI_TABLES_SIZE` bytes)
/// and returns the RSDP's address.
pub fn build_tables(mem: &GuestMemory, cfg: &AcpiConfig, base: u64) -> Result<u64> {
    let rsdp_addr = align(base, 16);
    let mut cur = rsdp_addr + 36;
    let mut place = |len: usize, a: u64| {
        let at = align(cur, a);
        cur = at + len as u64;
        at
    };
    let facs_t = facs();
    let facs_at = place(facs_t.len(), 64);
    let dsdt_t = dsdt();
    let dsdt_at = place(dsdt_t.len(), 16);
    let fadt_t = fadt(facs_at as u32, dsdt_at as u32);
    let fadt_at = place(fadt_t.len(), 16);
    let madt_t = madt(cfg.cpus);
    let madt_at = place(madt_t.len(), 16);
    let entries = [fadt_at, madt_at];
    let rsdt_body: Vec<u8> = entries
        .iter()
        .flat_map(|a| (*a as u32).to_le_bytes())
        .collect();
    let rsdt_t = table(b"RSDT", 1, b"RSDT", &rsdt_body);
    let rsdt_at = place(rsdt_t.len(), 16);
    let xsdt_body: Vec<u8> = entries.iter().flat_map(|a| a.to_le_bytes()).collect();
    let xsdt_t = table(b"XSDT", 1, b"XSDT", &xsdt_body);
    let xsdt_at = place(xsdt_t.len(), 16);
    if cur - base > ACPI_TABLES_SIZE || xsdt_at > u32::MAX as u64 {
        return Err(HwError::Invalid {
            what: "ACPI tables do not fit".into(),
        });
    }
    let mut rsdp = Vec::with_capacity(36);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0);
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2);
    rsdp.extend_from_slice(&(rsdt_at as u32).to_le_bytes());
    rsdp.extend_from_slice(&36u32.to_le_bytes());
    rsdp.extend_from_slice(&xsdt_at.to_le_bytes());
    rsdp.extend_from_slice(&[0, 0, 0, 0]);
    rsdp[8] = checksum(&rsdp[..20]);
    rsdp[32] = checksum(&rsdp);
    for (at, t) in [
        (facs_at, &facs_t),
        (dsdt_at, &dsdt_t),
        (fadt_at, &fadt_t),
        (madt_at, &madt_t),
        (rsdt_at, &rsdt_t),
        (xsdt_at, &xsdt_t),
        (rsdp_addr, &rsdp),
    ] {
        mem.write(at, t)?;
    }
    Ok(rsdp_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(mem: &GuestMemory, at: u64, len: usize) -> u8 {
        let mut b = vec![0u8; len];
        mem.read(at, &mut b).expect("read");
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn find_table(mem: &GuestMemory, rsdp: u64, sig: &[u8; 4]) -> u64 {
        let xsdt = mem.read_u64(rsdp + 24).expect("xsdt");
        let len = mem.read_u32(xsdt + 4).expect("len") as u64;
        for i in 0..(len - 36) / 8 {
            let at = mem.read_u64(xsdt + 36 + i * 8).expect("entry");
            let mut s = [0u8; 4];
            mem.read(at, &mut s).expect("sig");
            if &s == sig {
                return at;
            }
        }
        panic!("no {sig:?}");
    }

    #[test]
    fn rsdp_and_every_table_checksum_to_zero() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let rsdp = build_tables(&mem, &AcpiConfig { cpus: 2 }, ACPI_TABLES_BASE).expect("tables");
        let mut sig = [0u8; 8];
        mem.read(rsdp, &mut sig).expect("sig");
        assert_eq!(&sig, b"RSD PTR ");
        assert_eq!(sum(&mem, rsdp, 20), 0);
        assert_eq!(sum(&mem, rsdp, 36), 0);
        let rsdt = mem.read_u32(rsdp + 16).expect("rsdt") as u64;
        let xsdt = mem.read_u64(rsdp + 24).expect("xsdt");
        for t in [
            rsdt,
            xsdt,
            find_table(&mem, rsdp, b"FACP"),
            find_table(&mem, rsdp, b"APIC"),
        ] {
            let len = mem.read_u32(t + 4).expect("len") as usize;
            assert_eq!(sum(&mem, t, len), 0);
        }
    }

    #[test]
    fn fadt_points_at_the_pm_block_and_dsdt() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let rsdp = build_tables(&mem, &AcpiConfig { cpus: 1 }, ACPI_TABLES_BASE).expect("tables");
        let fadt = find_table(&mem, rsdp, b"FACP");
        assert_eq!(mem.read_u32(fadt + 56).expect("pm1a"), 0x600);
        assert_eq!(mem.read_u32(fadt + 64).expect("pm1a cnt"), 0x604);
        assert_eq!(mem.read_u16(fadt + 46).expect("sci"), 9);
        let dsdt = mem.read_u32(fadt + 40).expect("dsdt") as u64;
        let len = mem.read_u32(dsdt + 4).expect("len") as usize;
        assert_eq!(sum(&mem, dsdt, len), 0);
        let mut body = vec![0u8; len];
        mem.read(dsdt, &mut body).expect("body");
        let s5 = [
            0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0,
        ];
        assert!(body.windows(s5.len()).any(|w| w == s5));
    }

    #[test]
    fn madt_lists_one_lapic_per_cpu_and_the_ioapic() {
        let mem = GuestMemory::new_flat(1 << 20).expect("ram");
        let rsdp = build_tables(&mem, &AcpiConfig { cpus: 3 }, ACPI_TABLES_BASE).expect("tables");
        let madt = find_table(&mem, rsdp, b"APIC");
        let len = mem.read_u32(madt + 4).expect("len") as u64;
        let mut at = madt + 44;
        let mut lapics = 0;
        let mut ioapics = 0;
        while at < madt + len {
            let t = mem.read_u8(at).expect("type");
            let l = mem.read_u8(at + 1).expect("len") as u64;
            match t {
                0 => lapics += 1,
                1 => ioapics += 1,
                _ => {}
            }
            at += l;
        }
        assert_eq!((lapics, ioapics), (3, 1));
    }
}
