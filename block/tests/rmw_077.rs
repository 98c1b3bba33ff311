//! QEMU's iotest 077 (concurrent requests involving read-modify-write)
//! through our qemu-io, block by block: raw over blkdebug with `align=4096`,
//! aio requests stopped at breakpoints in flight in the `Inflight` queue,
//! which is polled after every command as the HMP `qemu-io` handler does.
//!
//! Each scenario pins down the order in which requests complete relative to
//! the `resume` commands. 077.out filters the offsets out; the orders below
//! are what QEMU 2.8's block/io.c gives (the reasoning is beside each
//! scenario). Terms: a write whose head or tail is unaligned is serialising
//! (its range widened to 4 KiB blocks); wait_serialising_requests makes a
//! request wait for the newest overlapping request in flight where either
//! is serialising, unless that one waits itself; a request waits again
//! before its RMW read and before its aligned write; whoever ends wakes its
//! waiters, which then check again from the start.

mod qemu_io_support;

use std::process::Command;

use block::drivers::blkdebug::{debug_is_suspended, BlkdebugDebugOps};
use block::qemu_io::QemuIo;
use block::request::inflight::lock_inflight;
use block::{BlockGraph, NodeRef};
use qemu_io_support::{have_tools, tmpdir};
use serde_json::json;

/// The graph 077 opens (`driver=raw,file.align=4k blkdebug::$TEST_IMG`).
struct Rig {
    graph: BlockGraph,
    node: NodeRef,
    io: QemuIo,
}

impl Rig {
    fn open(path: &str) -> Rig {
        let mut graph = BlockGraph::new();
        let o = json!({"driver": "raw", "file": {"driver": "blkdebug", "align": 4096,
                       "image": {"driver": "file", "filename": path}}});
        let node = graph.open(o.as_object().unwrap()).unwrap();
        let mut io = QemuIo::new();
        io.set_debug_ops(Box::new(BlkdebugDebugOps));
        io.set_inflight(graph.inflight());
        Rig { graph, node, io }
    }

    /// Runs 077 commands one by one; returns what happened in order: each
    /// `resume X` and every line qemu-io printed except the statistics and
    /// blkdebug's messages.
    /// `wait_break X` checks that a request is stopped at X (QEMU's would
    /// wait for it); `sleep` is dropped (our requests do not run on their own).
    fn run(&mut self, cmds: &[&str]) -> Vec<String> {
        let mut seen = Vec::new();
        for c in cmds {
            if c.starts_with("sleep") {
                continue;
            }
            if let Some(tag) = c.strip_prefix("wait_break ") {
                assert!(debug_is_suspended(&self.node, tag), "{c}: {seen:?}");
                continue;
            }
            if c.starts_with("resume") {
                seen.push(c.to_string());
            }
            let mut out = String::new();
            if let Err(e) = self.io.run(Some(&self.node), c, &mut out) {
                out.push_str(&format!("{e}\n"));
            }
            out.push_str(&self.graph.run_inflight());
            // blkdebug's own lines are iotest 061's; here the completions.
            seen.extend(
                out.lines()
                    .filter(|l| !l.contains(" ops; ") && !l.starts_with("blkdebug: "))
                    .map(str::to_string),
            );
        }
        assert!(lock_inflight(&self.graph.inflight()).is_empty(), "{seen:?}");
        seen
    }
}

fn wrote(len: u64, offset: u64) -> String {
    format!("wrote {len}/{len} bytes at offset {offset}")
}

fn resume(tag: &str) -> String {
    format!("resume {tag}")
}

/// A scenario of 077's test_io: its commands and the order they give.
struct Scenario {
    cmds: &'static [&'static str],
    expect: Vec<String>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        // A simple RMW request: head and tail come from one block read.
        Scenario {
            cmds: &["aio_write -P 10 0x200 0x200", "aio_flush"],
            expect: vec![wrote(512, 0x200)],
        },
        // Sequential RMW requests on one block, the first stopped before its
        // head read: the second waits for it. On resume the first goes on
        // (the second waits for it, so it does not wait back), writes and
        // wakes the second, which reads the block with the first's data.
        Scenario {
            cmds: &[
                "break pwritev_rmw_head A",
                "aio_write -P 10 0x1200 0x200",
                "wait_break A",
                "aio_write -P 11 0x1400 0x200",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: vec![resume("A"), wrote(512, 0x1200), wrote(512, 0x1400)],
        },
        // The same, the first stopped after its head read.
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_head A",
                "aio_write -P 10 0x2200 0x200",
                "wait_break A",
                "aio_write -P 11 0x2400 0x200",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: vec![resume("A"), wrote(512, 0x2200), wrote(512, 0x2400)],
        },
        // Chained dependencies: every later request skips the earlier ones
        // (they wait) and waits for the stopped first one. When it ends, the
        // waiters run in queue order; the first to run finds all others
        // still marked as waiting and goes on, the rest wait for it again:
        // they complete one by one in submission order.
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_tail A",
                "aio_write -P 10 0x5000 0x200",
                "wait_break A",
                "aio_write -P 11 0x5200 0x200",
                "aio_write -P 12 0x5400 0x200",
                "aio_write -P 13 0x5600 0x200",
                "aio_write -P 14 0x5800 0x200",
                "aio_write -P 15 0x5a00 0x200",
                "aio_write -P 16 0x5c00 0x200",
                "aio_write -P 17 0x5e00 0x200",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: {
                let mut v = vec![resume("A")];
                v.extend((0..8).map(|i| wrote(512, 0x5000 + i * 0x200)));
                v
            },
        },
        // Overlapping multiple requests. 0x6800+0x1000 spans both blocks and
        // waits for the newest overlap, 0x7e00 (B). Resuming A completes
        // 0x6000 alone; resuming B completes 0x7e00, then its waiter.
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_tail A",
                "aio_write -P 10 0x6000 0x200",
                "wait_break A",
                "break pwritev_rmw_after_head B",
                "aio_write -P 10 0x7e00 0x200",
                "wait_break B",
                "aio_write -P 11 0x6800 0x1000",
                "resume A",
                "sleep 100",
                "resume B",
                "aio_flush",
            ],
            expect: vec![
                resume("A"),
                wrote(512, 0x6000),
                resume("B"),
                wrote(512, 0x7e00),
                wrote(4096, 0x6800),
            ],
        },
        // The same, B resumed first: 0x9e00 completes and wakes 0x8800,
        // which now waits for 0x8000 (stopped at A, not waiting itself).
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_tail A",
                "aio_write -P 10 0x8000 0x200",
                "wait_break A",
                "break pwritev_rmw_after_head B",
                "aio_write -P 10 0x9e00 0x200",
                "wait_break B",
                "aio_write -P 11 0x8800 0x1000",
                "resume B",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: vec![
                resume("B"),
                wrote(512, 0x9e00),
                resume("A"),
                wrote(512, 0x8000),
                wrote(4096, 0x8800),
            ],
        },
        // 0xa800 waits for 0xa000 (A); 0xbe00 then skips it (it waits) and
        // stops at B. Resuming A completes 0xa000 and wakes 0xa800, which
        // now waits for 0xbe00; resuming B completes both.
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_tail A",
                "aio_write -P 10 0xa000 0x200",
                "wait_break A",
                "aio_write -P 11 0xa800 0x1000",
                "break pwritev_rmw_after_head B",
                "aio_write -P 10 0xbe00 0x200",
                "wait_break B",
                "resume A",
                "sleep 100",
                "resume B",
                "aio_flush",
            ],
            expect: vec![
                resume("A"),
                wrote(512, 0xa000),
                resume("B"),
                wrote(512, 0xbe00),
                wrote(4096, 0xa800),
            ],
        },
        // The same, B resumed first: 0xde00 does not wait for 0xc800 (which
        // waits) and completes; 0xc800 completes after 0xc000.
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_tail A",
                "aio_write -P 10 0xc000 0x200",
                "wait_break A",
                "aio_write -P 11 0xc800 0x1000",
                "break pwritev_rmw_after_head B",
                "aio_write -P 10 0xde00 0x200",
                "wait_break B",
                "resume B",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: vec![
                resume("B"),
                wrote(512, 0xde00),
                resume("A"),
                wrote(512, 0xc000),
                wrote(4096, 0xc800),
            ],
        },
        // Only RMW for the tail part: 0xf000 waits for 0xe000 (A).
        Scenario {
            cmds: &[
                "break pwritev_rmw_after_tail A",
                "aio_write -P 10 0xe000 0x1800",
                "wait_break A",
                "aio_write -P 11 0xf000 0xc00",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: vec![resume("A"), wrote(6144, 0xe000), wrote(3072, 0xf000)],
        },
        // The first write stops at pwritev, then at pwritev_done (C) while
        // still tracked: the second still waits and completes only after
        // it stopped at B, once the first has ended.
        Scenario {
            cmds: &[
                "break pwritev A",
                "aio_write -P 10 0x10000 0x800",
                "wait_break A",
                "break pwritev_rmw_after_tail B",
                "aio_write -P 11 0x10000 0x400",
                "break pwritev_done C",
                "resume A",
                "wait_break C",
                "resume C",
                "sleep 100",
                "wait_break B",
                "resume B",
                "aio_flush",
            ],
            expect: vec![
                resume("A"),
                resume("C"),
                wrote(2048, 0x10000),
                resume("B"),
                wrote(1024, 0x10000),
            ],
        },
        // An aligned write is not serialising, but waits for the serialising
        // one stopped at pwritev that it overlaps.
        Scenario {
            cmds: &[
                "break pwritev A",
                "aio_write -P 10 0x11000 0x800",
                "wait_break A",
                "aio_write -P 11 0x11000 0x1000",
                "sleep 100",
                "resume A",
                "aio_flush",
            ],
            expect: vec![resume("A"), wrote(2048, 0x11000), wrote(4096, 0x11000)],
        },
    ]
}

/// 077's verify_io: (pattern, offset, length).
const VERIFY: &[(u8, u64, u64)] = &[
    (0, 0, 0x200),
    (10, 0x200, 0x200),
    (0, 0x400, 0xc00),
    (0, 0x1000, 0x200),
    (10, 0x1200, 0x200),
    (11, 0x1400, 0x200),
    (0, 0x1600, 0xa00),
    (0, 0x2000, 0x200),
    (10, 0x2200, 0x200),
    (11, 0x2400, 0x200),
    (0, 0x2600, 0xa00),
    (10, 0x5000, 0x200),
    (11, 0x5200, 0x200),
    (12, 0x5400, 0x200),
    (13, 0x5600, 0x200),
    (14, 0x5800, 0x200),
    (15, 0x5a00, 0x200),
    (16, 0x5c00, 0x200),
    (17, 0x5e00, 0x200),
    (10, 0x6000, 0x200),
    (0, 0x6200, 0x600),
    (11, 0x6800, 0x1000),
    (0, 0x7800, 0x600),
    (10, 0x7e00, 0x200),
    (10, 0x8000, 0x200),
    (0, 0x8200, 0x600),
    (11, 0x8800, 0x1000),
    (0, 0x9800, 0x600),
    (10, 0x9e00, 0x200),
    (10, 0xa000, 0x200),
    (0, 0xa200, 0x600),
    (11, 0xa800, 0x1000),
    (0, 0xb800, 0x600),
    (10, 0xbe00, 0x200),
    (10, 0xc000, 0x200),
    (0, 0xc200, 0x600),
    (11, 0xc800, 0x1000),
    (0, 0xd800, 0x600),
    (10, 0xde00, 0x200),
    (10, 0xe000, 0x1000),
    (11, 0xf800, 0x400),
    (0, 0xfc00, 0x400),
    (11, 0x10000, 0x400),
    (10, 0x10400, 0x400),
    (11, 0x11800, 0x800),
];

/// The real qemu-io running 077's test_io on `path` (sleeps kept: its
/// requests complete on its own event loop).
fn qemu_io_077(path: &str) {
    let mut script = format!("open -o driver=raw,file.align=4k blkdebug::{path}\n");
    for s in scenarios() {
        for c in s.cmds {
            script.push_str(c);
            script.push('\n');
        }
    }
    script.push_str("quit\n");
    let mut child = Command::new("qemu-io")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("qemu-io");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(script.as_bytes()).expect("script");
    }
    let out = child.wait_with_output().expect("qemu-io");
    assert!(out.status.success(), "qemu-io: {out:?}");
}

#[test]
fn iotest_077_requests_complete_in_qemu_order_and_leave_077s_content() {
    // Arrange
    let dir = tmpdir("rmw077");
    let ours = dir.join("ours.raw").to_string_lossy().into_owned();
    block::create_image("raw", &ours, Some(128 << 20), &Default::default()).unwrap();
    let mut rig = Rig::open(&ours);

    // Act and assert: each scenario's completion order.
    for s in scenarios() {
        let seen = rig.run(s.cmds);
        assert_eq!(seen, s.expect, "{:?}", s.cmds);
    }

    // Assert: 077's verify reads.
    let verify: Vec<String> = VERIFY
        .iter()
        .map(|(p, off, len)| format!("read -P {p} {off:#x} {len:#x}"))
        .collect();
    let cmds: Vec<&str> = verify.iter().map(String::as_str).collect();
    let seen = rig.run(&cmds);
    let want: Vec<String> = VERIFY
        .iter()
        .map(|(_, off, len)| format!("read {len}/{len} bytes at offset {off}"))
        .collect();
    assert_eq!(seen, want);
    drop(rig);

    // Assert: the same content as QEMU's qemu-io leaves.
    if !have_tools() {
        eprintln!("qemu-io/qemu-img missing: content not compared with QEMU's");
        return;
    }
    let theirs = dir.join("theirs.raw").to_string_lossy().into_owned();
    block::create_image("raw", &theirs, Some(128 << 20), &Default::default()).unwrap();
    qemu_io_077(&theirs);
    let cmp = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw", &ours, &theirs])
        .output()
        .expect("qemu-img");
    assert!(cmp.status.success(), "qemu-img compare: {cmp:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
