#!/usr/bin/env bash
#
# Start-up time and memory of a KVM guest, this emulator against QEMU,
# both running the project's test firmware (tests/firmware/fw.S) with
# -M pc -bios in the same run:
#   - time from exec to the firmware's first byte on COM1 (median of N);
#   - RSS of a running 512 MiB guest once the firmware has halted, and the
#     overhead beyond the guest pages it touched (a halted firmware touches
#     a handful of pages, so the overhead is the RSS minus those).
#
# Usage: scripts/bench-firmware.sh [RUNS] [OUR-BINARY] [QEMU-BINARY]
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

set -e
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-9}
ours=${2:-}
if [ -z "$ours" ]; then
    for c in "$root/target/release/qemu-system-x86_64" "$root/target/debug/qemu-system-x86_64"; do
        if [ -x "$c" ] && { [ -z "$ours" ] || [ "$c" -nt "$ours" ]; }; then
            ours=$c
        fi
    done
fi
theirs=${3:-$(command -v qemu-system-x86_64 || true)}
[ -x "$ours" ] || { echo "bench-firmware: build the emulator first" >&2; exit 1; }
[ -x "$theirs" ] || { echo "bench-firmware: no QEMU to compare with" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --64 -o "$tmp/fw.o" "$root/tests/firmware/fw.S"
ld -m elf_x86_64 -Ttext=0 -e 0 --oformat binary -o "$tmp/fw.bin" "$tmp/fw.o"

python3 - "$runs" "$tmp/fw.bin" "$ours" "$theirs" <<'PY'
import os, statistics, subprocess, sys, time

runs, fw, binaries = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
# Mode 4 of fw.S prints its boot count and halts: the guest stays up.
args = ["-M", "pc", "-accel", "kvm", "-m", "512M", "-display", "none", "-nodefaults",
        "-bios", fw, "-serial", "stdio", "-monitor", "none",
        "-device", "loader,data=4,data-len=1,addr=0x7200"]

def first_byte(binary):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    p.stdout.read(1)
    dt = time.perf_counter() - t0
    p.kill(); p.wait()
    return dt

def memory(binary):
    p = subprocess.Popen([binary] + args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    out = b""
    while b"boot" not in out or not out.endswith(b"\n"):
        out += p.stdout.read(1)
    time.sleep(0.5)
    rss = 0
    with open("/proc/%d/status" % p.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    p.kill(); p.wait()
    return rss

# Guest pages the firmware touches: the IVT/stack page, 0x7000 and the
# 64 KiB image in its two places.
touched_kib = 4 + 4 + 2 * 64
print("%-40s %14s %10s %14s" % ("binary", "first byte ms", "RSS MiB", "overhead MiB"))
res = {}
for b in binaries:
    t = statistics.median(first_byte(b) for _ in range(runs)) * 1000
    rss = statistics.median(memory(b) for _ in range(3))
    res[b] = (t, rss)
    label = b.split("/target/", 1)[1] if "/target/" in b else b
    print("%-40s %14.1f %10.1f %14.1f" % (label, t, rss / 1024, (rss - touched_kib) / 1024))
(t1, r1), (t2, r2) = res[binaries[0]], res[binaries[1]]
print("first byte: %.2fx of QEMU's time; RSS overhead: %.2fx of QEMU's"
      % (t1 / t2, (r1 - touched_kib) / max(1, r2 - touched_kib)))
PY
