#!/usr/bin/env bash
#
# Measures how fast KVM runs guest code here: a firmware loop of dec/jnz
# (tests/firmware/loop.S) under the emulator, timed from exec to exit.
# Prints "<instructions per second>" on stdout; exit status 1 when KVM or
# the tools are missing.
#
# Usage: scripts/kvm-speed-probe.sh [EMULATOR]   (default: the newest build)
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

set -e
root=$(cd "$(dirname "$0")/.." && pwd)
qemu=${1:-}
if [ -z "$qemu" ]; then
    for c in "$root/target/release/qemu-system-x86_64" "$root/target/debug/qemu-system-x86_64"; do
        if [ -x "$c" ] && { [ -z "$qemu" ] || [ "$c" -nt "$qemu" ]; }; then
            qemu=$c
        fi
    done
fi
[ -x "$qemu" ] || { echo "kvm-speed-probe: no emulator" >&2; exit 1; }
command -v as >/dev/null && command -v ld >/dev/null ||
    { echo "kvm-speed-probe: GNU as and ld are needed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --64 -o "$tmp/loop.o" "$root/tests/firmware/loop.S"
ld -m elf_x86_64 -Ttext=0 -e 0 --oformat binary -o "$tmp/loop.bin" "$tmp/loop.o"

# Runs ITERATIONS loops; prints the wall time in nanoseconds.
run_loop()
{
    local t0 t1 st
    t0=$(date +%s%N)
    set +e
    timeout 120 "$qemu" -M pc -accel kvm -m 16M -display none -nodefaults \
        -bios "$tmp/loop.bin" -device isa-debug-exit \
        -device "loader,data=$1,data-len=4,addr=0x7000" </dev/null >/dev/null 2>&1
    st=$?
    set -e
    t1=$(date +%s%N)
    # isa-debug-exit with 0 ends the process with status 1.
    [ "$st" -eq 1 ] || { echo "kvm-speed-probe: emulator failed (status $st)" >&2; exit 1; }
    echo $((t1 - t0))
}

# The start-up cost, measured with a single iteration, is taken off.
base=$(run_loop 1)
n=200000
t=$(run_loop $n)
while [ $((t - base)) -lt 200000000 ] && [ $n -lt 1000000000 ]; do
    n=$((n * 10))
    t=$(run_loop $n)
done
dt=$((t - base))
[ $dt -gt 0 ] || dt=1
echo $((2 * n * 1000000000 / dt))
