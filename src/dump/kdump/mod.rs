//! The kdump-compressed writer: the diskdump layout (headers, notes, two
//! bitmaps, page descriptors, page data) sent as makedumpfile's flattened
//! format, record for record as QEMU 2.8 sends it.
//!
//! Flattened format: a 4 KiB header starting "makedumpfile" with type 1 and
//! version 1 (big-endian 64-bit), then records of big-endian (offset, size)
//! followed by `size` bytes that belong at `offset` of the diskdump file,
//! and a final (-1, -1). `makedumpfile -R` turns it into the plain file.

mod codec;
mod header;
mod workers;

use std::sync::Arc;

pub use codec::CodecKind;
use header::{Layout, PAGE_SIZE};
use workers::{PageOut, Pool, Work};

use super::error::DumpError;
use super::guest_ram::{GuestRam, RamRange};
use super::sink::Sink;

const FLAT_HEADER_SIZE: usize = 4096;
const FLAT_SIGNATURE: &[u8] = b"makedumpfile";
/// Bits of one bitmap buffer, the unit QEMU writes bitmaps in.
const BITS_PER_CHUNK: u64 = PAGE_SIZE * 8;
const BITMAP_CHUNKS_PER_STEP: u64 = 256;
/// QEMU's DataCache holds four pages before it writes a record.
const CACHE_SIZE: usize = 4 * PAGE_SIZE as usize;
const DESC_SIZE: u64 = 24;
const PAGES_PER_BATCH: u64 = 256;
const BATCHES_PER_STEP: u64 = 8;

/// Collects page descriptors or page data and writes them as records of
/// at most CACHE_SIZE bytes, as QEMU's write_cache does.
struct Cache {
    buf: Vec<u8>,
    offset: u64,
}

impl Cache {
    fn new(offset: u64) -> Self {
        Cache {
            buf: Vec::with_capacity(CACHE_SIZE),
            offset,
        }
    }

    fn append(&mut self, sink: &mut Sink, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > CACHE_SIZE {
            self.sync(sink);
        }
        self.buf.extend_from_slice(bytes);
    }

    fn sync(&mut self, sink: &mut Sink) {
        if !self.buf.is_empty() {
            sink.record(self.offset, &self.buf);
            self.offset += self.buf.len() as u64;
            self.buf.clear();
        }
    }
}

fn page_desc(offset: u64, size: u32, flags: u32) -> [u8; DESC_SIZE as usize] {
    let mut d = [0u8; DESC_SIZE as usize];
    d[0..8].copy_from_slice(&offset.to_le_bytes());
    d[8..12].copy_from_slice(&size.to_le_bytes());
    d[12..16].copy_from_slice(&flags.to_le_bytes());
    d
}

enum Stage {
    Header,
    Bitmap { chunk: u64 },
    Pages,
    Done,
}

pub struct Kdump {
    ram: Arc<dyn GuestRam>,
    ranges: Vec<RamRange>,
    layout: Layout,
    codec: CodecKind,
    notes: Vec<u8>,
    threads: usize,
    stage: Stage,
    pool: Option<Pool>,
    batches: Vec<Work>,
    submitted: usize,
    taken: usize,
    desc: Cache,
    data: Cache,
    data_offset: u64,
    zero_desc: [u8; DESC_SIZE as usize],
    completed: u64,
}

impl Kdump {
    /// `ranges` must be page-aligned, ordered and disjoint.
    pub fn new(
        ram: Arc<dyn GuestRam>,
        ranges: &[RamRange],
        class64: bool,
        notes: Vec<u8>,
        nr_cpus: u32,
        codec: CodecKind,
        threads: usize,
    ) -> Self {
        let layout = Layout::new(class64, ranges, nr_cpus, notes.len() as u64);
        let mut batches = Vec::new();
        for r in ranges {
            let mut gpa = r.gpa;
            while gpa < r.end() {
                let pages = ((r.end() - gpa) / PAGE_SIZE).min(PAGES_PER_BATCH);
                batches.push(Work {
                    seq: batches.len() as u64,
                    gpa,
                    pages: pages as u32,
                });
                gpa += pages * PAGE_SIZE;
            }
        }
        let data_start = layout.offset_page + DESC_SIZE * layout.num_dumpable;
        Kdump {
            ram,
            ranges: ranges.to_vec(),
            layout,
            codec,
            notes,
            threads,
            stage: Stage::Header,
            pool: None,
            batches,
            submitted: 0,
            taken: 0,
            desc: Cache::new(layout.offset_page),
            data: Cache::new(data_start),
            data_offset: data_start,
            zero_desc: page_desc(data_start, PAGE_SIZE as u32, 0),
            completed: 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|r| r.len).sum()
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    fn write_header(&mut self, sink: &mut Sink) -> Result<(), DumpError> {
        let mut flat = vec![0u8; FLAT_HEADER_SIZE];
        flat[..FLAT_SIGNATURE.len()].copy_from_slice(FLAT_SIGNATURE);
        flat[16..24].copy_from_slice(&1u64.to_be_bytes()); // type
        flat[24..32].copy_from_slice(&1u64.to_be_bytes()); // version
        sink.put(&flat);
        sink.flush("dump: failed to write start flat header")?;
        let l = &self.layout;
        sink.record(0, &header::disk_dump_header(l, self.codec.flag()));
        sink.record(l.offset_sub_header(), &header::kdump_sub_header(l));
        sink.record(l.offset_note(), &self.notes);
        sink.flush("dump: failed to write disk dump header")
    }

    /// One bitmap buffer: the bits of RAM pages in chunk `chunk`.
    fn bitmap_chunk(&self, chunk: u64) -> Vec<u8> {
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        let lo = chunk * BITS_PER_CHUNK;
        let hi = lo + BITS_PER_CHUNK;
        for r in &self.ranges {
            let start = (r.gpa / PAGE_SIZE).max(lo);
            let end = (r.end() / PAGE_SIZE).min(hi);
            for pfn in start..end {
                let bit = pfn - lo;
                buf[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        buf
    }

    fn write_bitmaps(&mut self, sink: &mut Sink, first: u64) -> Result<Option<u64>, DumpError> {
        // QEMU writes every buffer up to the one holding the last RAM page,
        // each to the first bitmap and then to the (identical) second one.
        let chunks = match self.ranges.last() {
            Some(r) => (r.end() / PAGE_SIZE - 1) / BITS_PER_CHUNK + 1,
            None => 0,
        };
        let last = chunks.min(first + BITMAP_CHUNKS_PER_STEP);
        for chunk in first..last {
            let buf = self.bitmap_chunk(chunk);
            let at = chunk * PAGE_SIZE;
            sink.record(self.layout.offset_bitmap + at, &buf);
            sink.record(
                self.layout.offset_bitmap + self.layout.len_bitmap + at,
                &buf,
            );
        }
        sink.flush("dump: failed to set dump_bitmap")?;
        Ok((last < chunks).then_some(last))
    }

    fn write_pages(&mut self, sink: &mut Sink) -> Result<bool, DumpError> {
        let pool = self
            .pool
            .get_or_insert_with(|| Pool::new(Arc::clone(&self.ram), self.codec, self.threads));
        let in_flight = 2 * pool.workers() + 2;
        let flag = self.codec.flag();
        let mut taken_now = 0;
        while self.taken < self.batches.len() && taken_now < BATCHES_PER_STEP {
            while self.submitted < self.batches.len() && self.submitted - self.taken < in_flight {
                pool.submit(self.batches[self.submitted]);
                self.submitted += 1;
            }
            let seq = self.taken as u64;
            let batch = match pool.take(seq) {
                Some(Some(b)) => b,
                _ => return Err(DumpError::ram("dump: failed to write page data")),
            };
            let mut at = 0usize;
            for p in &batch.pages {
                match *p {
                    PageOut::Zero => self.desc.append(sink, &self.zero_desc),
                    PageOut::Stored { len, compressed } => {
                        let Some(bytes) = batch.data.get(at..at + len as usize) else {
                            return Err(DumpError::ram("dump: failed to write page data"));
                        };
                        at += len as usize;
                        self.data.append(sink, bytes);
                        let flags = if compressed { flag } else { 0 };
                        let d = page_desc(self.data_offset, len, flags);
                        self.data_offset += u64::from(len);
                        self.desc.append(sink, &d);
                    }
                }
                self.completed += PAGE_SIZE;
            }
            self.taken += 1;
            taken_now += 1;
        }
        if self.taken < self.batches.len() {
            sink.flush("dump: failed to write page data")?;
            return Ok(false);
        }
        self.desc.sync(sink);
        self.data.sync(sink);
        sink.flush("dump: failed to sync cache for page_data")?;
        let end = u64::MAX.to_be_bytes();
        sink.put(&end);
        sink.put(&end);
        sink.flush("dump: failed to write end flat header")?;
        self.pool = None;
        Ok(true)
    }

    pub fn step(&mut self, sink: &mut Sink) -> Result<bool, DumpError> {
        match self.stage {
            Stage::Header => {
                self.write_header(sink)?;
                self.stage = Stage::Bitmap { chunk: 0 };
                Ok(false)
            }
            Stage::Bitmap { chunk } => {
                match self.write_bitmaps(sink, chunk)? {
                    Some(next) => self.stage = Stage::Bitmap { chunk: next },
                    None => {
                        // Every zero page points at one shared zero page,
                        // the first thing in the data area.
                        self.data.append(sink, &[0u8; PAGE_SIZE as usize]);
                        self.data_offset += PAGE_SIZE;
                        self.stage = Stage::Pages;
                    }
                }
                Ok(false)
            }
            Stage::Pages => {
                let done = self.write_pages(sink)?;
                if done {
                    self.stage = Stage::Done;
                }
                Ok(done)
            }
            Stage::Done => Ok(true),
        }
    }
}
