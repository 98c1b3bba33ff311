//! End-to-end checks of the dump writers on synthetic guests: the files
//! are read back by our own parsers and by real tools (readelf, gdb,
//! makedumpfile). A check whose tool is missing prints `not run: ...`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::*;

const PAGE: usize = 4096;

/// Guest RAM held in vectors; `fail_from` makes reads at or above an
/// address fail, to provoke errors in the middle of a dump.
struct MemRam {
    blocks: Vec<(u64, Vec<u8>)>,
    fail_from: Option<u64>,
}

impl MemRam {
    fn write(&mut self, gpa: u64, bytes: &[u8]) {
        for (start, data) in &mut self.blocks {
            if gpa >= *start && gpa + bytes.len() as u64 <= *start + data.len() as u64 {
                let at = (gpa - *start) as usize;
                data[at..at + bytes.len()].copy_from_slice(bytes);
                return;
            }
        }
        panic!("test write outside RAM at {gpa:#x}");
    }

    fn write_u64(&mut self, gpa: u64, v: u64) {
        self.write(gpa, &v.to_le_bytes());
    }

    fn page(&self, gpa: u64) -> &[u8] {
        for (start, data) in &self.blocks {
            if gpa >= *start && gpa < *start + data.len() as u64 {
                let at = (gpa - *start) as usize;
                return &data[at..at + PAGE];
            }
        }
        panic!("no page at {gpa:#x}");
    }
}

impl GuestRam for MemRam {
    fn ranges(&self) -> Vec<RamRange> {
        self.blocks
            .iter()
            .map(|(gpa, d)| RamRange {
                gpa: *gpa,
                len: d.len() as u64,
            })
            .collect()
    }

    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> bool {
        if self.fail_from.is_some_and(|f| gpa + buf.len() as u64 > f) {
            return false;
        }
        for (start, data) in &self.blocks {
            let end = *start + data.len() as u64;
            if gpa >= *start && gpa + buf.len() as u64 <= end {
                let at = (gpa - *start) as usize;
                buf.copy_from_slice(&data[at..at + buf.len()]);
                return true;
            }
        }
        false
    }

    fn visit_phys(&self, gpa: u64, len: u64, f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        if self.fail_from.is_some_and(|fail| gpa + len > fail) {
            return false;
        }
        for (start, data) in &self.blocks {
            if gpa >= *start && gpa + len <= *start + data.len() as u64 {
                let at = (gpa - *start) as usize;
                return f(&data[at..at + len as usize]);
            }
        }
        false
    }
}

/// Fills a block with a mix of page kinds: zero pages, compressible text,
/// incompressible noise and pages of repeated words.
fn patterned(gpa: u64, len: usize) -> (u64, Vec<u8>) {
    let mut data = vec![0u8; len];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ gpa;
    for (i, page) in data.chunks_exact_mut(PAGE).enumerate() {
        let pfn = gpa / PAGE as u64 + i as u64;
        match pfn % 5 {
            0 => {}
            1 => {
                let text = format!("page {pfn:#x} of the synthetic guest; ");
                for (j, b) in page.iter_mut().enumerate() {
                    *b = text.as_bytes()[j % text.len()];
                }
            }
            2 => {
                for b in page.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
            _ => {
                for (j, w) in page.chunks_exact_mut(8).enumerate() {
                    w.copy_from_slice(&(pfn * 0x1_0000 + (j as u64 % 7)).to_le_bytes());
                }
            }
        }
    }
    (gpa, data)
}

/// 3 MiB at 0 and 1 MiB at 4 MiB, with a hole between.
fn synthetic_ram() -> MemRam {
    MemRam {
        blocks: vec![patterned(0, 3 << 20), patterned(4 << 20, 1 << 20)],
        fail_from: None,
    }
}

fn long_mode_cpu(index: u32) -> CpuState {
    let seg = |selector: u32, type_: u8, l: u8| Segment {
        selector,
        limit: 0xffff_ffff,
        flags: Segment::flags_from_kvm(type_, 1, 0, 1 - l, 1, l, 1, 0),
        base: 0,
    };
    CpuState {
        index,
        rax: 0x1111_0000 + u64::from(index),
        rbx: 0x2222,
        rcx: 0x3333,
        rdx: 0x4444,
        rsi: 0x5555,
        rdi: 0x6666,
        rsp: 0x7000 + u64::from(index) * 0x100,
        rbp: 0x8888,
        r8: 8,
        r9: 9,
        r10: 10,
        r11: 11,
        r12: 12,
        r13: 13,
        r14: 14,
        r15: 15,
        rip: 0xffff_ffff_8100_1000 + u64::from(index),
        rflags: 0x246,
        cs: seg(0x10, 0xb, 1),
        ds: seg(0x18, 0x3, 0),
        es: seg(0x18, 0x3, 0),
        fs: Segment {
            base: 0x7f00_0000_0000,
            ..seg(0, 0x3, 0)
        },
        gs: Segment {
            base: 0xffff_8880_0000_0000,
            ..seg(0, 0x3, 0)
        },
        ss: seg(0x18, 0x3, 0),
        ldt: Segment::default(),
        tr: seg(0x20, 0xb, 0),
        gdt: Segment {
            base: 0x1000,
            limit: 0x37,
            ..Default::default()
        },
        idt: Segment {
            base: 0x2000,
            limit: 0xfff,
            ..Default::default()
        },
        cr: [0x8005_0033, 0, 0, 0x100000, 0x20],
        efer: 0xd01,
    }
}

fn protected_mode_cpu(index: u32) -> CpuState {
    CpuState {
        index,
        rax: 0xaaaa_5555,
        rip: 0x7c00,
        rsp: 0x6000,
        rflags: 0x2,
        cr: [0x11, 0, 0, 0, 0],
        efer: 0,
        ..Default::default()
    }
}

fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("rqemu-dump-{}-{n}-{tag}", std::process::id()))
}

/// Removes the file when the test ends, pass or fail.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn run_dump(req: &DumpRequest, ram: Arc<dyn GuestRam>, cpus: &[CpuState], tag: &str) -> TempFile {
    let path = temp_path(tag);
    let file = File::create(&path).unwrap();
    let mut job = DumpJob::new(req, ram, cpus, file).unwrap();
    job.run().unwrap();
    TempFile(path)
}

fn elf_request(paging: bool) -> DumpRequest {
    DumpRequest {
        paging,
        ..Default::default()
    }
}

fn kdump_request(format: DumpFormat) -> DumpRequest {
    DumpRequest {
        format: Some(format),
        ..Default::default()
    }
}

fn tool_available(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---- a small ELF core reader ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

struct Core {
    class64: bool,
    machine: u16,
    phnum_field: u16,
    note: (u64, u64),
    loads: Vec<Load>,
}

fn le(b: &[u8], at: usize, n: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(&b[at..at + n]);
    u64::from_le_bytes(v)
}

fn parse_core(b: &[u8]) -> Core {
    assert_eq!(&b[..4], b"\x7fELF");
    let class64 = b[4] == 2;
    assert_eq!(le(b, 16, 2), 4, "ET_CORE");
    let machine = le(b, 18, 2) as u16;
    let (phoff, shoff, phnum_at) = if class64 {
        (le(b, 32, 8), le(b, 40, 8), 56)
    } else {
        (le(b, 28, 4), le(b, 32, 4), 44)
    };
    let phnum_field = le(b, phnum_at, 2) as u16;
    let phnum = if phnum_field == 0xffff {
        let info_at = if class64 { 44 } else { 28 };
        le(b, shoff as usize + info_at, 4)
    } else {
        u64::from(phnum_field)
    };
    let phent = if class64 { 56 } else { 32 };
    let mut note = (0, 0);
    let mut loads = Vec::new();
    for i in 0..phnum {
        let p = (phoff + i * phent) as usize;
        let kind = le(b, p, 4);
        let (offset, vaddr, paddr, filesz, memsz) = if class64 {
            (
                le(b, p + 8, 8),
                le(b, p + 16, 8),
                le(b, p + 24, 8),
                le(b, p + 32, 8),
                le(b, p + 40, 8),
            )
        } else {
            (
                le(b, p + 4, 4),
                le(b, p + 8, 4),
                le(b, p + 12, 4),
                le(b, p + 16, 4),
                le(b, p + 20, 4),
            )
        };
        if kind == 4 {
            note = (offset, filesz);
        } else {
            assert_eq!(kind, 1);
            loads.push(Load {
                offset,
                vaddr,
                paddr,
                filesz,
                memsz,
            });
        }
    }
    Core {
        class64,
        machine,
        phnum_field,
        note,
        loads,
    }
}

/// Every byte a PT_LOAD puts in the file equals guest RAM at its paddr.
fn assert_loads_match_ram(bytes: &[u8], core: &Core, ram: &MemRam) {
    for l in &core.loads {
        let mut expect = vec![0u8; l.filesz as usize];
        assert!(ram.read_phys(l.paddr, &mut expect), "{l:?}");
        let got = &bytes[l.offset as usize..(l.offset + l.filesz) as usize];
        assert!(got == expect.as_slice(), "contents of {l:?}");
    }
}

// ---- ELF ----

#[test]
fn elf_core_has_one_load_per_ram_block_holding_its_bytes() {
    let ram = Arc::new(synthetic_ram());
    let cpus = [long_mode_cpu(0), long_mode_cpu(1)];

    let out = run_dump(&elf_request(false), ram.clone(), &cpus, "elf");
    let bytes = fs::read(&out.0).unwrap();
    let core = parse_core(&bytes);

    assert!(core.class64);
    assert_eq!(core.machine, 62);
    let notes_len = 2 * (356 + 452);
    let memory_offset = 64 + 3 * 56 + notes_len;
    assert_eq!(core.note, (memory_offset - notes_len, notes_len));
    assert_eq!(
        core.loads,
        vec![
            Load {
                offset: memory_offset,
                vaddr: 0,
                paddr: 0,
                filesz: 3 << 20,
                memsz: 3 << 20
            },
            Load {
                offset: memory_offset + (3 << 20),
                vaddr: 0,
                paddr: 4 << 20,
                filesz: 1 << 20,
                memsz: 1 << 20
            },
        ]
    );
    assert_eq!(bytes.len() as u64, memory_offset + (4 << 20));
    assert_loads_match_ram(&bytes, &core, &ram);
}

#[test]
fn elf_core_is_read_by_readelf_without_complaint() {
    if !tool_available("readelf") {
        println!("not run: readelf is not installed");
        return;
    }
    let ram = Arc::new(synthetic_ram());
    let out = run_dump(
        &elf_request(false),
        ram,
        &[long_mode_cpu(0), long_mode_cpu(1)],
        "readelf",
    );

    let r = Command::new("readelf")
        .arg("-a")
        .arg(&out.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&r.stdout);
    let errs = String::from_utf8_lossy(&r.stderr);

    assert!(r.status.success(), "{errs}");
    assert!(errs.trim().is_empty(), "readelf complained: {errs}");
    assert!(text.contains("CORE (Core file)"), "{text}");
    assert!(text.contains("Advanced Micro Devices X86-64"), "{text}");
    assert_eq!(
        text.matches("NT_PRSTATUS (prstatus structure)").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("QEMU ").count(), 2, "{text}");
    assert_eq!(text.matches("  LOAD ").count(), 2, "{text}");
}

#[test]
fn gdb_reads_registers_of_the_first_vcpu_from_the_core() {
    if !tool_available("gdb") {
        println!("not run: gdb is not installed");
        return;
    }
    let ram = Arc::new(synthetic_ram());
    let cpus = [long_mode_cpu(0), long_mode_cpu(1)];
    let out = run_dump(&elf_request(false), ram, &cpus, "gdb");

    let r = Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "info registers"])
        .args(["-ex", "thread 2", "-ex", "info registers rip rax"])
        .arg("-c")
        .arg(&out.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&r.stdout);

    let values = |name: &str| -> Vec<u64> {
        text.lines()
            .filter(|l| l.split_whitespace().next() == Some(name))
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .collect()
    };
    assert_eq!(values("rip"), [cpus[0].rip, cpus[1].rip], "{text}");
    assert_eq!(values("rax"), [cpus[0].rax, cpus[1].rax], "{text}");
    assert_eq!(values("rsp"), [cpus[0].rsp], "{text}");
    assert_eq!(values("r15"), [15], "{text}");
    assert_eq!(values("eflags"), [0x246], "{text}");
    assert_eq!(values("cs"), [0x10], "{text}");
    assert_eq!(values("ss"), [0x18], "{text}");
}

#[test]
fn protected_mode_guest_gives_an_elf32_i386_core() {
    let ram = Arc::new(synthetic_ram());
    let out = run_dump(
        &elf_request(false),
        ram.clone(),
        &[protected_mode_cpu(0)],
        "elf32",
    );
    let bytes = fs::read(&out.0).unwrap();

    let core = parse_core(&bytes);

    assert!(!core.class64);
    assert_eq!(core.machine, 3);
    assert_eq!(core.note.1, 164 + 452);
    assert_eq!(core.loads.len(), 2);
    assert_loads_match_ram(&bytes, &core, &ram);
    if tool_available("readelf") {
        let r = Command::new("readelf")
            .arg("-a")
            .arg(&out.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(
            text.contains("ELF32") && text.contains("Intel 80386"),
            "{text}"
        );
        assert!(
            r.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&r.stderr)
        );
    } else {
        println!("not run: readelf is not installed");
    }
}

#[test]
fn begin_and_length_limit_the_core_to_the_range() {
    let ram = Arc::new(synthetic_ram());
    // From the middle of the first block into the second one.
    let req = DumpRequest {
        begin: Some(0x20_0000),
        length: Some(0x28_0000),
        ..Default::default()
    };
    let out = run_dump(&req, ram.clone(), &[long_mode_cpu(0)], "filter");
    let bytes = fs::read(&out.0).unwrap();

    let core = parse_core(&bytes);

    let memory_offset = 64 + 3 * 56 + 808;
    assert_eq!(
        core.loads,
        vec![
            Load {
                offset: memory_offset,
                vaddr: 0,
                paddr: 0x20_0000,
                filesz: 0x10_0000,
                memsz: 0x10_0000
            },
            Load {
                offset: memory_offset + 0x10_0000,
                vaddr: 0,
                paddr: 0x40_0000,
                filesz: 0x8_0000,
                memsz: 0x8_0000
            },
        ]
    );
    assert_eq!(bytes.len() as u64, memory_offset + 0x18_0000);
    assert_loads_match_ram(&bytes, &core, &ram);
}

#[test]
fn begin_outside_ram_is_an_invalid_begin() {
    let ram = Arc::new(synthetic_ram());
    let req = DumpRequest {
        begin: Some(0x30_0000),
        length: Some(0x1000),
        ..Default::default()
    };
    let path = temp_path("badbegin");
    let _t = TempFile(path.clone());

    let e = DumpJob::new(&req, ram, &[long_mode_cpu(0)], File::create(&path).unwrap())
        .err()
        .unwrap();

    assert_eq!(e.to_string(), "Invalid parameter 'begin'");
}

#[test]
fn a_failed_dump_leaves_an_empty_file() {
    let mut ram = synthetic_ram();
    ram.fail_from = Some(0x48_0000);
    let path = temp_path("fail");
    let _t = TempFile(path.clone());
    let mut job = DumpJob::new(
        &elf_request(false),
        Arc::new(ram),
        &[long_mode_cpu(0)],
        File::create(&path).unwrap(),
    )
    .unwrap();

    let e = job.run().unwrap_err();

    assert_eq!(e.to_string(), "dump: failed to save memory");
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    assert!(matches!(job.step(), Err(DumpError::Finished)));
}

#[test]
fn a_kdump_failing_on_guest_ram_leaves_an_empty_file() {
    let mut ram = synthetic_ram();
    ram.fail_from = Some(0x20_0000);
    let path = temp_path("kfail");
    let _t = TempFile(path.clone());
    let mut job = DumpJob::new(
        &kdump_request(DumpFormat::KdumpSnappy),
        Arc::new(ram),
        &[long_mode_cpu(0)],
        File::create(&path).unwrap(),
    )
    .unwrap();

    let e = job.run().unwrap_err();

    assert_eq!(e.to_string(), "dump: failed to write page data");
    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_dropped_unfinished_dump_leaves_an_empty_file() {
    let ram = Arc::new(synthetic_ram());
    let path = temp_path("drop");
    let _t = TempFile(path.clone());
    let mut job = DumpJob::new(
        &kdump_request(DumpFormat::KdumpZlib),
        ram,
        &[long_mode_cpu(0)],
        File::create(&path).unwrap(),
    )
    .unwrap();
    job.step().unwrap();
    job.step().unwrap();

    drop(job);

    assert_eq!(fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn steps_are_bounded_and_report_growing_progress() {
    let ram = Arc::new(MemRam {
        blocks: vec![patterned(0, 32 << 20)],
        fail_from: None,
    });
    for req in [elf_request(false), kdump_request(DumpFormat::KdumpLzo)] {
        let path = temp_path("progress");
        let _t = TempFile(path.clone());
        let mut job = DumpJob::new(
            &req,
            ram.clone(),
            &[long_mode_cpu(0)],
            File::create(&path).unwrap(),
        )
        .unwrap();
        let mut seen = Vec::new();

        while let DumpProgress::InProgress { completed, total } = job.step().unwrap() {
            assert_eq!(total, 32 << 20);
            seen.push(completed);
        }

        assert!(seen.len() >= 4, "{req:?}: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[1] - w[0] <= 8 << 20), "{seen:?}");
        assert_eq!(job.completed(), 32 << 20);
    }
}

// ---- paging ----

const PRESENT_RW: u64 = 0x3;
const PS: u64 = 0x80;

/// Page tables in synthetic RAM: PML4 at 1 MiB; low half maps 64 KiB of
/// 4 KiB pages, one lone 4 KiB page, a 2 MiB page, a page outside RAM;
/// the top of the address space maps a 1 GiB page at 0.
fn ram_with_page_tables() -> MemRam {
    let mut ram = MemRam {
        blocks: vec![patterned(0, 8 << 20)],
        fail_from: None,
    };
    let (pml4, pdpt_low, pd, pt, pdpt_high) =
        (0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000);
    for t in [pml4, pdpt_low, pd, pt, pdpt_high] {
        ram.write(t, &[0u8; PAGE]);
    }
    ram.write_u64(pml4, pdpt_low | PRESENT_RW);
    ram.write_u64(pml4 + 511 * 8, pdpt_high | PRESENT_RW);
    ram.write_u64(pdpt_low, pd | PRESENT_RW);
    ram.write_u64(pd, pt | PRESENT_RW);
    for i in 0..16u64 {
        ram.write_u64(pt + i * 8, (0x20_0000 + i * 0x1000) | PRESENT_RW);
    }
    ram.write_u64(pt + 20 * 8, 0x30_0000 | PRESENT_RW | (1 << 63));
    // Not present: ignored whatever else it holds.
    ram.write_u64(pt + 21 * 8, 0x31_0000);
    // Device memory is not dumped.
    ram.write_u64(pt + 22 * 8, 0xfee0_0000 | PRESENT_RW);
    ram.write_u64(pd + 8, 0x40_0000 | PRESENT_RW | PS);
    ram.write_u64(pdpt_high + 510 * 8, PRESENT_RW | PS);
    ram
}

fn mappings_of(core: &Core) -> Vec<(u64, u64, u64)> {
    core.loads
        .iter()
        .map(|l| (l.paddr, l.vaddr, l.memsz))
        .collect()
}

#[test]
fn paging_with_4_level_tables_maps_4k_2m_and_1g_pages() {
    let ram = Arc::new(ram_with_page_tables());
    let cpus = [long_mode_cpu(0), long_mode_cpu(1)];

    let out = run_dump(&elf_request(true), ram.clone(), &cpus, "paging4");
    let bytes = fs::read(&out.0).unwrap();
    let core = parse_core(&bytes);

    assert_eq!(
        mappings_of(&core),
        vec![
            (0, 0xffff_ffff_8000_0000, 1 << 30),
            (0x20_0000, 0, 0x1_0000),
            (0x30_0000, 0x1_4000, 0x1000),
            (0x40_0000, 0x20_0000, 0x20_0000),
        ]
    );
    // The 1 GiB page reaches past RAM: only the RAM part is in the file.
    assert_eq!(core.loads[0].filesz, 8 << 20);
    assert_loads_match_ram(&bytes, &core, &ram);
}

#[test]
fn paging_with_5_level_tables_gives_57_bit_canonical_addresses() {
    let mut ram = ram_with_page_tables();
    let pml5 = 0x10_5000;
    ram.write(pml5, &[0u8; PAGE]);
    ram.write_u64(pml5, 0x10_0000 | PRESENT_RW);
    ram.write_u64(pml5 + 511 * 8, 0x10_0000 | PRESENT_RW);
    let mut cpu = long_mode_cpu(0);
    cpu.cr[3] = pml5;
    cpu.cr[4] |= 1 << 12;

    let out = run_dump(&elf_request(true), Arc::new(ram), &[cpu], "paging5");
    let core = parse_core(&fs::read(&out.0).unwrap());

    let top = 0xff00_0000_0000_0000u64;
    let mut expect = vec![
        (0, 0x0000_ffff_8000_0000, 1 << 30),
        (0, top | 0x00ff_ffff_8000_0000, 1 << 30),
        (0x20_0000, 0, 0x1_0000),
        (0x20_0000, top | 0x00ff_0000_0000_0000, 0x1_0000),
        (0x30_0000, 0x1_4000, 0x1000),
        (0x30_0000, top | 0x00ff_0000_0001_4000, 0x1000),
        (0x40_0000, 0x20_0000, 0x20_0000),
        (0x40_0000, top | 0x00ff_0000_0020_0000, 0x20_0000),
    ];
    expect.sort();
    assert_eq!(mappings_of(&core), expect);
}

#[test]
fn paging_on_a_guest_without_paging_maps_virtual_to_physical() {
    let ram = Arc::new(synthetic_ram());
    let mut cpu = long_mode_cpu(0);
    cpu.cr[0] = 0x11;

    let out = run_dump(&elf_request(true), ram, &[cpu], "nopaging");
    let core = parse_core(&fs::read(&out.0).unwrap());

    assert_eq!(
        mappings_of(&core),
        vec![(0, 0, 3 << 20), (4 << 20, 4 << 20, 1 << 20)]
    );
}

#[test]
fn pae_and_32_bit_tables_are_walked_with_large_pages() {
    let mut ram = MemRam {
        blocks: vec![patterned(0, 8 << 20)],
        fail_from: None,
    };
    // PAE: a 32-byte PDPT at 0x100020, PD at 0x101000 with a 2 MiB page
    // and a page table at 0x102000 with one 4 KiB page.
    ram.write(0x10_0000, &[0u8; PAGE]);
    ram.write(0x10_1000, &[0u8; PAGE]);
    ram.write(0x10_2000, &[0u8; PAGE]);
    ram.write_u64(0x10_0020 + 3 * 8, 0x10_1000 | 1);
    ram.write_u64(0x10_1000, 0x40_0000 | PRESENT_RW | PS);
    ram.write_u64(0x10_1008, 0x10_2000 | PRESENT_RW);
    ram.write_u64(0x10_2000 + 5 * 8, 0x30_0000 | PRESENT_RW);
    let mut pae = protected_mode_cpu(0);
    pae.cr = [0x8000_0011, 0, 0, 0x10_0020, 0x20];
    // 32-bit: PD at 0x103000 with a 4 MiB page at 4 MiB.
    ram.write(0x10_3000, &[0u8; PAGE]);
    ram.write(
        0x10_3000 + 0x300 * 4,
        &((0x40_0000u32 | 0x83).to_le_bytes()),
    );
    let mut flat = protected_mode_cpu(1);
    flat.cr = [0x8000_0011, 0, 0, 0x10_3000, 0x10];

    let out = run_dump(&elf_request(true), Arc::new(ram), &[pae, flat], "pae");
    let core = parse_core(&fs::read(&out.0).unwrap());

    assert_eq!(
        mappings_of(&core),
        // The 2 MiB PAE page lies inside the 4 MiB page at the same offset.
        vec![
            (0x30_0000, 0xc020_5000, 0x1000),
            (0x40_0000, 0xc000_0000, 0x40_0000),
        ]
    );
}

#[test]
fn more_than_65532_mappings_use_pn_xnum() {
    // 70000 4 KiB pages, none contiguous in physical memory with the next.
    let count = 70_000u64;
    let mut ram = MemRam {
        blocks: vec![(0, vec![0u8; 4 << 20])],
        fail_from: None,
    };
    let (pml4, pdpt, pd, pts) = (0x10_0000u64, 0x10_1000u64, 0x10_2000u64, 0x10_3000u64);
    ram.write_u64(pml4, pdpt | PRESENT_RW);
    ram.write_u64(pdpt, pd | PRESENT_RW);
    for t in 0..count.div_ceil(512) {
        ram.write_u64(pd + t * 8, (pts + t * 0x1000) | PRESENT_RW);
    }
    for i in 0..count {
        let phys = (i * 2 % 1000) * 0x1000;
        ram.write_u64(pts + i * 8, phys | PRESENT_RW);
    }

    let out = run_dump(
        &elf_request(true),
        Arc::new(ram),
        &[long_mode_cpu(0)],
        "xnum",
    );
    let bytes = fs::read(&out.0).unwrap();
    let core = parse_core(&bytes);

    assert_eq!(core.phnum_field, 0xffff);
    assert_eq!(core.loads.len() as u64, count);
    if tool_available("readelf") {
        let r = Command::new("readelf")
            .arg("-h")
            .arg(&out.0)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(text.contains("65535 (70001)"), "{text}");
    } else {
        println!("not run: readelf is not installed");
    }
}

// ---- kdump ----

struct DiskDump {
    status: u32,
    nr_cpus: u32,
    notes: Vec<u8>,
    /// (pfn, stored size, flags, offset)
    descs: Vec<(u64, u32, u32, u64)>,
    pages: Vec<(u64, Vec<u8>)>,
}

fn read_diskdump(b: &[u8]) -> DiskDump {
    assert_eq!(&b[..8], b"KDUMP   ");
    assert_eq!(le(b, 8, 4), 6);
    assert_eq!(&b[12 + 4 * 65..12 + 4 * 65 + 7], b"x86_64\0");
    let status = le(b, 424, 4) as u32;
    let block = le(b, 428, 4);
    let sub_blocks = le(b, 432, 4);
    let bitmap_blocks = le(b, 436, 4);
    let max_mapnr = le(b, 440, 4);
    let nr_cpus = le(b, 460, 4) as u32;
    let sub = block as usize;
    assert_eq!(le(b, sub + 8, 4), 1, "dump_level");
    assert_eq!(le(b, sub + 96, 8), max_mapnr, "max_mapnr_64");
    let (note_off, note_len) = (le(b, sub + 48, 8) as usize, le(b, sub + 56, 8) as usize);
    let notes = b[note_off..note_off + note_len].to_vec();
    let bitmap1 = ((1 + sub_blocks) * block) as usize;
    let half = (bitmap_blocks / 2 * block) as usize;
    assert_eq!(
        b[bitmap1..bitmap1 + half],
        b[bitmap1 + half..bitmap1 + 2 * half]
    );
    let bitmap2 = &b[bitmap1 + half..bitmap1 + 2 * half];
    let mut desc_at = ((1 + sub_blocks + bitmap_blocks) * block) as usize;
    let mut descs = Vec::new();
    let mut pages = Vec::new();
    for pfn in 0..max_mapnr {
        if bitmap2[(pfn / 8) as usize] & (1 << (pfn % 8)) == 0 {
            continue;
        }
        let (offset, size, flags) = (
            le(b, desc_at, 8),
            le(b, desc_at + 8, 4) as u32,
            le(b, desc_at + 12, 4) as u32,
        );
        desc_at += 24;
        let data = &b[offset as usize..offset as usize + size as usize];
        let mut page = vec![0u8; PAGE];
        match flags {
            0 => page.copy_from_slice(data),
            1 => {
                let mut d = flate2::Decompress::new(true);
                let st = d
                    .decompress(data, &mut page, flate2::FlushDecompress::Finish)
                    .unwrap();
                assert_eq!(st, flate2::Status::StreamEnd);
                assert_eq!(d.total_out(), PAGE as u64);
            }
            2 => lzo1x::decompress(data, &mut page).unwrap(),
            4 => {
                let n = snap::raw::Decoder::new()
                    .decompress(data, &mut page)
                    .unwrap();
                assert_eq!(n, PAGE);
            }
            f => panic!("unknown page flags {f}"),
        }
        descs.push((pfn, size, flags, offset));
        pages.push((pfn, page));
    }
    DiskDump {
        status,
        nr_cpus,
        notes,
        descs,
        pages,
    }
}

/// Our own reading of the flattened format, to compare with makedumpfile.
fn rearrange(flat: &[u8]) -> Vec<u8> {
    assert_eq!(&flat[..13], b"makedumpfile\0");
    assert_eq!(
        &flat[16..32],
        &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    let mut out = Vec::new();
    let mut at = 4096;
    loop {
        let off = i64::from_be_bytes(flat[at..at + 8].try_into().unwrap());
        let size = i64::from_be_bytes(flat[at + 8..at + 16].try_into().unwrap());
        at += 16;
        if off == -1 {
            assert_eq!(size, -1);
            break;
        }
        let (off, size) = (off as usize, size as usize);
        if out.len() < off + size {
            out.resize(off + size, 0);
        }
        out[off..off + size].copy_from_slice(&flat[at..at + size]);
        at += size;
    }
    assert_eq!(at, flat.len(), "bytes after the end marker");
    out
}

fn makedumpfile_rearrange(flat: &Path) -> Option<Vec<u8>> {
    if !tool_available("makedumpfile") {
        return None;
    }
    let out = temp_path("rearranged");
    let _t = TempFile(out.clone());
    let r = Command::new("makedumpfile")
        .arg("-R")
        .arg(&out)
        .stdin(File::open(flat).unwrap())
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "makedumpfile -R: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    Some(fs::read(&out).unwrap())
}

fn check_kdump(format: DumpFormat, flag: u32) {
    let ram = Arc::new(synthetic_ram());
    let cpus = [long_mode_cpu(0), long_mode_cpu(1)];

    let out = run_dump(&kdump_request(format), ram.clone(), &cpus, format.name());
    let flat = fs::read(&out.0).unwrap();
    let ours = rearrange(&flat);
    let plain = match makedumpfile_rearrange(&out.0) {
        Some(p) => {
            assert!(p == ours, "makedumpfile -R disagrees with our reading");
            p
        }
        None => {
            println!("not run: makedumpfile is not installed");
            ours
        }
    };
    let dd = read_diskdump(&plain);

    assert_eq!(dd.status, flag);
    assert_eq!(dd.nr_cpus, 2);
    assert_eq!(
        dd.notes,
        notes::build_notes(notes::ArchInfo::of(&cpus, &ram.ranges()), &cpus)
    );
    assert_eq!(dd.pages.len(), 1024);
    for (pfn, page) in &dd.pages {
        assert!(page.as_slice() == ram.page(pfn * 4096), "page {pfn:#x}");
    }
    // Zero pages share the first data page; noise is stored as is;
    // the patterned pages are compressed.
    let zero_offset = dd.descs[0].3;
    for (pfn, size, flags, offset) in &dd.descs {
        match pfn % 5 {
            0 => assert_eq!(
                (*size, *flags, *offset),
                (4096, 0, zero_offset),
                "pfn {pfn}"
            ),
            2 => assert_eq!((*size, *flags), (4096, 0), "pfn {pfn}"),
            _ => {
                assert_eq!(*flags, flag, "pfn {pfn}");
                assert!(*size < 4096);
            }
        }
    }
}

#[test]
fn kdump_zlib_rearranges_and_gives_back_every_page() {
    check_kdump(DumpFormat::KdumpZlib, 1);
}

#[test]
fn kdump_lzo_rearranges_and_gives_back_every_page() {
    check_kdump(DumpFormat::KdumpLzo, 2);
}

#[test]
fn kdump_snappy_rearranges_and_gives_back_every_page() {
    check_kdump(DumpFormat::KdumpSnappy, 4);
}

#[test]
fn kdump_of_ram_above_4g_writes_sparse_bitmaps_and_every_page() {
    let ram = Arc::new(MemRam {
        blocks: vec![patterned(0, 1 << 20), patterned(4 << 30, 1 << 20)],
        fail_from: None,
    });
    // A 32-bit guest with RAM above 4 GiB still gets the 64-bit layout.
    let cpus = [protected_mode_cpu(0)];

    let out = run_dump(
        &kdump_request(DumpFormat::KdumpLzo),
        ram.clone(),
        &cpus,
        "above4g",
    );
    let plain = rearrange(&fs::read(&out.0).unwrap());
    if let Some(p) = makedumpfile_rearrange(&out.0) {
        assert!(p == plain, "makedumpfile -R disagrees with our reading");
    } else {
        println!("not run: makedumpfile is not installed");
    }
    let dd = read_diskdump(&plain);

    assert_eq!(dd.pages.len(), 512);
    assert_eq!(dd.pages[256].0, (4 << 30) / 4096);
    for (pfn, page) in &dd.pages {
        assert!(page.as_slice() == ram.page(pfn * 4096), "page {pfn:#x}");
    }
    assert_eq!(dd.notes.len(), 164 + 452);
}

#[test]
fn kdump_records_follow_qemu_order_and_cache_sizes() {
    let ram = Arc::new(synthetic_ram());
    let out = run_dump(
        &kdump_request(DumpFormat::KdumpZlib),
        ram,
        &[long_mode_cpu(0)],
        "records",
    );
    let flat = fs::read(&out.0).unwrap();
    let mut records = Vec::new();
    let mut at = 4096;
    loop {
        let off = u64::from_be_bytes(flat[at..at + 8].try_into().unwrap());
        let size = u64::from_be_bytes(flat[at + 8..at + 16].try_into().unwrap());
        at += 16;
        if off == u64::MAX {
            break;
        }
        records.push((off, size));
        at += size as usize;
    }

    // Header, sub-header, notes, then bitmap 1 and 2 for the one buffer.
    assert_eq!(
        records[..5],
        [
            (0, 464),
            (4096, 104),
            (4200, 808),
            (8192, 4096),
            (12288, 4096)
        ]
    );
    // Descriptors start at block 4; no cache record exceeds four pages.
    assert!(records.iter().any(|r| r.0 == 16384));
    assert!(records[5..].iter().all(|r| r.1 <= 16384));
    // 1024 pages of RAM (3 MiB + 1 MiB) -> 1024 descriptors of 24 bytes,
    // written as 682-descriptor records plus the rest.
    let desc_records: Vec<_> = records
        .iter()
        .filter(|r| r.0 >= 16384 && r.0 < 16384 + 1024 * 24)
        .collect();
    assert_eq!(desc_records[0], &(16384, 682 * 24));
    assert_eq!(desc_records.iter().map(|r| r.1).sum::<u64>(), 1024 * 24);
}

/// Timing of every format on 1 GiB of patterned RAM; run with
/// `cargo test --release --bin qemu-system-x86_64 dump::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_dump_of_1_gib() {
    let ram: Arc<dyn GuestRam> = Arc::new(MemRam {
        blocks: vec![patterned(0, 1 << 30)],
        fail_from: None,
    });
    for req in [
        elf_request(false),
        kdump_request(DumpFormat::KdumpZlib),
        kdump_request(DumpFormat::KdumpLzo),
        kdump_request(DumpFormat::KdumpSnappy),
    ] {
        // DUMP_BENCH=elf,kdump-zlib picks formats.
        if let Ok(only) = std::env::var("DUMP_BENCH") {
            if !only.split(',').any(|f| f == req.format().name()) {
                continue;
            }
        }
        let start = std::time::Instant::now();
        let out = run_dump(&req, ram.clone(), &[long_mode_cpu(0)], "bench");
        let secs = start.elapsed().as_secs_f64();
        let size = fs::metadata(&out.0).unwrap().len();
        println!("{:<13} {secs:.3} s  {size} bytes", req.format().name());
    }
}

/// Writes the bench's 1 GiB pattern to $DUMP_BENCH_RAM, to give real QEMU
/// the same guest memory (memory-backend-file).
#[test]
#[ignore]
fn bench_write_ram_file() {
    let Ok(path) = std::env::var("DUMP_BENCH_RAM") else {
        println!("not run: DUMP_BENCH_RAM is not set");
        return;
    };
    let (_, data) = patterned(0, 1 << 30);
    fs::write(path, data).unwrap();
}
