//! Throughput of the block layer on one image: `bench <image> <fmt> <bs> <mode> <total-MiB>`
//! with mode one of seqwrite, seqread, randwrite, randread. Prints MiB/s.

use std::time::Instant;

use block::{lock, BlockGraph};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: bench <image> <fmt> <bs> <mode> <total-MiB>");
        std::process::exit(2);
    }
    let bs: usize = a[3].parse().expect("bs");
    let total: u64 = a[5].parse::<u64>().expect("MiB") << 20;
    let mut g = BlockGraph::new();
    let n = g.open_image(&a[1], Some(&a[2]), false).expect("open");
    let size = lock(&n).length().expect("len");
    let count = total / bs as u64;
    let blocks = size / bs as u64;
    let mut buf = vec![0x5au8; bs];
    let mut x = 88172645463325252u64;
    let t = Instant::now();
    for i in 0..count {
        let off = if a[4].starts_with("rand") {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * bs as u64
        } else {
            (i % blocks) * bs as u64
        };
        let mut node = lock(&n);
        if a[4].ends_with("write") {
            node.write(off, &buf, false).expect("write");
        } else {
            node.read(off, &mut buf).expect("read");
        }
    }
    lock(&n).flush().expect("flush");
    let secs = t.elapsed().as_secs_f64();
    lock(&n).close().expect("close");
    println!(
        "{:.1} MiB/s ({} ops in {:.3}s)",
        total as f64 / secs / 1048576.0,
        count,
        secs
    );
}
