#!/usr/bin/env bash
# Builds the emulator and starts it with a QMP socket at /tmp/qmp.sock and
# a small guest (scripts/demo/echo-guest.S) on KVM whose serial port is
# this terminal: it prints a banner and echoes what you type. Without a
# usable /dev/kvm it starts the machine-less `-M none` with QMP only.
# Quit with C-a x, or {"execute": "quit"} on the QMP socket.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install-deps.sh
cargo build --release --bin qemu-system-x86_64
BIN=target/release/qemu-system-x86_64
QMP=(-qmp unix:/tmp/qmp.sock,server,nowait)
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && command -v as >/dev/null && command -v objcopy >/dev/null; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    as --32 -o "$work/fw.o" scripts/demo/echo-guest.S
    objcopy -O binary -j .text "$work/fw.o" "$work/fw.bin"
    echo "QMP on /tmp/qmp.sock; guest serial on this terminal (C-a x quits)"
    "$BIN" -M pc -accel kvm -m 64M -bios "$work/fw.bin" -display none -serial mon:stdio "${QMP[@]}"
else
    echo "no usable /dev/kvm (or binutils): starting -M none with QMP on /tmp/qmp.sock"
    exec "$BIN" -M none -nodefaults -display none "${QMP[@]}"
fi
