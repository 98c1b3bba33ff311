#!/usr/bin/env bash
#
# Builds a busybox initramfs for the slow boot test from Debian's
# busybox-static package (fetched with apt-get download; nothing else is
# downloaded). Its /init mounts /proc and /sys, prints the marker
# "RQEMU-INITRAMFS-OK" on the console and powers the machine off.
#
# Usage: scripts/build-initramfs.sh OUTPUT.cpio.gz
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

set -e
out=${1:?usage: build-initramfs.sh OUTPUT.cpio.gz}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && apt-get download busybox-static >/dev/null)
deb=$(ls "$tmp"/busybox-static_*.deb)
dpkg-deb -x "$deb" "$tmp/pkg"

root="$tmp/root"
mkdir -p "$root"/{bin,sbin,proc,sys,dev}
cp "$tmp/pkg/bin/busybox" "$root/bin/busybox"
for app in sh mount echo poweroff sleep cat; do
    ln -s busybox "$root/bin/$app"
done
cat >"$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "RQEMU-INITRAMFS-OK"
poweroff -f
INIT
chmod 755 "$root/init"

# The newc archive the kernel unpacks, written without cpio(1), which
# minimal systems lack.
python3 - "$root" "$out" <<'PY'
import gzip, os, stat, sys
root, out = sys.argv[1], sys.argv[2]
ino = [1000]
def entry(f, name, st, data):
    ino[0] += 1
    hdr = "070701" + "".join("%08x" % v for v in (
        ino[0], st.st_mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    f.write(hdr.encode() + name.encode() + b"\0")
    f.write(b"\0" * ((4 - (110 + len(name) + 1) % 4) % 4))
    f.write(data)
    f.write(b"\0" * ((4 - len(data) % 4) % 4))
with gzip.open(out, "wb") as f:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs) + sorted(files):
            p = os.path.join(d, n)
            name = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(p).encode()
            elif stat.S_ISREG(st.st_mode):
                data = open(p, "rb").read()
            else:
                data = b""
            entry(f, name, st, data)
    class Z: st_mode = 0
    entry(f, "TRAILER!!!", Z, b"")
PY
echo "$out"
