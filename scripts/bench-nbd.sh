#!/bin/bash
# Copy a 1 GiB raw and a 1 GiB qcow2 export in and out with nbdcopy, against
# three servers in one run: ours (nbd-server-start over QMP), QEMU's
# qemu-system-x86_64 (same QMP commands) and qemu-nbd. Prints seconds per copy
# (best of $RUNS) and MiB/s, the serving process's CPU seconds for that copy,
# and our ratio to QEMU.
#
# The servers of one format run side by side and take turns, copy by copy,
# and every timed copy starts after `sync`: the page cache's writeback of
# earlier copies (1 GiB each) otherwise lands on whichever server comes next,
# and the load of other jobs on a shared machine drifts over minutes.
#
#   scripts/bench-nbd.sh [OUR_BINARY]
#
# OUR_BINARY defaults to target/release/qemu-system-x86_64. Set OURS=example
# to measure block/examples/nbd_serve instead (raw only; for use before the
# QMP commands are wired). Needs qemu-img, qemu-nbd, nbdcopy, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUR_BIN=${1:-$ROOT/target/release/qemu-system-x86_64}
QEMU_BIN=${QEMU_BIN:-/usr/bin/qemu-system-x86_64}
RUNS=${RUNS:-3}
SIZE=${SIZE:-1G}
WORK=$(mktemp -d /tmp/bench-nbd.XXXXXX)
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

for tool in qemu-img qemu-nbd nbdcopy python3; do
    command -v $tool >/dev/null || { echo "not run: $tool not installed"; exit 0; }
done

# Source data: incompressible, fully allocated, so no server can skip it.
head -c "$SIZE" /dev/urandom > "$WORK/data.raw"
qemu-img convert -f raw -O qcow2 "$WORK/data.raw" "$WORK/data.qcow2"

qmp() { # qmp SOCKET JSON...
    python3 - "$@" <<'PY'
import json, socket, sys, time
for _ in range(200):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); break
    except OSError:
        time.sleep(0.05)
f = s.makefile('rw'); f.readline()
def cmd(j):
    f.write(json.dumps(j) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if 'return' in r or 'error' in r:
            if 'error' in r:
                sys.exit("QMP error: %s" % r['error']['desc'])
            return
cmd({"execute": "qmp_capabilities"})
for a in sys.argv[2:]:
    cmd(json.loads(a))
PY
}

# start_emulator NAME BIN FMT PORT: serve src (read-only copy) and dst.
start_emulator() {
    local name=$1 bin=$2 fmt=$3 port=$4 sock=$WORK/$1.qmp
    cp "$WORK/data.$fmt" "$WORK/$name-src.$fmt"
    qemu-img create -q -f "$fmt" "$WORK/$name-dst.$fmt" "$SIZE"
    "$bin" -machine none -nodefaults -display none -qmp "unix:$sock,server=on,wait=off" \
        -drive "file=$WORK/$name-src.$fmt,format=$fmt,if=none,id=src,readonly=on" \
        -drive "file=$WORK/$name-dst.$fmt,format=$fmt,if=none,id=dst" >/dev/null 2>&1 &
    PIDS+=($!)
    qmp "$sock" \
        "{\"execute\":\"nbd-server-start\",\"arguments\":{\"addr\":{\"type\":\"inet\",\"data\":{\"host\":\"127.0.0.1\",\"port\":\"$port\"}}}}" \
        '{"execute":"nbd-server-add","arguments":{"device":"src"}}' \
        '{"execute":"nbd-server-add","arguments":{"device":"dst","writable":true}}'
}

start_qemu_nbd() { # FMT PORT_SRC PORT_DST
    local fmt=$1
    cp "$WORK/data.$fmt" "$WORK/qnbd-src.$fmt"
    qemu-img create -q -f "$fmt" "$WORK/qnbd-dst.$fmt" "$SIZE"
    qemu-nbd -r -t -f "$fmt" -x src -b 127.0.0.1 -p "$2" "$WORK/qnbd-src.$fmt" & PIDS+=($!)
    qemu-nbd -t -f "$fmt" -x dst -b 127.0.0.1 -p "$3" "$WORK/qnbd-dst.$fmt" & PIDS+=($!)
    sleep 0.5
}

start_example() { # FMT(raw) PORT_SRC PORT_DST
    cargo build -q --release -p block --example nbd_serve --manifest-path "$ROOT/Cargo.toml"
    local ex=$ROOT/target/release/examples/nbd_serve
    cp "$WORK/data.raw" "$WORK/ex-src.raw"
    qemu-img create -q -f raw "$WORK/ex-dst.raw" "$SIZE"
    "$ex" "$WORK/ex-src.raw" "tcp:127.0.0.1:$2" ro 2>/dev/null & PIDS+=($!)
    "$ex" "$WORK/ex-dst.raw" "tcp:127.0.0.1:$3" 2>/dev/null & PIDS+=($!)
    sleep 0.5
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

timed() { # SERVER_PID CMD...: "wall-seconds server-cpu-seconds", started
    # with no dirty pages about
    local pid=$1 t0 t1 c0 c1
    shift
    sync
    c0=$(ticks "$pid"); t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N); c1=$(ticks "$pid")
    echo "$(echo "$t1 - $t0" | bc) $(echo "($c1 - $c0) / $(getconf CLK_TCK)" | bc -l)"
}

declare -A BEST CPU
keep() { # KEY "WALL CPU": remember the fastest copy and its CPU time
    local wall=${2% *}
    if [ -n "${VERBOSE:-}" ]; then echo "$1: $2" >&2; fi
    if [ -z "${BEST[$1]:-}" ] || [ "$(echo "$wall < ${BEST[$1]}" | bc)" = 1 ]; then
        BEST[$1]=$wall CPU[$1]=${2#* }
    fi
}

bytes=$(stat -c %s "$WORK/data.raw")
mibs() { echo "$bytes / 1048576 / $1" | bc -l; }

port=21000
for fmt in raw qcow2; do
    names=() srcs=() dsts=() spids=() dpids=()
    if [ "${OURS:-}" = example ]; then
        if [ $fmt = raw ]; then
            start_example raw $port $((port + 1))
            names+=(ours) srcs+=("nbd://127.0.0.1:$port/disk") dsts+=("nbd://127.0.0.1:$((port + 1))/disk")
            spids+=("${PIDS[-2]}") dpids+=("${PIDS[-1]}")
        fi
    else
        start_emulator ours "$OUR_BIN" $fmt $port
        names+=(ours) srcs+=("nbd://127.0.0.1:$port/src") dsts+=("nbd://127.0.0.1:$port/dst")
        spids+=("${PIDS[-1]}") dpids+=("${PIDS[-1]}")
    fi
    start_emulator qemu "$QEMU_BIN" $fmt $((port + 2))
    names+=(qemu) srcs+=("nbd://127.0.0.1:$((port + 2))/src") dsts+=("nbd://127.0.0.1:$((port + 2))/dst")
    spids+=("${PIDS[-1]}") dpids+=("${PIDS[-1]}")
    start_qemu_nbd $fmt $((port + 3)) $((port + 4))
    names+=(qemu-nbd) srcs+=("nbd://127.0.0.1:$((port + 3))/src") dsts+=("nbd://127.0.0.1:$((port + 4))/dst")
    spids+=("${PIDS[-2]}") dpids+=("${PIDS[-1]}")
    BEST=()
    for _ in $(seq "$RUNS"); do
        for i in "${!names[@]}"; do
            keep "${names[$i]} out" "$(timed "${spids[$i]}" nbdcopy "${srcs[$i]}" null:)"
            keep "${names[$i]} in" "$(timed "${dpids[$i]}" nbdcopy "$WORK/data.raw" "${dsts[$i]}")"
        done
    done
    for n in "${names[@]}"; do
        out=${BEST["$n out"]} in=${BEST["$n in"]}
        printf "%-10s %-6s out %6.2fs %7.0f MiB/s cpu %5.2fs   in %6.2fs %7.0f MiB/s cpu %5.2fs\n" \
            "$n" "$fmt" "$out" "$(mibs "$out")" "${CPU["$n out"]}" "$in" "$(mibs "$in")" "${CPU["$n in"]}"
    done
    if [ -n "${BEST["ours out"]:-}" ]; then
        printf "%-10s %-6s out %6.2fx                          in %6.2fx\n" "ours/qemu" "$fmt" \
            "$(echo "${BEST["qemu out"]} / ${BEST["ours out"]}" | bc -l)" \
            "$(echo "${BEST["qemu in"]} / ${BEST["ours in"]}" | bc -l)"
    fi
    stop_all
    rm -f "$WORK"/*-src.* "$WORK"/*-dst.*
    port=$((port + 10))
done
