//! Throughput figures for the reader and the writer. Ignored by default; run
//! `cargo test -p qmp --release -- --ignored --nocapture throughput`.

use super::{to_json_string, JsonStreamer};
use std::time::Instant;

fn sample_stream(total: usize) -> (Vec<u8>, usize) {
    let messages: [&[u8]; 3] = [
        b"{\"execute\": \"query-status\", \"id\": 12345}\n",
        b"{\"execute\": \"blockdev-add\", \"arguments\": {\"driver\": \"qcow2\", \"node-name\": \"disk0\", \"file\": {\"driver\": \"file\", \"filename\": \"/tmp/test image.qcow2\"}, \"read-only\": false, \"cache\": {\"direct\": true, \"no-flush\": false}}}\r\n",
        b"{ 'execute': 'human-monitor-command', 'arguments': { 'command-line': 'qemu-io disk0 \"write -P 0xa5 0 64k\"' } }\n",
    ];
    let mut data = Vec::with_capacity(total + 512);
    let mut count = 0;
    while data.len() < total {
        data.extend_from_slice(messages[count % messages.len()]);
        count += 1;
    }
    (data, count)
}

#[test]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
fn feed_throughput() {
    let (data, count) = sample_stream(64 << 20);
    let mut streamer = JsonStreamer::new();
    let mut out = Vec::new();
    let mut parsed = 0;
    let start = Instant::now();
    for chunk in data.chunks(4096) {
        streamer.feed(chunk, &mut out);
        parsed += out.iter().filter(|r| r.is_ok()).count();
        out.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(parsed, count);
    eprintln!(
        "feed: {:.0} MB/s, {:.0} messages/s ({} messages, {} bytes, 4 KiB reads)",
        data.len() as f64 / secs / 1e6,
        count as f64 / secs,
        count,
        data.len()
    );
}

#[test]
#[ignore = "benchmark; run with --release --ignored --nocapture"]
fn writer_throughput() {
    let reply = serde_json::json!({"return": [{"io-status": "ok", "device": "src", "busy": false,
        "len": 327680, "offset": 327680, "paused": false, "speed": 0, "ready": true, "type": "mirror"}]});
    let rounds = 200_000;
    let mut bytes = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        bytes += to_json_string(&reply, false).len();
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "writer: {:.0} MB/s, {:.0} replies/s",
        bytes as f64 / secs / 1e6,
        rounds as f64 / secs
    );
}
