//! Seeded random qemu-io sessions with blkdebug breakpoints: aio writes
//! and reads stopped, resumed and released in random order, beside
//! synchronous reads and writes, zero writes and discards, on qcow2 (with a
//! backing file, two cluster sizes) and on raw over blkdebug with `align`.
//! Nothing may panic or hang; once every breakpoint is removed every
//! request must have finished; each sector must hold a value some write
//! put there (the one the last write left, where no two writes raced for
//! it), and the image must pass `qemu-img check` with leaks at worst.

mod common;

use std::collections::{BTreeSet, HashMap};

use block::drivers::blkdebug::BlkdebugDebugOps;
use block::qemu_io::QemuIo;
use block::request::inflight::lock_inflight;
use block::{create_image, lock, BlockGraph, CreateOptions, NodeRef};
use common::*;
use serde_json::{json, Value};

const SIZE: u64 = 2 << 20;
const SECTOR: u64 = 512;
const TAGS: [&str; 3] = ["A", "B", "C"];

fn pick<'a>(r: &mut Rng, items: &[&'a str]) -> &'a str {
    items[r.below(items.len() as u64) as usize]
}

/// What a sector may hold: the values some write could have left there.
#[derive(Clone)]
struct Sector(BTreeSet<u8>);

/// The image as the session should have left it.
struct Model {
    sectors: Vec<Sector>,
    /// aio writes issued and not reported yet: (offset, len) -> pattern.
    writes: HashMap<(u64, u64), u8>,
}

impl Model {
    fn new(initial: impl Fn(u64) -> u8) -> Model {
        let sectors = (0..SIZE / SECTOR)
            .map(|s| Sector(BTreeSet::from([initial(s * SECTOR)])))
            .collect();
        Model {
            sectors,
            writes: HashMap::new(),
        }
    }

    fn range(off: u64, len: u64) -> std::ops::Range<usize> {
        (off / SECTOR) as usize..((off + len) / SECTOR) as usize
    }

    /// The writes still in flight that `off..off+len` meets.
    fn racing(&self, off: u64, len: u64) -> Vec<(u64, u64)> {
        self.writes
            .keys()
            .copied()
            .filter(|&(o, l)| o < off + len && off < o + l)
            .collect()
    }

    /// A write landed: its value is certain only where nothing raced it.
    fn landed(&mut self, off: u64, len: u64, p: u8, raced: bool) {
        for s in &mut self.sectors[Model::range(off, len)] {
            if raced {
                s.0.insert(p);
            } else {
                s.0 = BTreeSet::from([p]);
            }
        }
    }

    /// A write that failed or was cut short may have landed in part.
    fn maybe(&mut self, off: u64, len: u64, p: u8) {
        for s in &mut self.sectors[Model::range(off, len)] {
            s.0.insert(p);
        }
    }
}

struct Session {
    log: Vec<String>,
    /// Requests stopped at a breakpoint so far.
    stops: usize,
    g: BlockGraph,
    n: NodeRef,
    io: QemuIo,
    model: Model,
    /// Writes that raced another one while in flight.
    raced: BTreeSet<(u64, u64)>,
}

impl Session {
    fn run(&mut self, cmd: &str) -> String {
        self.log.push(cmd.to_string());
        let mut out = String::new();
        if let Err(e) = self.io.run(Some(&self.n), cmd, &mut out) {
            out.push_str(&format!("{e}\n"));
        }
        out.push_str(&self.g.run_inflight());
        if std::env::var_os("BP_FUZZ_TRACE").is_some() {
            eprintln!("> {cmd}\n{out}");
        }
        self.stops += out.matches("blkdebug: Suspended request").count();
        self.account(&out, cmd);
        out
    }

    /// Books the aio writes a command's output reports as done.
    fn account(&mut self, out: &str, cmd: &str) {
        for line in out.lines() {
            assert!(
                !line.starts_with("aio_write failed") && !line.starts_with("readv failed"),
                "{cmd}: {out}"
            );
            let Some(rest) = line.strip_prefix("wrote ") else {
                continue;
            };
            let Some((counts, off)) = rest.split_once(" bytes at offset ") else {
                continue;
            };
            let len: u64 = counts.split('/').next().unwrap().parse().unwrap();
            let off: u64 = off.parse().unwrap();
            if let Some(p) = self.model.writes.remove(&(off, len)) {
                let raced = self.raced.remove(&(off, len));
                self.model.landed(off, len, p, raced);
            }
        }
    }

    fn aio_write(&mut self, off: u64, len: u64, p: u8) {
        if self.model.writes.contains_key(&(off, len)) {
            return;
        }
        let racing = self.model.racing(off, len);
        if !racing.is_empty() {
            self.raced.extend(racing);
            self.raced.insert((off, len));
        }
        self.model.writes.insert((off, len), p);
        let cmd = if p == 0 {
            format!("aio_write -z {off} {len}")
        } else {
            format!("aio_write -P {p} {off} {len}")
        };
        self.run(&cmd);
    }

    /// A synchronous write: done at once, or refused (EBUSY) when it meets
    /// a stopped request, maybe after writing part of it.
    fn write(&mut self, off: u64, len: u64, p: u8) {
        let racing = self.model.racing(off, len);
        let out = self.run(&format!("write -P {p} {off} {len}"));
        // A request held after a step may have landed before its report,
        // so with writes in flight either may land last.
        let raced = !racing.is_empty();
        self.raced.extend(racing);
        if out.contains("write failed") {
            assert!(out.contains("Device or resource busy"), "{out}");
            self.model.maybe(off, len, p);
        } else if raced {
            self.model.maybe(off, len, p);
        } else {
            self.model.landed(off, len, p, false);
        }
    }

    fn finish(&mut self) {
        for t in TAGS {
            self.run(&format!("remove_break {t}"));
        }
        assert!(
            lock_inflight(&self.g.inflight()).is_empty(),
            "requests left after every breakpoint went"
        );
        assert!(self.model.writes.is_empty(), "{:?}", self.model.writes);
    }

    fn check_content(&self) {
        let mut buf = vec![0u8; SIZE as usize];
        lock(&self.n).read(0, &mut buf).unwrap();
        for (i, s) in self.model.sectors.iter().enumerate() {
            let got = &buf[i * SECTOR as usize..(i + 1) * SECTOR as usize];
            let v = got[0];
            assert!(
                got.iter().all(|&b| b == v) && s.0.contains(&v),
                "sector {i}: {:?}, allowed {:?}; session:\n{}",
                &got[..8],
                s.0,
                self.log.join("\n")
            );
        }
    }
}

/// One session of `ops` random commands over the image opened with `o`;
/// returns how many times a request stopped.
fn session(
    o: Value,
    seed: u64,
    ops: usize,
    events: &[&str],
    grain: u64,
    initial: fn(u64) -> u8,
) -> usize {
    let mut g = BlockGraph::new();
    let n = g.open(o.as_object().unwrap()).expect("open");
    let mut io = QemuIo::new();
    io.set_debug_ops(Box::new(BlkdebugDebugOps));
    io.set_inflight(g.inflight());
    let mut s = Session {
        log: Vec::new(),
        stops: 0,
        g,
        n,
        io,
        model: Model::new(initial),
        raced: BTreeSet::new(),
    };
    if std::env::var("BP_FUZZ_ONLY").is_ok_and(|v| v != seed.to_string()) {
        return 0;
    }
    s.log.push(format!("# seed {seed}"));
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for _ in 0..ops {
        // Ranges in whole sectors, often crossing `grain` boundaries.
        let off = r.below(SIZE / SECTOR - 16) * SECTOR;
        let len = ((1 + r.below(3 * grain / SECTOR)) * SECTOR).min(SIZE - off);
        let p = 1 + r.below(250) as u8;
        match r.below(12) {
            0..=2 => {
                let ev = pick(&mut r, events);
                let tag = pick(&mut r, &TAGS);
                s.run(&format!("break {ev} {tag}"));
            }
            3..=5 => s.aio_write(off, len, p),
            6 => s.aio_write(off, len, 0),
            7 => {
                s.run(&format!("aio_read {off} {len}"));
            }
            8 => s.write(off, len, p),
            9 => {
                let tag = pick(&mut r, &TAGS);
                s.run(&format!("resume {tag}"));
            }
            10 => {
                let tag = pick(&mut r, &TAGS);
                s.run(&format!("remove_break {tag}"));
            }
            _ => {
                s.run("aio_flush");
            }
        }
    }
    s.finish();
    s.check_content();
    s.stops
}

fn qemu_img_check(path: &str) {
    if !have_qemu_img() {
        return;
    }
    let out = std::process::Command::new("qemu-img")
        .args(["check", "-f", "qcow2", path])
        .output()
        .expect("qemu-img check");
    // 0: clean, 3: leaked clusters only (a request cut short).
    let code = out.status.code();
    assert!(matches!(code, Some(0) | Some(3)), "qemu-img check: {out:?}");
}

const QCOW2_EVENTS: &[&str] = &[
    "write_aio",
    "read_aio",
    "read_backing_aio",
    "cow_read",
    "cow_write",
    "l2_update",
    "cluster_alloc",
    "pwritev",
    "pwritev_done",
];

fn backing_value(off: u64) -> u8 {
    if off < SIZE / 2 {
        0x11
    } else {
        0
    }
}

fn qcow2_sessions(cluster: u64, seeds: std::ops::Range<u64>) -> usize {
    let d = tmpdir(&format!("bpfuzz-qcow2-{cluster}"));
    let base = p(&d, "base.qcow2");
    let top = p(&d, "top.qcow2");
    let mut stops = 0;
    for seed in seeds {
        create_image("qcow2", &base, Some(SIZE), &CreateOptions::default()).unwrap();
        {
            let mut g = BlockGraph::new();
            let b = open(&mut g, &base, Some("qcow2"), false);
            lock(&b)
                .write(0, &vec![0x11u8; (SIZE / 2) as usize], false)
                .unwrap();
            close(b);
        }
        let opts = CreateOptions {
            cluster_size: Some(cluster),
            backing_file: Some(base.clone()),
            backing_fmt: Some("qcow2".into()),
            ..Default::default()
        };
        create_image("qcow2", &top, Some(SIZE), &opts).unwrap();
        let o = json!({"driver": "qcow2", "discard": "unmap",
            "file": {"driver": "blkdebug", "image": {"driver": "file", "filename": top}}});
        stops += session(o, seed, 150, QCOW2_EVENTS, cluster, backing_value);
        qemu_img_check(&top);
    }
    stops
}

/// Seeds per test: `BP_FUZZ_SEEDS` for longer hunts.
fn seeds() -> u64 {
    std::env::var("BP_FUZZ_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

#[test]
fn qcow2_64k_clusters_survive_random_breakpoints() {
    let stops = qcow2_sessions(65536, 1..1 + seeds());
    assert!(stops > 20, "only {stops} stops: the sessions test little");
}

#[test]
fn qcow2_4k_clusters_survive_random_breakpoints() {
    let stops = qcow2_sessions(4096, 100..100 + seeds());
    assert!(stops > 20, "only {stops} stops: the sessions test little");
}

#[test]
fn raw_with_align_survives_random_breakpoints() {
    let d = tmpdir("bpfuzz-raw");
    let img = p(&d, "a.raw");
    let events = [
        "write_aio",
        "read_aio",
        "pwritev_rmw_head",
        "pwritev_rmw_after_head",
        "pwritev_rmw_tail",
        "pwritev_rmw_after_tail",
        "pwritev",
        "pwritev_zero",
        "pwritev_done",
    ];
    let mut stops = 0;
    for seed in 200..200 + seeds() {
        create_image("raw", &img, Some(SIZE), &CreateOptions::default()).unwrap();
        let o = json!({"driver": "raw", "file": {"driver": "blkdebug", "align": 4096,
            "image": {"driver": "file", "filename": img}}});
        stops += session(o, seed, 150, &events, 4096, |_| 0);
    }
    assert!(stops > 20, "only {stops} stops: the sessions test little");
}
