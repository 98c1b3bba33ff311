//! qcow2 requests in flight: writes and reads stopped at blkdebug
//! breakpoints (qemu-io's break/resume over aio requests), allocations that
//! later writes wait for, and what may not happen meanwhile. Scenarios from
//! QEMU's iotests 046 (concurrent requests touching the same cluster) and
//! 060 (overlap while COW is in flight); images checked with qemu-img and
//! read back with the real qemu-io.

mod common;

use block::drivers::blkdebug::{debug_is_suspended, BlkdebugDebugOps};
use block::qemu_io::QemuIo;
use block::{lock, BlockEvent, BlockGraph, NodeRef};
use common::*;
use serde_json::json;

/// A qemu-io session over a qcow2 image opened on blkdebug over a file, as
/// `qemu-io blkdebug::IMG` opens it; aio requests go to the graph's queue.
struct Session {
    g: BlockGraph,
    n: NodeRef,
    io: QemuIo,
}

impl Session {
    fn open(path: &str) -> Session {
        Session::open_with(json!({
            "driver": "qcow2",
            "discard": "unmap",
            "file": {"driver": "blkdebug", "image": {"driver": "file", "filename": path}},
        }))
    }

    fn open_with(o: serde_json::Value) -> Session {
        let mut g = BlockGraph::new();
        let n = g.open(o.as_object().unwrap()).expect("open image");
        let mut io = QemuIo::new();
        io.set_debug_ops(Box::new(BlkdebugDebugOps));
        io.set_inflight(g.inflight());
        Session { g, n, io }
    }

    /// Runs qemu-io commands; returns what they print (errors included).
    fn run(&mut self, cmds: &[&str]) -> String {
        let mut out = String::new();
        for c in cmds {
            if let Err(e) = self.io.run(Some(&self.n), c, &mut out) {
                out.push_str(&format!("{}\n", e));
            }
        }
        out
    }

    /// `resume <tag>`, then what the requests that finished print.
    fn resume(&mut self, tag: &str) -> String {
        let mut out = self.run(&[&format!("resume {}", tag)]);
        out.push_str(&self.g.run_inflight());
        out
    }

    fn suspended(&self, tag: &str) -> bool {
        debug_is_suspended(&self.n, tag)
    }

    /// Flushes and closes every node, so outside tools see the image.
    fn close(self) {
        let Session { mut g, n, io } = self;
        drop(io);
        g.close_all();
        drop(n);
        drop(g);
    }
}

/// The completion lines ("wrote ...", "read ...", "... failed: ...") of
/// qemu-io output, offsets kept.
fn completions(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            l.starts_with("wrote ")
                || l.starts_with("read ")
                || l.starts_with("discard ")
                || l.contains("failed")
        })
        .map(str::to_string)
        .collect()
}

const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

fn be64_at(path: &str, off: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    let f = std::fs::File::open(path).unwrap();
    f.read_exact_at(&mut b, off).unwrap();
    u64::from_be_bytes(b)
}

fn put16(path: &str, off: u64, v: u16) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_be_bytes(), off).unwrap();
}

/// Entry `i` of the image's active L1 table.
fn l1_entry(path: &str, i: u64) -> u64 {
    be64_at(path, be64_at(path, 40) + i * 8)
}

/// `qemu-img check` JSON of an image: (corruptions, leaks).
fn check_counts(path: &str) -> (u64, u64) {
    let out = std::process::Command::new("qemu-img")
        .args(["check", "--output=json", path])
        .output()
        .expect("qemu-img");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
    (
        v["corruptions"].as_u64().unwrap_or(0) + v["check-errors"].as_u64().unwrap_or(0),
        v["leaks"].as_u64().unwrap_or(0),
    )
}

/// Runs the real qemu-io on an image; asserts no pattern read failed.
fn assert_reads_back(path: &str, cmds: &[String]) {
    let mut args = vec!["-f".to_string(), "qcow2".to_string()];
    for c in cmds {
        args.push("-c".into());
        args.push(c.clone());
    }
    args.push(path.into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run("qemu-io", &a);
    assert!(ok, "qemu-io failed: {}", out);
    assert!(
        !out.contains("Pattern verification failed") && !out.contains("failed"),
        "{}",
        out
    );
    assert_eq!(out.matches("read ").count(), cmds.len(), "{}", out);
}

#[test]
fn overlap_while_cow_is_in_flight_fails_the_stopped_write_without_a_crash() {
    if !have_qemu_img() {
        return;
    }
    // Arrange: 060's image: two clusters written (the second forces an L2
    // table after the first data cluster), the first discarded (compat
    // 0.10 unallocates it, so a write to it needs COW), the second L2
    // table's refcount cleared, so that the next allocation lands on it.
    let d = tmpdir("inflight-060");
    let img = p(&d, "t.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        &img,
        "1G",
    ]);
    qemu_io("qcow2", &img, "write 0k 64k");
    qemu_io("qcow2", &img, "write 512M 64k");
    qemu_io("qcow2", &img, "discard 0k 64k");
    let second_l2 = l1_entry(&img, 1) & OFFSET_MASK;
    put16(&img, 0x2000c, 0);
    let mut s = Session::open(&img);

    // Act: stop a COW write at cow_read, corrupt by a synchronous write,
    // resume.
    let stopped = s.run(&["break cow_read 0", "aio_write 0k 1k", "wait_break 0"]);
    let was_suspended = s.suspended("0");
    let sync = s.run(&["write 64k 64k"]);
    let events: Vec<_> =
        s.g.take_events()
            .into_iter()
            .filter_map(|e| match e {
                BlockEvent::ImageCorrupted(c) => Some(c),
                _ => None,
            })
            .collect();
    let resumed = s.run(&["resume 0", "aio_flush"]);

    // Assert
    assert!(was_suspended);
    assert!(completions(&stopped).is_empty(), "{}", stopped);
    assert_eq!(
        completions(&sync),
        ["write failed: Input/output error"],
        "{}",
        sync
    );
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].msg,
        "Preventing invalid write on metadata (overlaps with active L2 table)"
    );
    assert_eq!(
        (events[0].offset, events[0].size),
        (Some(second_l2), Some(0x10000))
    );
    assert_eq!(
        completions(&resumed),
        ["aio_write failed: No medium found"],
        "{}",
        resumed
    );
    assert!(lock(&s.n).is_corrupt());
    s.close();
}

/// 046's images: a 128 MiB base whose 64 KiB clusters hold the pattern
/// `(c % 128 + c / 128) % 128` for cluster c < 32, and a 6 GiB overlay.
fn images_046(d: &std::path::Path) -> String {
    let base = p(d, "t.qcow2.base");
    let img = p(d, "t.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &base, "128M"]);
    let mut args = vec!["-f".to_string(), "qcow2".to_string()];
    for c in 0..32u64 {
        let pat = (c % 128 + c / 128) % 128;
        args.push("-c".into());
        args.push(format!("write -P {} {}k 64k", pat, c * 64));
    }
    args.push(base.clone());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run("qemu-io", &a);
    assert!(ok, "{}", out);
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &img, "6G",
    ]);
    img
}

/// One scenario of 046's overlay_io: commands up to `resume A` with
/// request A stopped at write_aio, then `resume A` and `aio_flush`.
struct Case {
    /// Synchronous set-up before the breakpoint (prints at once).
    setup: &'static [&'static str],
    stopped: &'static str,
    behind: &'static [&'static str],
    /// What 046.out shows for the set-up, then after the resume.
    setup_out: &'static [&'static str],
    resumed_out: &'static [&'static str],
}

const CASES_046: &[Case] = &[
    // Allocate the middle of cluster 1, then write before and after it.
    Case {
        setup: &[],
        stopped: "aio_write -P 10 0x18000 0x2000",
        behind: &[
            "aio_write -P 11 0x12000 0x2000",
            "aio_write -P 12 0x1c000 0x2000",
        ],
        setup_out: &[],
        resumed_out: &["wrote 8192/8192", "wrote 8192/8192", "wrote 8192/8192"],
    },
    // Sequential write: the middle of cluster 2, then on into cluster 3.
    Case {
        setup: &[],
        stopped: "aio_write -P 20 0x28000 0x2000",
        behind: &["aio_write -P 21 0x2a000 0x10000"],
        setup_out: &[],
        resumed_out: &["wrote 8192/8192", "wrote 65536/65536"],
    },
    // The same with a gap between both requests.
    Case {
        setup: &[],
        stopped: "aio_write -P 40 0x48000 0x2000",
        behind: &["aio_write -P 41 0x4c000 0x10000"],
        setup_out: &[],
        resumed_out: &["wrote 8192/8192", "wrote 65536/65536"],
    },
    // Sequential write, the next cluster already allocated.
    Case {
        setup: &["write -P 70 0x76000 0x8000", "aio_flush"],
        stopped: "aio_write -P 60 0x66000 0x2000",
        behind: &["aio_write -P 61 0x6a000 0xe000"],
        setup_out: &["wrote 32768/32768"],
        resumed_out: &["wrote 8192/8192", "wrote 57344/57344"],
    },
    // ... and physically in the right place.
    Case {
        setup: &[
            "write -P 89 0x80000 0x1000",
            "write -P 90 0x96000 0x8000",
            "aio_flush",
            "discard 0x80000 0x10000",
            "aio_flush",
        ],
        stopped: "aio_write -P 80 0x86000 0x2000",
        behind: &["aio_write -P 81 0x8a000 0xe000"],
        setup_out: &[
            "wrote 4096/4096",
            "wrote 32768/32768",
            "discard 65536/65536",
        ],
        resumed_out: &["wrote 8192/8192", "wrote 57344/57344"],
    },
    // Sequential write, the next cluster compressed.
    Case {
        setup: &[
            "write -P 109 0xa0000 0x1000",
            "write -c -P 110 0xb0000 0x10000",
            "aio_flush",
            "discard 0xa0000 0x10000",
            "aio_flush",
        ],
        stopped: "aio_write -P 100 0xa6000 0x2000",
        behind: &["aio_write -P 101 0xaa000 0xe000"],
        setup_out: &[
            "wrote 4096/4096",
            "wrote 65536/65536",
            "discard 65536/65536",
        ],
        resumed_out: &["wrote 8192/8192", "wrote 57344/57344"],
    },
    // Reverse sequential write.
    Case {
        setup: &[],
        stopped: "aio_write -P 121 0xdc000 0x2000",
        behind: &["aio_write -P 120 0xc4000 0x18000"],
        setup_out: &[],
        resumed_out: &["wrote 8192/8192", "wrote 98304/98304"],
    },
    // Reverse sequential write with a gap.
    Case {
        setup: &[],
        stopped: "aio_write -P 141 0xfc000 0x2000",
        behind: &["aio_write -P 140 0xe4000 0x14000"],
        setup_out: &[],
        resumed_out: &["wrote 8192/8192", "wrote 81920/81920"],
    },
    // Allocate an area in the middle, then overwrite it with a larger request.
    Case {
        setup: &[],
        stopped: "aio_write -P 161 0x10c000 0x8000",
        behind: &["aio_write -P 160 0x104000 0x18000"],
        setup_out: &[],
        resumed_out: &["wrote 32768/32768", "wrote 98304/98304"],
    },
];

/// 046's verify_io for a v3 image (discarded clusters read as zero).
const VERIFY_046: &[&str] = &[
    "read -P 0 0 0x10000",
    "read -P 1  0x10000 0x2000",
    "read -P 11 0x12000 0x2000",
    "read -P 1  0x14000 0x4000",
    "read -P 10 0x18000 0x2000",
    "read -P 1  0x1a000 0x2000",
    "read -P 12 0x1c000 0x2000",
    "read -P 1  0x1e000 0x2000",
    "read -P 2  0x20000 0x8000",
    "read -P 20 0x28000 0x2000",
    "read -P 21 0x2a000 0x10000",
    "read -P 3  0x3a000 0x6000",
    "read -P 4  0x40000 0x8000",
    "read -P 40 0x48000 0x2000",
    "read -P 4  0x4a000 0x2000",
    "read -P 41 0x4c000 0x10000",
    "read -P 5  0x5c000 0x4000",
    "read -P 6  0x60000 0x6000",
    "read -P 60 0x66000 0x2000",
    "read -P 6  0x68000 0x2000",
    "read -P 61 0x6a000 0xe000",
    "read -P 70 0x78000 0x6000",
    "read -P 7  0x7e000 0x2000",
    "read -P 0 0x80000 0x6000",
    "read -P 80 0x86000 0x2000",
    "read -P 0 0x88000 0x2000",
    "read -P 81 0x8a000 0xe000",
    "read -P 90 0x98000 0x6000",
    "read -P 9  0x9e000 0x2000",
    "read -P 0 0xa0000 0x6000",
    "read -P 100 0xa6000 0x2000",
    "read -P 0 0xa8000 0x2000",
    "read -P 101 0xaa000 0xe000",
    "read -P 110 0xb8000 0x8000",
    "read -P 12  0xc0000 0x4000",
    "read -P 120 0xc4000 0x18000",
    "read -P 121 0xdc000 0x2000",
    "read -P 13  0xde000 0x2000",
    "read -P 14  0xe0000 0x4000",
    "read -P 140 0xe4000 0x14000",
    "read -P 15  0xf8000 0x4000",
    "read -P 141 0xfc000 0x2000",
    "read -P 15  0xfe000 0x2000",
    "read -P 16  0x100000 0x4000",
    "read -P 160 0x104000 0x8000",
    // Undefined content for 0x10c000 0x8000.
    "read -P 160 0x114000 0x8000",
    "read -P 17  0x11c000 0x4000",
];

/// Completion lines without their offsets, as 046's filter leaves them.
fn sizes(out: &str) -> Vec<String> {
    completions(out)
        .iter()
        .map(|l| match l.split_once(" bytes at offset") {
            Some((head, _)) => head.to_string(),
            None => l.clone(),
        })
        .collect()
}

#[test]
fn concurrent_requests_touching_the_same_cluster_complete_as_in_iotest_046() {
    if !have_qemu_img() {
        return;
    }
    // Arrange
    let d = tmpdir("inflight-046");
    let img = images_046(&d);
    let mut s = Session::open(&img);

    for (i, case) in CASES_046.iter().enumerate() {
        // Act: A stops at write_aio; the others queue behind it.
        let setup = s.run(case.setup);
        let mut cmds = vec!["break write_aio A", case.stopped, "wait_break A"];
        cmds.extend_from_slice(case.behind);
        let stopped = s.run(&cmds);
        let was_suspended = s.suspended("A");
        let resumed = s.run(&["resume A", "aio_flush"]);

        // Assert: nothing completes before the resume, then A first.
        assert_eq!(sizes(&setup), case.setup_out, "case {}: {}", i, setup);
        assert!(was_suspended, "case {}", i);
        assert!(completions(&stopped).is_empty(), "case {}: {}", i, stopped);
        assert_eq!(sizes(&resumed), case.resumed_out, "case {}: {}", i, resumed);
        assert!(s.g.inflight().lock().unwrap().is_empty(), "case {}", i);
    }
    let ours = s.run(VERIFY_046);
    s.close();

    // Assert: our reads, the real qemu-io's and qemu-img check agree.
    assert_eq!(completions(&ours).len(), VERIFY_046.len(), "{}", ours);
    assert!(!ours.contains("Pattern verification failed"), "{}", ours);
    let verify: Vec<String> = VERIFY_046.iter().map(|c| c.to_string()).collect();
    assert_reads_back(&img, &verify);
    assert_check_clean(&img);
}

/// A small overlay (4 MiB, 64 KiB clusters) over a base whose cluster c
/// holds pattern c + 1.
fn small_chain(d: &std::path::Path) -> (String, String) {
    let base = p(d, "base.qcow2");
    let img = p(d, "top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", &base, "4M"]);
    let mut args = vec!["-f".to_string(), "qcow2".to_string()];
    for c in 0..64u64 {
        args.push("-c".into());
        args.push(format!("write -P {} {} 64k", c + 1, c << 16));
    }
    args.push(base.clone());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run("qemu-io", &a);
    assert!(ok, "{}", out);
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", &base, "-F", "qcow2", &img, "4M",
    ]);
    (base, img)
}

#[test]
fn a_write_stopped_at_write_aio_leaves_its_cluster_unlinked_until_resumed() {
    if !have_qemu_img() {
        return;
    }
    // Arrange
    let d = tmpdir("inflight-unlinked");
    let (_, img) = small_chain(&d);
    let mut s = Session::open(&img);

    // Act
    let stopped = s.run(&["break write_aio A", "aio_write -P 9 0x11000 0x1000"]);
    let meanwhile = s.run(&["read -P 2 0x10000 0x10000"]);
    let status = lock(&s.n).block_status(0x10000, 0x10000).unwrap();
    let resumed = s.resume("A");
    let after = s.run(&[
        "read -P 2 0x10000 0x1000",
        "read -P 9 0x11000 0x1000",
        "read -P 2 0x12000 0xe000",
    ]);
    s.close();

    // Assert
    assert!(completions(&stopped).is_empty(), "{}", stopped);
    assert_eq!(sizes(&meanwhile), ["read 65536/65536"], "{}", meanwhile);
    assert!(!status.allocated);
    assert_eq!(sizes(&resumed), ["wrote 4096/4096"], "{}", resumed);
    assert_eq!(completions(&after).len(), 3, "{}", after);
    assert!(!after.contains("failed"), "{}", after);
    assert_check_clean(&img);
}

#[test]
fn copy_on_write_signals_cow_read_the_backing_read_and_cow_write_in_qemu_order() {
    if !have_qemu_img() {
        return;
    }
    // Arrange: a breakpoint on every event of an allocating write.
    let d = tmpdir("inflight-cow-order");
    let (_, img) = small_chain(&d);
    let mut s = Session::open(&img);
    s.run(&[
        "break write_aio W",
        "break cow_read R",
        "break read_backing_aio B",
        "break cow_write C",
    ]);

    // Act: resume one stop after the other; at the last one another
    // allocating write (its own COW) goes through synchronously.
    let mut seen = Vec::new();
    s.run(&["aio_write -P 9 0x11000 0x1000"]);
    let mut outs = String::new();
    for tag in ["W", "R", "B", "C"] {
        seen.push(
            ["W", "R", "B", "C"]
                .into_iter()
                .filter(|t| s.suspended(t))
                .collect::<Vec<_>>(),
        );
        if tag == "C" {
            outs.push_str(&s.run(&["write -P 7 0x31000 0x1000"]));
        }
        outs.push_str(&s.resume(tag));
    }
    let after = s.run(&[
        "read -P 2 0x10000 0x1000",
        "read -P 9 0x11000 0x1000",
        "read -P 2 0x12000 0xe000",
        "read -P 4 0x30000 0x1000",
        "read -P 7 0x31000 0x1000",
        "read -P 4 0x32000 0xe000",
    ]);
    s.close();

    // Assert
    assert_eq!(seen, [["W"], ["R"], ["B"], ["C"]]);
    assert_eq!(
        sizes(&outs),
        ["wrote 4096/4096", "wrote 4096/4096"],
        "{}",
        outs
    );
    assert!(!after.contains("failed"), "{}", after);
    assert_check_clean(&img);
}

#[test]
fn synchronous_requests_behind_a_stopped_allocation_fail_busy_and_others_go_on() {
    if !have_qemu_img() {
        return;
    }
    // Arrange
    let d = tmpdir("inflight-busy");
    let (_, img) = small_chain(&d);
    let mut s = Session::open(&img);
    s.run(&["break write_aio A", "aio_write -P 10 0x18000 0x2000"]);

    // Act
    let behind = s.run(&[
        "write -P 11 0x12000 0x2000",
        "write -z 0x10000 0x10000",
        "discard 0x10000 0x10000",
        "write -c -P 11 0x10000 0x10000",
    ]);
    let elsewhere = s.run(&["write -P 12 0x20000 0x1000", "read -P 2 0x10000 0x10000"]);
    let resumed = s.resume("A");
    let after = s.run(&["write -P 11 0x12000 0x2000", "read -P 10 0x18000 0x2000"]);
    s.close();

    // Assert
    assert_eq!(
        completions(&behind),
        [
            "write failed: Device or resource busy",
            "write failed: Device or resource busy",
            "discard failed: Device or resource busy",
            "write failed: Device or resource busy",
        ],
        "{}",
        behind
    );
    assert_eq!(
        sizes(&elsewhere),
        ["wrote 4096/4096", "read 65536/65536"],
        "{}",
        elsewhere
    );
    assert_eq!(sizes(&resumed), ["wrote 8192/8192"], "{}", resumed);
    assert!(!after.contains("failed"), "{}", after);
    assert_check_clean(&img);
}

#[test]
fn a_zero_write_behind_a_stopped_allocation_waits_for_it() {
    if !have_qemu_img() {
        return;
    }
    // Arrange
    let d = tmpdir("inflight-zero");
    let (_, img) = small_chain(&d);
    let mut s = Session::open(&img);

    // Act
    let stopped = s.run(&[
        "break write_aio A",
        "aio_write -P 10 0x18000 0x2000",
        "aio_write -z 0x10000 0x10000",
    ]);
    let resumed = s.resume("A");
    let after = s.run(&["read -P 0 0x10000 0x10000"]);
    s.close();

    // Assert
    assert!(completions(&stopped).is_empty(), "{}", stopped);
    assert_eq!(
        sizes(&resumed),
        ["wrote 8192/8192", "wrote 65536/65536"],
        "{}",
        resumed
    );
    assert!(!after.contains("failed"), "{}", after);
    assert_check_clean(&img);
}

#[test]
fn metadata_is_not_restructured_while_a_write_is_stopped() {
    if !have_qemu_img() {
        return;
    }
    // Arrange
    let d = tmpdir("inflight-restructure");
    let (base, img) = small_chain(&d);
    let mut s = Session::open(&img);
    s.run(&["break cow_write A", "aio_write -P 10 0x18000 0x2000"]);
    let info = block::driver::SnapshotInfo {
        id: String::new(),
        name: "snap".into(),
        vm_state_size: 0,
        date_sec: 0,
        date_nsec: 0,
        vm_clock_nsec: 0,
    };

    // Act
    let refused = {
        let mut n = lock(&s.n);
        [
            n.snapshot_create(&info).err(),
            n.truncate(8 << 20).err(),
            n.change_backing_file(Some(&base), Some("qcow2")).err(),
            n.set_read_only(true).err(),
        ]
    };
    let resumed = s.resume("A");
    let allowed = {
        let mut n = lock(&s.n);
        [
            n.truncate(8 << 20).err(),
            n.snapshot_create(&info).err(),
            n.set_read_only(true).err(),
        ]
    };
    s.close();

    // Assert
    for e in &refused {
        assert!(
            matches!(e, Some(block::BlockError::InUse(_))),
            "{:?}",
            refused
        );
    }
    assert_eq!(sizes(&resumed), ["wrote 8192/8192"], "{}", resumed);
    assert!(allowed.iter().all(Option::is_none), "{:?}", allowed);
    assert_check_clean(&img);
}

#[test]
fn a_stopped_write_that_fails_leaves_no_allocation_behind_for_others_to_wait_on() {
    if !have_qemu_img() {
        return;
    }
    // Arrange: the COW write of the first request fails once.
    let d = tmpdir("inflight-fail");
    let (_, img) = small_chain(&d);
    let mut s = Session::open_with(json!({
        "driver": "qcow2",
        "file": {
            "driver": "blkdebug",
            "inject-error": [{"event": "cow_write", "errno": 5, "once": true}],
            "image": {"driver": "file", "filename": img},
        },
    }));

    // Act
    let stopped = s.run(&[
        "break cow_read A",
        "aio_write -P 10 0x18000 0x2000",
        "aio_write -P 11 0x12000 0x2000",
    ]);
    let resumed = s.resume("A");
    let after = s.run(&[
        "read -P 2 0x10000 0x2000",
        "read -P 11 0x12000 0x2000",
        "read -P 2 0x14000 0xc000",
    ]);
    s.close();

    // Assert: the failed allocation leaks its cluster, links nothing.
    assert!(completions(&stopped).is_empty(), "{}", stopped);
    assert_eq!(
        sizes(&resumed),
        ["aio_write failed: Input/output error", "wrote 8192/8192"],
        "{}",
        resumed
    );
    assert!(!after.contains("failed"), "{}", after);
    let (corruptions, leaks) = check_counts(&img);
    assert_eq!(corruptions, 0);
    assert!(leaks >= 1);
}

#[test]
fn a_stopped_write_dropped_unfinished_takes_its_allocation_off() {
    if !have_qemu_img() {
        return;
    }
    // Arrange
    let d = tmpdir("inflight-drop");
    let (_, img) = small_chain(&d);
    let s = Session::open(&img);
    block::drivers::blkdebug::debug_breakpoint(&s.n, "write_aio", "A").unwrap();
    let mut op = block::node::WriteOp::new(0x18000, block::request::ReqKind::Write { fua: false });
    let data = [10u8; 0x2000];
    let (r, _) = block::request::breakpoint::armed(|| lock(&s.n).poll_write(&mut op, &data));
    let busy = lock(&s.n).write(0x10000, &[1u8; 512], false).err();

    // Act
    drop(op);
    let after = lock(&s.n).write(0x10000, &[1u8; 512], false);
    s.close();

    // Assert
    assert!(matches!(r, block::request::Poll::Pending));
    assert!(
        matches!(busy, Some(block::BlockError::InUse(_))),
        "{:?}",
        busy
    );
    assert!(after.is_ok(), "{:?}", after);
    let (corruptions, _) = check_counts(&img);
    assert_eq!(corruptions, 0);
}

#[test]
fn a_read_stopped_below_the_backing_file_finishes_with_the_backing_data() {
    if !have_qemu_img() {
        return;
    }
    // Arrange: the base opened over its own blkdebug.
    let d = tmpdir("inflight-backing-read");
    let (base, img) = small_chain(&d);
    let mut s = Session::open_with(json!({
        "driver": "qcow2",
        "file": {"driver": "blkdebug", "image": {"driver": "file", "filename": img}},
        "backing": {
            "driver": "qcow2",
            "file": {"driver": "blkdebug", "image": {"driver": "file", "filename": base}},
        },
    }));
    let b = lock(&s.n).backing().expect("backing");
    block::drivers::blkdebug::debug_breakpoint(&b, "read_aio", "B").unwrap();
    s.run(&["break read_backing_aio A"]);

    // Act: stops first at the overlay's read_backing_aio, then in the base.
    let stopped = s.run(&["aio_read -P 3 0x20000 0x10000"]);
    let at_top = s.suspended("A");
    let resumed_top = s.resume("A");
    let in_base = debug_is_suspended(&b, "B");
    block::drivers::blkdebug::debug_resume(&b, "B").unwrap();
    let resumed = s.g.run_inflight();
    drop(b);
    s.close();

    // Assert
    assert!(completions(&stopped).is_empty(), "{}", stopped);
    assert!(at_top);
    assert!(completions(&resumed_top).is_empty(), "{}", resumed_top);
    assert!(in_base);
    assert_eq!(sizes(&resumed), ["read 65536/65536"], "{}", resumed);
}
