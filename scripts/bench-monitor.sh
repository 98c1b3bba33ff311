#!/usr/bin/env bash
#
# Side-by-side monitor benchmark against Debian's QEMU, in one run:
# exec-to-greeting time (median), idle RSS after the greeting, and QMP
# query-status round trips per second on one connection, sequential and
# pipelined.  Both binaries run as
#   qemu-system-x86_64 -M none -nodefaults -display none
# Installs qemu-system-x86 (apt) if QEMU is missing and builds our release
# binary if needed.
#
# Usage: scripts/bench-monitor.sh [--starts N] [--requests N]
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

set -eu
cd "$(dirname "$0")/.."

QEMU_REF="${QEMU_REF:-/usr/bin/qemu-system-x86_64}"
if [ ! -x "$QEMU_REF" ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing qemu-system-x86 ..." >&2
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
fi
OURS="${OURS:-$PWD/target/release/qemu-system-x86_64}"
if [ ! -x "$OURS" ]; then
    cargo build --release --bin qemu-system-x86_64 >&2
fi

PY=$(python3 -c 'import sys; print(sys.executable)')
ours_json=$("$PY" scripts/qmp-bench.py "$@" "$OURS")
qemu_json=$("$PY" scripts/qmp-bench.py "$@" "$QEMU_REF")

"$PY" - "$ours_json" "$qemu_json" "$("$QEMU_REF" -version | head -1)" "$("$OURS" -version | head -1)" <<'PY'
import json, os, platform, sys
o, q = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
print("machine: %s, %d cpus, Linux %s" % (cpu, os.cpu_count(), platform.release()))
print("QEMU: %s" % sys.argv[3])
print("ours: %s" % sys.argv[4])
print("command: qemu-system-x86_64 -M none -nodefaults -display none "
      "(greeting: %d starts; round trips: %d query-status)" % (o["starts"], o["requests"]))
print()
print("%-34s %14s %14s %10s" % ("", "rqemu", "QEMU", "ratio"))
rows = [
    ("exec to greeting, median (ms)", "greeting_ms_median", "%.2f", lambda a, b: b / a, "x faster"),
    ("idle RSS after greeting (KiB)", "rss_kib", "%d", lambda a, b: b / a, "x smaller"),
    ("QMP round trips/s, sequential", "rtt_per_s_sequential", "%.0f", lambda a, b: a / b, "x more"),
    ("QMP round trips/s, pipelined", "rtt_per_s_pipelined", "%.0f", lambda a, b: a / b, "x more"),
]
for label, key, fmt, ratio, word in rows:
    print("%-34s %14s %14s %7.1f%s" % (label, fmt % o[key], fmt % q[key], ratio(o[key], q[key]), " " + word))
PY
