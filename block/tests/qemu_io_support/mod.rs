//! Shared by the qemu-io tests: images made with qemu-img, our interpreter
//! run over a node opened through the graph, the real qemu-io run on the
//! same file, and iotests' output filter.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use block::qemu_io::QemuIo;
use block::{BlockGraph, NodeRef};
use serde_json::{json, Value};

pub fn have_tools() -> bool {
    Command::new("qemu-io").arg("--version").output().is_ok()
        && Command::new("qemu-img").arg("--version").output().is_ok()
}

/// A fresh directory for one test.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qemu-io-it-{}-{}", std::process::id(), name));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

/// Creates an image with qemu-img; returns its path.
pub fn create(dir: &std::path::Path, name: &str, fmt: &str, size: &str, opts: &[&str]) -> String {
    let path = dir.join(name).to_string_lossy().into_owned();
    let mut args = vec!["create", "-q", "-f", fmt];
    for o in opts {
        args.push("-o");
        args.push(o);
    }
    args.push(&path);
    args.push(size);
    let out = Command::new("qemu-img")
        .args(&args)
        .output()
        .expect("qemu-img");
    assert!(out.status.success(), "qemu-img create: {:?}", out);
    path
}

/// Opens an image read-write with discard passed down, as qemu-io opens it.
pub fn open(graph: &mut BlockGraph, path: &str, fmt: &str) -> NodeRef {
    let opts: Value = json!({
        "driver": fmt,
        "discard": "unmap",
        "file": {"driver": "file", "filename": path},
    });
    let Value::Object(m) = opts else {
        unreachable!()
    };
    graph.open(&m).expect("open image")
}

/// Runs commands through our interpreter; an error is printed as qemu-io
/// prints it (own line).
pub fn ours(node: &NodeRef, cmds: &[&str]) -> String {
    let mut io = QemuIo::new();
    let mut out = String::new();
    for c in cmds {
        if let Err(e) = io.run(Some(node), c, &mut out) {
            out.push_str(&format!("{}\n", e));
        }
    }
    out
}

/// Runs commands through the real qemu-io (stdout unbuffered so stderr
/// lines stay in place).
pub fn theirs(fmt: &str, path: &str, cmds: &[&str]) -> String {
    let mut args: Vec<&str> = vec!["-o0", "qemu-io", "-f", fmt];
    for c in cmds {
        args.push("-c");
        args.push(c);
    }
    args.push(path);
    let out = Command::new("stdbuf")
        .args(&args)
        .output()
        .expect("qemu-io");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

fn in_class(c: char, class: &str) -> bool {
    c.is_ascii_digit() && class.contains('0') || class.contains(c)
}

/// Length of the run of `class` characters at the start of `s`.
fn run_len(s: &[char], class: &str) -> usize {
    s.iter().take_while(|&&c| in_class(c, class)).count()
}

/// Tries the statistics pattern of iotests' _filter_qemu_io at `s`;
/// returns the match length.
fn stats_match(s: &[char]) -> Option<usize> {
    let lit = |s: &[char], at: usize, l: &str| -> Option<usize> {
        let l: Vec<char> = l.chars().collect();
        (s.len() >= at + l.len() && s[at..at + l.len()] == l[..]).then_some(at + l.len())
    };
    let mut i = run_len(s, "0");
    i = lit(s, i, " ops; ")?;
    // "[0-9/:. sec]* (": the class contains the space, so back off to it.
    let n = run_len(&s[i..], "0/:. sec");
    let mut j = i + n;
    if j == i || s[j - 1] != ' ' || s.get(j) != Some(&'(') {
        return None;
    }
    j += 1;
    j += run_len(&s[j..], "0/.inf");
    j = lit(s, j, " ")?;
    j += run_len(&s[j..], "EPTGMKiBbytes");
    j = lit(s, j, "/sec and ")?;
    j += run_len(&s[j..], "0/.inf");
    lit(s, j, " ops/sec)")
}

/// iotests' _filter_qemu_io: statistics numbers and times become X.
pub fn filter_qemu_io(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let chars: Vec<char> = line.chars().collect();
        let mut done = false;
        for start in 0..chars.len() {
            if let Some(len) = stats_match(&chars[start..]) {
                let head: String = chars[..start].iter().collect();
                let tail: String = chars[start + len..].iter().collect();
                out.push_str(&head);
                out.push_str("X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)");
                out.push_str(&tail);
                done = true;
                break;
            }
        }
        if !done {
            out.push_str(line);
        }
    }
    out
}

/// Turns the `-C` line's timing fields into X.
pub fn filter_machine(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|l| {
            let f: Vec<&str> = l.trim_end().split(',').collect();
            if f.len() == 5 && f[0].parse::<u64>().is_ok() && f[2].contains(':') {
                format!("{},{},X,X,X\n", f[0], f[1])
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Rewrites what QEMU 7's qemu-io prints differently from the reference
/// for the commands the tests use.
pub fn as_reference(text: &str) -> String {
    // qemu-io 8 and later add `-r` (register the I/O buffer) to read.
    text.replace("Command \"", "command \"")
        .replace("read [-abCqrv]", "read [-abCqv]")
        .replace(" -r, -- register I/O buffer\n", "")
}

pub fn normalize(text: &str) -> String {
    filter_machine(&filter_qemu_io(text))
}

/// Separates the lines qemu-io writes on stderr (option and argument-count
/// errors, unknown commands) from the rest: the real tool's two streams
/// interleave differently when piped.
pub fn split_stderr(text: &str) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    for l in text.split_inclusive('\n') {
        let is_err = l.contains(": invalid option -- ")
            || l.contains(": option requires an argument -- ")
            || l.starts_with("bad argument count ")
            || (l.starts_with("command \"") && l.trim_end().ends_with("\" not found"));
        if is_err {
            err.push_str(l);
        } else {
            out.push_str(l);
        }
    }
    (out, err)
}
