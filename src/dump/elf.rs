//! ELF file, program and section headers for 32- and 64-bit cores
//! (little-endian, ET_CORE), field for field as QEMU fills them.

pub const EHDR64: u64 = 64;
pub const PHDR64: u64 = 56;
pub const SHDR64: u64 = 64;
pub const EHDR32: u64 = 52;
pub const PHDR32: u64 = 32;
pub const SHDR32: u64 = 40;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
/// e_phnum meaning "the real count is in section header 0's sh_info".
pub const PN_XNUM: u16 = 0xffff;
const ET_CORE: u16 = 4;
const EV_CURRENT: u8 = 1;

pub fn ehdr_size(class64: bool) -> u64 {
    if class64 {
        EHDR64
    } else {
        EHDR32
    }
}

pub fn phdr_size(class64: bool) -> u64 {
    if class64 {
        PHDR64
    } else {
        PHDR32
    }
}

pub fn shdr_size(class64: bool) -> u64 {
    if class64 {
        SHDR64
    } else {
        SHDR32
    }
}

/// `shoff` is Some when the core carries the PN_XNUM section header.
pub fn file_header(class64: bool, machine: u16, phnum: u16, shoff: Option<u64>) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F']);
    h.push(if class64 { 2 } else { 1 });
    h.push(1); // ELFDATA2LSB
    h.push(EV_CURRENT);
    h.resize(16, 0);
    h.extend_from_slice(&ET_CORE.to_le_bytes());
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&u32::from(EV_CURRENT).to_le_bytes());
    let word = |h: &mut Vec<u8>, v: u64| {
        if class64 {
            h.extend_from_slice(&v.to_le_bytes());
        } else {
            h.extend_from_slice(&(v as u32).to_le_bytes());
        }
    };
    word(&mut h, 0); // e_entry
    word(&mut h, ehdr_size(class64)); // e_phoff
    word(&mut h, shoff.unwrap_or(0));
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&(ehdr_size(class64) as u16).to_le_bytes());
    h.extend_from_slice(&(phdr_size(class64) as u16).to_le_bytes());
    h.extend_from_slice(&phnum.to_le_bytes());
    let (shentsize, shnum) = match shoff {
        Some(_) => (shdr_size(class64) as u16, 1u16),
        None => (0, 0),
    };
    h.extend_from_slice(&shentsize.to_le_bytes());
    h.extend_from_slice(&shnum.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    h
}

pub struct Phdr {
    pub kind: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// Appends one program header; flags and alignment stay 0 as in QEMU.
pub fn put_program_header(out: &mut Vec<u8>, class64: bool, p: &Phdr) {
    out.extend_from_slice(&p.kind.to_le_bytes());
    if class64 {
        out.extend_from_slice(&0u32.to_le_bytes()); // p_flags
        for v in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    } else {
        for v in [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(&0u32.to_le_bytes()); // p_flags
        out.extend_from_slice(&0u32.to_le_bytes()); // p_align
    }
}

/// Section header 0 of a PN_XNUM core: all zero but sh_info, the real
/// number of program headers.
pub fn xnum_section_header(class64: bool, sh_info: u32) -> Vec<u8> {
    let mut s = vec![0u8; shdr_size(class64) as usize];
    let at = if class64 { 44 } else { 28 };
    s[at..at + 4].copy_from_slice(&sh_info.to_le_bytes());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_match_the_elf_structures() {
        assert_eq!(file_header(true, 62, 3, None).len() as u64, EHDR64);
        assert_eq!(file_header(false, 3, 3, Some(100)).len() as u64, EHDR32);
        let mut p = Vec::new();
        let ph = Phdr {
            kind: PT_LOAD,
            offset: 1,
            vaddr: 2,
            paddr: 3,
            filesz: 4,
            memsz: 5,
        };
        put_program_header(&mut p, true, &ph);
        assert_eq!(p.len() as u64, PHDR64);
        p.clear();
        put_program_header(&mut p, false, &ph);
        assert_eq!(p.len() as u64, PHDR32);
    }
}
