//! [`DumpJob`]: one `dump-guest-memory` run as a main-loop state machine.

use std::fs::File;
use std::sync::Arc;

use super::cpu::CpuState;
use super::elf_core::ElfCore;
use super::error::DumpError;
use super::guest_ram::{GuestRam, RamRange};
use super::kdump::{CodecKind, Kdump};
use super::notes::{build_notes, ArchInfo};
use super::paging::PageWalker;
use super::request::{DumpFormat, DumpRequest};
use super::sink::Sink;

const PAGE_SIZE: u64 = 4096;
const MAX_COMPRESS_THREADS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpProgress {
    /// Bytes of guest RAM written so far and in all, as `query-dump`
    /// reports them.
    InProgress {
        completed: u64,
        total: u64,
    },
    Done,
}

enum Writer {
    Elf(Box<ElfCore>),
    Kdump(Box<Kdump>),
}

#[derive(PartialEq, Eq)]
enum State {
    Running,
    /// Everything is produced; the writer thread is still writing.
    Draining,
    Done,
    Failed,
}

/// A dump in progress. Call [`DumpJob::step`] until it returns
/// [`DumpProgress::Done`] (from a bottom half for a detached dump, in a
/// loop otherwise). Each step writes a few MiB at most. A job that fails,
/// or is dropped before it is done, truncates its file to nothing.
pub struct DumpJob {
    sink: Sink,
    writer: Writer,
    state: State,
}

/// RAM ranges without empty ones, checked to be ordered and disjoint
/// (and page-aligned where the format needs whole pages).
fn checked_ranges(ram: &dyn GuestRam, page_aligned: bool) -> Result<Vec<RamRange>, DumpError> {
    let ranges: Vec<RamRange> = ram.ranges().into_iter().filter(|r| r.len > 0).collect();
    let mut prev_end = 0;
    for (i, r) in ranges.iter().enumerate() {
        let Some(end) = r.gpa.checked_add(r.len) else {
            return Err(DumpError::BadRamLayout);
        };
        if (i > 0 && r.gpa < prev_end)
            || (page_aligned && (r.gpa % PAGE_SIZE != 0 || r.len % PAGE_SIZE != 0))
        {
            return Err(DumpError::BadRamLayout);
        }
        prev_end = end;
    }
    Ok(ranges)
}

impl DumpJob {
    /// Checks the request as QEMU does and prepares the dump; nothing is
    /// written until the first step. `cpus` are in cpu_index order and
    /// must have been read while the guest is stopped.
    pub fn new(
        request: &DumpRequest,
        ram: Arc<dyn GuestRam>,
        cpus: &[CpuState],
        out: File,
    ) -> Result<DumpJob, DumpError> {
        request.validate()?;
        let filter = request.filter()?;
        let format = request.format();
        let ranges = checked_ranges(&*ram, format.is_kdump())?;
        if let Some((begin, end)) = filter {
            if !ranges.iter().any(|r| r.gpa < end && r.end() > begin) {
                return Err(DumpError::InvalidParameter("begin"));
            }
        }
        let arch = ArchInfo::of(cpus, &ranges);
        let notes = build_notes(arch, cpus);
        let codec = match format {
            DumpFormat::Elf => None,
            DumpFormat::KdumpZlib => Some(CodecKind::Zlib),
            DumpFormat::KdumpLzo => Some(CodecKind::Lzo),
            DumpFormat::KdumpSnappy => Some(CodecKind::Snappy),
        };
        let writer = match codec {
            None => {
                let walker = if request.paging {
                    PageWalker::new(Arc::clone(&ram), &ranges, cpus)
                } else {
                    None
                };
                Writer::Elf(Box::new(ElfCore::new(
                    ram,
                    &ranges,
                    arch,
                    notes,
                    walker,
                    request.paging,
                    filter,
                )))
            }
            Some(kind) => {
                let threads = std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .min(MAX_COMPRESS_THREADS);
                Writer::Kdump(Box::new(Kdump::new(
                    ram,
                    &ranges,
                    arch.class64,
                    notes,
                    cpus.len() as u32,
                    kind,
                    threads,
                )))
            }
        };
        Ok(DumpJob {
            sink: Sink::new(out),
            writer,
            state: State::Running,
        })
    }

    /// Bytes of guest RAM to dump (the `total` of `query-dump`).
    pub fn total(&self) -> u64 {
        match &self.writer {
            Writer::Elf(w) => w.total(),
            Writer::Kdump(w) => w.total(),
        }
    }

    /// Bytes of guest RAM dumped so far (the `completed` of `query-dump`).
    pub fn completed(&self) -> u64 {
        match &self.writer {
            Writer::Elf(w) => w.completed(),
            Writer::Kdump(w) => w.completed(),
        }
    }

    /// Hands the writes to a thread of their own, for a detached dump: a
    /// slow pipe then never blocks the caller. Call before the first step.
    pub fn detach(&mut self) -> std::io::Result<()> {
        self.sink.background()
    }

    /// Bytes produced but not yet written (detached dumps only). A caller
    /// that sees a large backlog should wait a little before the next step.
    pub fn backlog(&self) -> usize {
        self.sink.backlog()
    }

    /// Does a bounded piece of the dump. After an error the file has been
    /// truncated and further calls fail with [`DumpError::Finished`].
    pub fn step(&mut self) -> Result<DumpProgress, DumpError> {
        match self.state {
            State::Running | State::Draining => {}
            State::Done => return Ok(DumpProgress::Done),
            State::Failed => return Err(DumpError::Finished),
        }
        let res = match self.sink.check() {
            Err(e) => Err(e),
            Ok(()) if self.state == State::Draining => Ok(true),
            Ok(()) => match &mut self.writer {
                Writer::Elf(w) => w.step(&mut self.sink),
                Writer::Kdump(w) => w.step(&mut self.sink),
            },
        };
        match res {
            Ok(true) if self.sink.backlog() > 0 => {
                self.state = State::Draining;
                Ok(DumpProgress::InProgress {
                    completed: self.completed(),
                    total: self.total(),
                })
            }
            Ok(true) => {
                self.state = State::Done;
                Ok(DumpProgress::Done)
            }
            Ok(false) => Ok(DumpProgress::InProgress {
                completed: self.completed(),
                total: self.total(),
            }),
            Err(e) => {
                self.state = State::Failed;
                self.sink.discard();
                Err(e)
            }
        }
    }

    /// Runs the dump to its end (a dump without `detach`).
    #[cfg(test)]
    pub fn run(&mut self) -> Result<(), DumpError> {
        while self.step()? != DumpProgress::Done {}
        Ok(())
    }
}

impl Drop for DumpJob {
    fn drop(&mut self) {
        if matches!(self.state, State::Running | State::Draining) {
            self.sink.discard();
        }
    }
}
