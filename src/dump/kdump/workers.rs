//! Page compression on worker threads. The main loop hands out batches of
//! consecutive pages and takes the results back in batch order, so the
//! file comes out exactly as a single-threaded writer would make it.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::codec::{Codec, CodecKind};
use super::header::PAGE_SIZE;
use crate::dump::guest_ram::GuestRam;

/// How one page is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOut {
    Zero,
    /// `len` bytes in the batch's data, compressed with the codec's flag
    /// when `compressed`, else the raw page.
    Stored {
        len: u32,
        compressed: bool,
    },
}

pub struct Batch {
    pub pages: Vec<PageOut>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
pub struct Work {
    pub seq: u64,
    pub gpa: u64,
    pub pages: u32,
}

/// Reads and compresses one batch; None when guest RAM could not be read.
pub fn compress_batch(ram: &dyn GuestRam, codec: &mut Codec, work: Work) -> Option<Batch> {
    let page = PAGE_SIZE as usize;
    let mut raw = vec![0u8; work.pages as usize * page];
    if !ram.read_phys(work.gpa, &mut raw) {
        return None;
    }
    let mut out = Batch {
        pages: Vec::with_capacity(work.pages as usize),
        data: Vec::with_capacity(raw.len() / 2),
    };
    for p in raw.chunks_exact(page) {
        if p.iter().all(|&b| b == 0) {
            out.pages.push(PageOut::Zero);
            continue;
        }
        let before = out.data.len();
        let compressed = codec.compress(p, &mut out.data);
        if !compressed {
            out.data.extend_from_slice(p);
        }
        out.pages.push(PageOut::Stored {
            len: (out.data.len() - before) as u32,
            compressed,
        });
    }
    Some(out)
}

type Done = (u64, Option<Batch>);

/// Worker threads plus the reorder buffer. Dropping it stops the threads.
pub struct Pool {
    ram: Arc<dyn GuestRam>,
    kind: CodecKind,
    work_tx: Option<Sender<Work>>,
    done_rx: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    ready: BTreeMap<u64, Option<Batch>>,
    /// Codec for running batches inline when no thread could be started.
    inline: Option<Codec>,
}

impl Pool {
    pub fn new(ram: Arc<dyn GuestRam>, kind: CodecKind, threads: usize) -> Self {
        let (work_tx, work_rx) = mpsc::channel::<Work>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let mut handles = Vec::new();
        for i in 0..threads {
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            let ram = Arc::clone(&ram);
            let spawned = std::thread::Builder::new()
                .name(format!("dump-compress-{i}"))
                .spawn(move || worker(ram, kind, rx, tx));
            if let Ok(h) = spawned {
                handles.push(h);
            }
        }
        let inline = handles.is_empty().then(|| Codec::new(kind));
        Pool {
            ram,
            kind,
            work_tx: Some(work_tx),
            done_rx,
            threads: handles,
            ready: BTreeMap::new(),
            inline,
        }
    }

    pub fn workers(&self) -> usize {
        self.threads.len().max(1)
    }

    pub fn submit(&mut self, work: Work) {
        if let Some(codec) = self.inline.as_mut() {
            let b = compress_batch(&*self.ram, codec, work);
            self.ready.insert(work.seq, b);
            return;
        }
        let sent = self.work_tx.as_ref().map(|tx| tx.send(work));
        if !matches!(sent, Some(Ok(()))) {
            // Every worker is gone; do the batch here.
            let mut codec = Codec::new(self.kind);
            let b = compress_batch(&*self.ram, &mut codec, work);
            self.ready.insert(work.seq, b);
        }
    }

    /// Waits for batch `seq` (one batch of compression at most). Outer
    /// None: the workers died without answering.
    pub fn take(&mut self, seq: u64) -> Option<Option<Batch>> {
        loop {
            if let Some(b) = self.ready.remove(&seq) {
                return Some(b);
            }
            match self.done_rx.recv() {
                Ok((s, b)) => {
                    self.ready.insert(s, b);
                }
                Err(_) => return None,
            }
        }
    }
}

fn worker(
    ram: Arc<dyn GuestRam>,
    kind: CodecKind,
    rx: Arc<Mutex<Receiver<Work>>>,
    tx: Sender<Done>,
) {
    let mut codec = Codec::new(kind);
    loop {
        let next = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(work) = next else { return };
        let batch = compress_batch(&*ram, &mut codec, work);
        if tx.send((work.seq, batch)).is_err() {
            return;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.work_tx = None;
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}
