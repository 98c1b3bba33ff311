//! The ELF core writer: file header, PT_NOTE, one PT_LOAD per mapping,
//! the PN_XNUM section header when needed, the notes, then guest RAM.
//!
//! Layout and field values follow QEMU's dump.c, so tools that know QEMU
//! cores (gdb, crash, the `QEMU` note readers) find what they expect.

use std::sync::Arc;

use super::elf::{self, Phdr, PN_XNUM, PT_LOAD, PT_NOTE};
use super::error::DumpError;
use super::guest_ram::{GuestRam, RamRange};
use super::mapping::{self, Mapping};
use super::notes::ArchInfo;
use super::paging::PageWalker;
use super::sink::Sink;

/// Page tables read per step while walking.
const WALK_BUDGET: u32 = 256;
/// Program headers written per step.
const LOADS_PER_STEP: usize = 16 * 1024;
/// Guest RAM copied per step.
const MEMORY_PER_STEP: u64 = 8 << 20;

/// A stretch of guest RAM in the file, in the order it is written.
#[derive(Debug, Clone, Copy)]
struct Piece {
    gpa: u64,
    len: u64,
    file_offset: u64,
}

enum Stage {
    Walk(PageWalker),
    Plan(Vec<Mapping>),
    Headers { next_load: usize },
    Memory { piece: usize, pos: u64 },
    Done,
}

pub struct ElfCore {
    ram: Arc<dyn GuestRam>,
    arch: ArchInfo,
    notes: Vec<u8>,
    filter: Option<(u64, u64)>,
    pieces: Vec<Piece>,
    mappings: Vec<Mapping>,
    /// Program headers in the file, PT_NOTE included.
    phdr_count: u64,
    /// Some(sh_info) when e_phnum overflows and the count moves to the
    /// section header.
    xnum: Option<u32>,
    memory_offset: u64,
    stage: Stage,
    total: u64,
    completed: u64,
}

impl ElfCore {
    pub fn new(
        ram: Arc<dyn GuestRam>,
        ranges: &[RamRange],
        arch: ArchInfo,
        notes: Vec<u8>,
        paging_walker: Option<PageWalker>,
        paging: bool,
        filter: Option<(u64, u64)>,
    ) -> Self {
        let mut pieces = Vec::new();
        let mut total = 0;
        for r in ranges {
            let (start, end) = match filter {
                Some((b, e)) => (r.gpa.max(b), r.end().min(e)),
                None => (r.gpa, r.end()),
            };
            if start < end {
                pieces.push(Piece {
                    gpa: start,
                    len: end - start,
                    file_offset: 0,
                });
                total += end - start;
            }
        }
        let stage = match paging_walker {
            Some(w) => Stage::Walk(w),
            None if paging => Stage::Plan(mapping::identity(ranges)),
            None => Stage::Plan(mapping::simple(ranges)),
        };
        ElfCore {
            ram,
            arch,
            notes,
            filter,
            pieces,
            mappings: Vec::new(),
            phdr_count: 0,
            xnum: None,
            memory_offset: 0,
            stage,
            total,
            completed: 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Fixes the file layout once the mappings are known.
    fn plan(&mut self, maps: Vec<Mapping>) {
        let maps = match self.filter {
            Some((b, e)) => mapping::filter(maps, b, e),
            None => maps,
        };
        let class64 = self.arch.class64;
        let num = maps.len() as u64;
        // e_phnum is 16 bits; QEMU switches to PN_XNUM from 65533 mappings.
        let (phdr_count, xnum) = if num < u64::from(u16::MAX) - 2 {
            (1 + num, None)
        } else {
            let sh_info = (1 + num).min(u64::from(u32::MAX));
            (sh_info, Some(sh_info as u32))
        };
        let mut offset = elf::ehdr_size(class64) + elf::phdr_size(class64) * phdr_count;
        if xnum.is_some() {
            offset += elf::shdr_size(class64);
        }
        self.memory_offset = offset + self.notes.len() as u64;
        let mut at = self.memory_offset;
        for p in &mut self.pieces {
            p.file_offset = at;
            at += p.len;
        }
        self.mappings = maps;
        self.phdr_count = phdr_count;
        self.xnum = xnum;
    }

    /// Where a mapping's bytes sit in the file: (offset, filesz), or
    /// (-1, 0) when they are not in the dump.
    fn file_range(&self, m: &Mapping) -> (u64, u64) {
        let missing = (u64::MAX, 0);
        if let Some((b, e)) = self.filter {
            if m.phys < b || m.phys >= e {
                return missing;
            }
        }
        let i = self.pieces.partition_point(|p| p.gpa + p.len <= m.phys);
        match self.pieces.get(i) {
            Some(p) if m.phys >= p.gpa => {
                let into = m.phys - p.gpa;
                (p.file_offset + into, m.len.min(p.len - into))
            }
            _ => missing,
        }
    }

    pub fn step(&mut self, sink: &mut Sink) -> Result<bool, DumpError> {
        let class64 = self.arch.class64;
        match &mut self.stage {
            Stage::Walk(w) => {
                if w.run(WALK_BUDGET)? {
                    let Stage::Walk(w) = std::mem::replace(&mut self.stage, Stage::Done) else {
                        return Ok(false);
                    };
                    self.stage = Stage::Plan(mapping::normalize(w.into_mappings()));
                }
                Ok(false)
            }
            Stage::Plan(maps) => {
                let maps = std::mem::take(maps);
                self.plan(maps);
                let phnum = if self.xnum.is_some() {
                    PN_XNUM
                } else {
                    self.phdr_count as u16
                };
                let shoff = self
                    .xnum
                    .map(|n| elf::ehdr_size(class64) + elf::phdr_size(class64) * u64::from(n));
                sink.put(&elf::file_header(class64, self.arch.machine, phnum, shoff));
                sink.flush("dump: failed to write elf header")?;
                let mut note = Vec::new();
                let note_size = self.notes.len() as u64;
                elf::put_program_header(
                    &mut note,
                    class64,
                    &Phdr {
                        kind: PT_NOTE,
                        offset: self.memory_offset - note_size,
                        vaddr: 0,
                        paddr: 0,
                        filesz: note_size,
                        memsz: note_size,
                    },
                );
                sink.put(&note);
                self.stage = Stage::Headers { next_load: 0 };
                Ok(false)
            }
            Stage::Headers { next_load } => {
                let first = *next_load;
                let loads = (self.phdr_count - 1) as usize;
                let last = loads.min(first + LOADS_PER_STEP);
                let mut buf = Vec::with_capacity((last - first) * elf::PHDR64 as usize);
                for m in &self.mappings[first..last] {
                    let (offset, filesz) = self.file_range(m);
                    elf::put_program_header(
                        &mut buf,
                        class64,
                        &Phdr {
                            kind: PT_LOAD,
                            offset,
                            vaddr: m.virt,
                            paddr: m.phys,
                            filesz,
                            memsz: m.len,
                        },
                    );
                }
                sink.put(&buf);
                sink.flush("dump: failed to write program header table")?;
                if last < loads {
                    self.stage = Stage::Headers { next_load: last };
                    return Ok(false);
                }
                if let Some(n) = self.xnum {
                    sink.put(&elf::xnum_section_header(class64, n));
                    sink.flush("dump: failed to write section header table")?;
                }
                sink.put(&self.notes);
                sink.flush("dump: failed to write elf notes")?;
                self.stage = Stage::Memory { piece: 0, pos: 0 };
                Ok(false)
            }
            Stage::Memory { piece, pos } => {
                let mut budget = MEMORY_PER_STEP;
                while budget > 0 {
                    let Some(p) = self.pieces.get(*piece).copied() else {
                        break;
                    };
                    if *pos >= p.len {
                        *piece += 1;
                        *pos = 0;
                        continue;
                    }
                    let len = (p.len - *pos).min(budget);
                    let mut io_error = None;
                    let ok =
                        self.ram
                            .visit_phys(p.gpa + *pos, len, &mut |bytes| match sink
                                .write_direct(bytes)
                            {
                                Ok(()) => true,
                                Err(e) => {
                                    io_error = Some(e);
                                    false
                                }
                            });
                    if let Some(e) = io_error {
                        return Err(DumpError::write("dump: failed to save memory", e));
                    }
                    if !ok {
                        return Err(DumpError::ram("dump: failed to save memory"));
                    }
                    *pos += len;
                    budget -= len;
                }
                self.completed += MEMORY_PER_STEP - budget;
                if *piece >= self.pieces.len() {
                    sink.flush("dump: failed to save memory")?;
                    self.stage = Stage::Done;
                    return Ok(true);
                }
                Ok(false)
            }
            Stage::Done => Ok(true),
        }
    }
}
