//! A bounds-checked reader for little-endian x86 ELF images (32- and 64-bit): program
//! headers, loading PT_LOAD segments at their physical addresses, and notes.

use crate::error::{HwError, Result};
use crate::memory::GuestMemory;

pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// A note from a PT_NOTE segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'a> {
    pub name: &'a [u8],
    pub n_type: u32,
    pub desc: &'a [u8],
}

#[derive(Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    pub is64: bool,
    pub entry: u64,
    pub phdrs: Vec<Phdr>,
}

fn bad(what: &str) -> HwError {
    HwError::BadImage {
        what: format!("ELF: {what}"),
    }
}

fn get<const N: usize>(d: &[u8], off: u64) -> Result<[u8; N]> {
    let o = usize::try_from(off).map_err(|_| bad("offset out of range"))?;
    let s = d
        .get(o..o.checked_add(N).ok_or_else(|| bad("offset out of range"))?)
        .ok_or_else(|| bad("truncated"))?;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Ok(a)
}
fn u16_at(d: &[u8], off: u64) -> Result<u16> {
    Ok(u16::from_le_bytes(get(d, off)?))
}
fn u32_at(d: &[u8], off: u64) -> Result<u32> {
    Ok(u32::from_le_bytes(get(d, off)?))
}
fn u64_at(d: &[u8], off: u64) -> Result<u64> {
    Ok(u64::from_le_bytes(get(d, off)?))
}

/// Whether `data` starts with the ELF magic.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>> {
        if !is_elf(data) {
            return Err(bad("not an ELF file"));
        }
        let is64 = match data.get(4) {
            Some(1) => false,
            Some(2) => true,
            _ => return Err(bad("bad class")),
        };
        if data.get(5) != Some(&1) {
            return Err(bad("not little-endian"));
        }
        let machine = u16_at(data, 18)?;
        if machine != 3 && machine != 62 {
            return Err(bad("not an x86 image"));
        }
        let (entry, phoff, phentsize, phnum) = if is64 {
            (
                u64_at(data, 24)?,
                u64_at(data, 32)?,
                u16_at(data, 54)?,
                u16_at(data, 56)?,
            )
        } else {
            (
                u32_at(data, 24)? as u64,
                u32_at(data, 28)? as u64,
                u16_at(data, 42)?,
                u16_at(data, 44)?,
            )
        };
        let need = if is64 { 56 } else { 32 };
        if phnum > 0 && (phentsize as usize) < need {
            return Err(bad("program header entries too small"));
        }
        let mut phdrs = Vec::new();
        for i in 0..phnum as u64 {
            let at = phoff
                .checked_add(i * phentsize as u64)
                .ok_or_else(|| bad("program headers out of range"))?;
            let p = if is64 {
                Phdr {
                    p_type: u32_at(data, at)?,
                    offset: u64_at(data, at + 8)?,
                    vaddr: u64_at(data, at + 16)?,
                    paddr: u64_at(data, at + 24)?,
                    filesz: u64_at(data, at + 32)?,
                    memsz: u64_at(data, at + 40)?,
                }
            } else {
                Phdr {
                    p_type: u32_at(data, at)?,
                    offset: u32_at(data, at + 4)? as u64,
                    vaddr: u32_at(data, at + 8)? as u64,
                    paddr: u32_at(data, at + 12)? as u64,
                    filesz: u32_at(data, at + 16)? as u64,
                    memsz: u32_at(data, at + 20)? as u64,
                }
            };
            phdrs.push(p);
        }
        Ok(Elf {
            data,
            is64,
            entry,
            phdrs,
        })
    }

    fn segment(&self, p: &Phdr) -> Result<&'a [u8]> {
        let start = usize::try_from(p.offset).map_err(|_| bad("segment offset"))?;
        let len = usize::try_from(p.filesz).map_err(|_| bad("segment size"))?;
        let end = start.checked_add(len).ok_or_else(|| bad("segment size"))?;
        self.data
            .get(start..end)
            .ok_or_else(|| bad("segment past end of file"))
    }

    /// Copies every PT_LOAD segment to its physical address, zero-filling the part
    /// past the file size. Returns the lowest and highest (exclusive) address written.
    pub fn load(&self, mem: &GuestMemory) -> Result<(u64, u64)> {
        let mut low = u64::MAX;
        let mut high = 0;
        for p in self
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD && p.memsz > 0)
        {
            if p.filesz > p.memsz {
                return Err(bad("segment file size exceeds memory size"));
            }
            let bytes = self.segment(p)?;
            let end = p
                .paddr
                .checked_add(p.memsz)
                .ok_or_else(|| bad("segment wraps"))?;
            mem.write(p.paddr, bytes)?;
            let zeros = p.memsz - p.filesz;
            if zeros > 0 {
                mem.fill(p.paddr + p.filesz, zeros, 0)?;
            }
            low = low.min(p.paddr);
            high = high.max(end);
        }
        if high == 0 {
            return Err(bad("no loadable segment"));
        }
        Ok((low, high))
    }

    /// Every note of every PT_NOTE segment (malformed notes end the walk).
    pub fn notes(&self) -> Vec<Note<'a>> {
        let mut out = Vec::new();
        for p in self.phdrs.iter().filter(|p| p.p_type == PT_NOTE) {
            let Ok(seg) = self.segment(p) else { continue };
            let mut at = 0usize;
            let align4 = |v: usize| (v + 3) & !3;
            while at + 12 <= seg.len() {
                let rd = |o: usize| {
                    u32::from_le_bytes([seg[o], seg[o + 1], seg[o + 2], seg[o + 3]]) as usize
                };
                let (namesz, descsz, n_type) = (rd(at), rd(at + 4), rd(at + 8) as u32);
                let name_at = at + 12;
                let desc_at = name_at.saturating_add(align4(namesz));
                let next = desc_at.saturating_add(align4(descsz));
                if desc_at.saturating_add(descsz) > seg.len() || name_at + namesz > seg.len() {
                    break;
                }
                let name = &seg[name_at..name_at + namesz];
                let name = name.strip_suffix(&[0]).unwrap_or(name);
                out.push(Note {
                    name,
                    n_type,
                    desc: &seg[desc_at..desc_at + descsz],
                });
                at = next;
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 with one PT_LOAD (`code` at `paddr`, `bss` extra zero bytes) and
    /// optionally one PT_NOTE holding `note` = (name, type, desc).
    pub fn build_elf64(
        paddr: u64,
        entry: u64,
        code: &[u8],
        bss: u64,
        note: Option<(&str, u32, &[u8])>,
    ) -> Vec<u8> {
        let phnum: u16 = if note.is_some() { 2 } else { 1 };
        let phoff = 64u64;
        let data_off = phoff + 56 * phnum as u64;
        let mut f = vec![0u8; data_off as usize];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&phoff.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        let mut ph = |i: usize, t: u32, off: u64, pa: u64, fs: u64, ms: u64| {
            let at = 64 + i * 56;
            f[at..at + 4].copy_from_slice(&t.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&pa.to_le_bytes());
            f[at + 24..at + 32].copy_from_slice(&pa.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&fs.to_le_bytes());
            f[at + 40..at + 48].copy_from_slice(&ms.to_le_bytes());
        };
        ph(
            0,
            PT_LOAD,
            data_off,
            paddr,
            code.len() as u64,
            code.len() as u64 + bss,
        );
        let note_off = data_off + code.len() as u64;
        let mut nbytes = Vec::new();
        if let Some((name, t, desc)) = note {
            let mut n = name.as_bytes().to_vec();
            n.push(0);
            nbytes.extend_from_slice(&(n.len() as u32).to_le_bytes());
            nbytes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            nbytes.extend_from_slice(&t.to_le_bytes());
            while n.len() % 4 != 0 {
                n.push(0);
            }
            nbytes.extend(n);
            nbytes.extend_from_slice(desc);
            ph(
                1,
                PT_NOTE,
                note_off,
                0,
                nbytes.len() as u64,
                nbytes.len() as u64,
            );
        }
        f.extend_from_slice(code);
        f.extend(nbytes);
        f
    }

    #[test]
    fn load_places_segments_and_zero_fills_bss() {
        let mem = GuestMemory::new_flat(4 << 20).expect("ram");
        mem.write(0x20_0004, &[0xaa; 4]).expect("dirty");
        let img = build_elf64(0x20_0000, 0x20_0000, &[1, 2, 3, 4], 4, None);
        let elf = Elf::parse(&img).expect("parse");
        assert_eq!(elf.load(&mem).expect("load"), (0x20_0000, 0x20_0008));
        let mut b = [0u8; 8];
        mem.read(0x20_0000, &mut b).expect("read");
        assert_eq!(b, [1, 2, 3, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn notes_are_found_by_name_and_type() {
        let img = build_elf64(
            0x10_0000,
            0,
            &[0x90],
            0,
            Some(("Xen", 18, &[0x00, 0x10, 0x10, 0x00])),
        );
        let elf = Elf::parse(&img).expect("parse");
        let n = elf.notes();
        assert_eq!(
            n,
            vec![Note {
                name: b"Xen",
                n_type: 18,
                desc: &[0x00, 0x10, 0x10, 0x00]
            }]
        );
    }

    #[test]
    fn mutated_elf_headers_never_panic() {
        let mem = GuestMemory::new_flat(4 << 20).expect("ram");
        let base = build_elf64(
            0x10_0000,
            0x10_0000,
            &[0x90; 16],
            8,
            Some(("Xen", 18, &[0, 0, 0x10, 0])),
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..500 {
            let mut img = base.clone();
            for _ in 0..6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = x as usize % img.len();
                img[at] = (x >> 40) as u8;
            }
            if let Ok(elf) = Elf::parse(&img) {
                let _ = elf.notes();
                let _ = elf.load(&mem);
            }
        }
    }

    #[test]
    fn truncated_program_headers_are_an_error_not_a_panic() {
        let img = build_elf64(0x10_0000, 0, &[0x90], 0, None);
        assert!(Elf::parse(&img[..80]).is_err());
        let mut bad_seg = img.clone();
        bad_seg[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        let mem = GuestMemory::new_flat(2 << 20).expect("ram");
        assert!(Elf::parse(&bad_seg).expect("parse").load(&mem).is_err());
    }
}
