#!/usr/bin/env bash
#
# Benchmarks dump-guest-memory: a guest whose RAM holds a realistic mix of
# pages (zero, text-like, random) is dumped in every format, by this
# emulator and by the system's QEMU in the same run.
#
# Usage: scripts/bench-dump.sh [-s SIZE_MIB] [-r RUNS] [-o OUTDIR] [-q QEMU] [-c]
#   SIZE_MIB  guest RAM (default 1024)
#   RUNS      dumps per format and emulator; the best is reported (default 3)
#   OUTDIR    where the dumps are written (default: a directory in $TMPDIR)
#   QEMU      reference emulator (default: qemu-system-x86_64 in PATH that is
#             not this project's)
#   -c        also check every dump against the RAM image with
#             tests/qemu-iotests/dump-reader.py (untimed)
#
# Guest RAM is filled from the host: with `-object memory-backend-file,
# share=on -numa node,memdev=` mapping a pre-filled file when the emulator
# accepts it (the guest is then started with -S under KVM and never runs),
# otherwise through qtest `b64write` under accel=qtest (Debian's QEMU has no
# qtest accelerator; this emulator's -numa may not be wired yet). Either way
# no guest code runs and both hold the same bytes. The fill is not timed. A dump is timed from the QMP command to its reply.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

set -euo pipefail

SIZE_MIB=1024
RUNS=3
OUTDIR=""
REF_QEMU=""
CHECK=0
while getopts "s:r:o:q:c" opt; do
    case $opt in
    s) SIZE_MIB=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    o) OUTDIR=$OPTARG ;;
    q) REF_QEMU=$OPTARG ;;
    c) CHECK=1 ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
    esac
done

[ "$SIZE_MIB" -le 2048 ] || { echo "at most 2048 MiB (RAM stays below the PCI hole)" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OURS="$ROOT/target/release/qemu-system-x86_64"
[ -x "$OURS" ] || { echo "build first: cargo build --release" >&2; exit 1; }
if [ -z "$REF_QEMU" ]; then
    REF_QEMU=$(command -v qemu-system-x86_64 || true)
    [ "$REF_QEMU" = "$OURS" ] && REF_QEMU=/usr/bin/qemu-system-x86_64
fi
[ -x "$REF_QEMU" ] || { echo "reference QEMU not found (use -q)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-dump.XXXXXX")
OUTDIR=${OUTDIR:-$WORK}
mkdir -p "$OUTDIR"
trap 'rm -rf "$WORK"; rm -f "$OUTDIR"/bench-dump.*' EXIT

python3 - "$OURS" "$REF_QEMU" "$SIZE_MIB" "$RUNS" "$WORK" "$OUTDIR" "$CHECK" \
    "$ROOT/tests/qemu-iotests/dump-reader.py" <<'PY'
import base64, json, os, random, socket, subprocess, sys, time

ours, ref, size_mib, runs, work, outdir, check, reader = sys.argv[1:9]
size = int(size_mib) << 20
runs = int(runs)
PAGE = 4096
FORMATS = ["elf", "kdump-zlib", "kdump-lzo", "kdump-snappy"]


def make_image(path):
    """A quarter zero pages, half text-like pages, a quarter random pages,
    spread by a fixed seed."""
    rnd = random.Random(2026)
    words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
             for _ in range(2000)]
    text = []
    for _ in range(512):
        s = " ".join(rnd.choice(words) for _ in range(900)).encode()
        text.append((s * 2)[:PAGE])
    zero = bytes(PAGE)
    kinds = []
    with open(path, "wb") as f:
        chunk = []
        for i in range(size // PAGE):
            k = rnd.random()
            if k < 0.25:
                chunk.append(zero)
                kinds.append(0)
            elif k < 0.75:
                chunk.append(text[rnd.randrange(len(text))])
                kinds.append(1)
            else:
                chunk.append(rnd.randbytes(PAGE))
                kinds.append(2)
            if len(chunk) == 256:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))
    return kinds


class Qmp:
    def __init__(self, path):
        for _ in range(400):
            self.s = socket.socket(socket.AF_UNIX)
            try:
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                time.sleep(0.05)
        self.f = self.s.makefile("rwb")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        obj = {"execute": name}
        if args:
            obj["arguments"] = args
        self.f.write(json.dumps(obj).encode() + b"\n")
        self.f.flush()
        while True:
            o = json.loads(self.f.readline())
            if "return" in o or "error" in o:
                return o


def accepts_memdev(prog):
    r = subprocess.run([prog, "-machine", "pc,accel=kvm", "-S", "-m", "16M", "-nodefaults",
                        "-display", "none", "-object",
                        "memory-backend-ram,id=m,size=16M", "-numa", "node,memdev=m",
                        "-qmp", "stdio"], input=b'{"execute":"qmp_capabilities"}\n'
                       b'{"execute":"quit"}\n', capture_output=True, timeout=30)
    return r.returncode == 0


def start(prog, tag, image, use_memdev):
    qsock = os.path.join(work, tag + ".qmp")
    tsock = os.path.join(work, tag + ".qtest")
    args = [prog, "-m", "%dM" % (size >> 20), "-nodefaults",
            "-display", "none", "-qmp", "unix:%s,server,nowait" % qsock]
    if use_memdev:
        # Stopped from the start (-S): the guest never runs, RAM is the file.
        args += ["-machine", "pc,accel=kvm", "-S", "-object", "memory-backend-file,id=m,size=%dM,mem-path=%s,share=on"
                 % (size >> 20, image), "-numa", "node,memdev=m"]
    else:
        args += ["-machine", "pc,accel=qtest", "-qtest", "unix:%s,server,nowait" % tsock]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    q = Qmp(qsock)
    if not use_memdev:
        t = socket.socket(socket.AF_UNIX)
        t.connect(tsock)
        tf = t.makefile("rwb")
        with open(image, "rb") as f:
            addr = 0
            while addr < size:
                data = f.read(1 << 20)
                if data.count(0) != len(data):
                    tf.write(b"b64write 0x%x 0x%x %s\n" % (addr, len(data), base64.b64encode(data)))
                    tf.flush()
                    line = tf.readline()
                    if not line.startswith(b"OK"):
                        raise SystemExit("%s: qtest b64write failed: %r" % (tag, line[:200]))
                addr += len(data)
        t.close()
    return p, q


def bench(prog, tag, image, use_memdev):
    p, q = start(prog, tag, image, use_memdev)
    caps = q.cmd("query-dump-guest-memory-capability")["return"]["formats"]
    res = {}
    for fmt in FORMATS:
        if fmt not in caps:
            continue
        best = None
        out = os.path.join(outdir, "bench-dump.%s.%s" % (tag, fmt))
        for _ in range(runs):
            if os.path.exists(out):
                os.unlink(out)
            t0 = time.perf_counter()
            r = q.cmd("dump-guest-memory", paging=False, protocol="file:" + out, format=fmt)
            dt = time.perf_counter() - t0
            if "error" in r:
                raise SystemExit("%s %s: %s" % (tag, fmt, r["error"]["desc"]))
            best = dt if best is None else min(best, dt)
        res[fmt] = (best, os.path.getsize(out))
        if check == "1":
            kind = "elf" if fmt == "elf" else "kdump"
            # From 1 MiB up: below it QEMU shows its BIOS shadow, not the image.
            r = subprocess.run([sys.executable, reader, kind, out, image_hi + "@0x100000"],
                               capture_output=True, text=True)
            lines = [l for l in r.stdout.splitlines() if "compared" in l or "kinds" in l
                     or "zero pages" in l or "FAIL" in l]
            print("check %s %s: %s" % (tag, fmt, "; ".join(lines)))
        os.unlink(out)
    q.cmd("quit")
    p.wait(timeout=30)
    return res


def disk_speed():
    path = os.path.join(outdir, "bench-dump.disk")
    buf = os.urandom(1 << 20)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(buf)
    dt = time.perf_counter() - t0
    os.unlink(path)
    return dt


image = os.path.join(work, "ram.img")
make_image(image)
image_hi = os.path.join(work, "ram-hi.img")
if check == "1":
    with open(image, "rb") as f, open(image_hi, "wb") as g:
        f.seek(1 << 20)
        while True:
            b = f.read(1 << 24)
            if not b:
                break
            g.write(b)
how = {True: "memory-backend-file share=on, -S under KVM",
       False: "qtest b64write under accel=qtest"}
m_ours, m_ref = accepts_memdev(ours), accepts_memdev(ref)
print("guest RAM %d MiB: 25%% zero, 50%% text-like, 25%% random pages" % (size >> 20))
print("filled from the host: ours by %s, QEMU by %s" % (how[m_ours], how[m_ref]))
print("dumps written to %s; best of %d runs" % (outdir, runs))
print("reference: %s" % subprocess.run([ref, "--version"], capture_output=True,
                                        text=True).stdout.splitlines()[0])
disk = disk_speed()
print("plain write of the same size to that directory: %.2f s (%.0f MiB/s)"
      % (disk, (size >> 20) / disk))
ro = bench(ours, "ours", image, m_ours)
rq = bench(ref, "qemu", image, m_ref)
print()
print("%-13s %10s %10s %12s %12s %8s" % ("format", "ours s", "QEMU s", "ours MiB", "QEMU MiB", "speedup"))
for fmt in FORMATS:
    if fmt not in ro:
        continue
    o = ro[fmt]
    qd = rq.get(fmt)
    if qd:
        print("%-13s %10.2f %10.2f %12.1f %12.1f %7.2fx" % (fmt, o[0], qd[0], o[1] / 2**20,
                                                          qd[1] / 2**20, qd[0] / o[0]))
    else:
        print("%-13s %10.2f %10s %12.1f %12s %8s" % (fmt, o[0], "-", o[1] / 2**20, "-", "-"))
PY
