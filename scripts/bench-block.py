#!/usr/bin/env python3
#
# Block I/O throughput through HMP `qemu-io` on both sides: our binary and
# Debian's QEMU run the same qemu-io commands (sent as human-monitor-command
# over QMP, pipelined) on the same image files in one run. Workloads:
# sequential and random 4 KiB and 64 KiB reads and writes on raw and qcow2
# (fresh and fully allocated), and reads through a 3-deep qcow2 chain.
#
#   scripts/bench-block.py [--mib N] [--ours BIN] [--qemu BIN] [--dir DIR]
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import argparse, json, os, random, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def qemu_img(*args):
    subprocess.run(["qemu-img"] + list(args), check=True, stdout=subprocess.DEVNULL)


class Vm:
    def __init__(self, binary, drive, sock):
        self.p = subprocess.Popen(
            [binary, "-M", "none", "-nodefaults", "-display", "none",
             "-drive", drive, "-qmp", "unix:%s,server,nowait" % sock],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(400):
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(sock)
                break
            except OSError:
                time.sleep(0.025)
        self.f = self.s.makefile("rwb")
        self.f.readline()
        self.cmd({"execute": "qmp_capabilities"})

    def cmd(self, c):
        self.f.write((json.dumps(c) + "\n").encode())
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r or "error" in r:
                return r

    def hmp_batch(self, lines):
        """Sends every line pipelined, then waits for all replies."""
        out = b"".join((json.dumps({"execute": "human-monitor-command",
                                    "arguments": {"command-line": l}}) + "\n").encode()
                       for l in lines)
        t = time.perf_counter()
        self.f.write(out)
        self.f.flush()
        n = 0
        while n < len(lines):
            r = json.loads(self.f.readline())
            if "return" in r or "error" in r:
                n += 1
        return time.perf_counter() - t

    def close(self):
        try:
            self.cmd({"execute": "quit"})
        except Exception:
            pass
        self.p.wait(timeout=30)


def workload(kind, bs, size, rnd):
    n = size // bs
    offs = [i * bs for i in range(n)]
    if rnd:
        random.Random(1).shuffle(offs)
    op = "read" if kind == "read" else "write -P 0x5a"
    return ["qemu-io d0 \"%s %d %d\"" % (op, o, bs) for o in offs]


def run(binary, drive, lines, sock):
    if os.path.exists(sock):
        os.unlink(sock)
    vm = Vm(binary, drive, sock)
    try:
        return vm.hmp_batch(lines)
    finally:
        vm.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--ours", default=os.path.join(ROOT, "target/release/qemu-system-x86_64"))
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    a = ap.parse_args()
    if not os.path.exists(a.qemu) or os.path.realpath(a.qemu) == os.path.realpath(a.ours):
        print("not run: QEMU (Debian's qemu-system-x86) is not installed")
        return 0
    size = a.mib << 20
    work = tempfile.mkdtemp(prefix="bench-block.", dir=a.dir)
    sock = os.path.join(work, "qmp.sock")
    try:
        raw = os.path.join(work, "t.raw")
        fresh = os.path.join(work, "fresh.qcow2")
        full = os.path.join(work, "full.qcow2")
        base, mid, top = (os.path.join(work, n) for n in ("c0.qcow2", "c1.qcow2", "c2.qcow2"))
        qemu_img("create", "-f", "raw", raw, str(size))
        subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 1 0 %d" % size, raw],
                       check=True, stdout=subprocess.DEVNULL)
        qemu_img("convert", "-f", "raw", "-O", "qcow2", raw, full)
        qemu_img("create", "-f", "qcow2", base, str(size))
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 2 0 %d" % size, base],
                       check=True, stdout=subprocess.DEVNULL)
        qemu_img("create", "-f", "qcow2", "-b", base, "-F", "qcow2", mid)
        qemu_img("create", "-f", "qcow2", "-b", mid, "-F", "qcow2", top)
        rows = []
        cases = []
        for img, fmt, label, fresh_each in ((raw, "raw", "raw", False),
                                             (fresh, "qcow2", "qcow2 fresh", True),
                                             (full, "qcow2", "qcow2 allocated", False)):
            for kind in ("write", "read"):
                for bs in (4096, 65536):
                    for rnd in (False, True):
                        cases.append((img, fmt, label, fresh_each, kind, bs, rnd))
        cases.append((top, "qcow2", "3-deep chain", False, "read", 65536, False))
        for img, fmt, label, fresh_each, kind, bs, rnd in cases:
            lines = workload(kind, bs, size, rnd)
            res = []
            for binary in (a.ours, a.qemu):
                if fresh_each:
                    qemu_img("create", "-f", "qcow2", img, str(size))
                drive = "file=%s,format=%s,if=none,id=d0" % (img, fmt)
                res.append(run(binary, drive, lines, sock))
            mib = size / (1 << 20)
            rows.append((label, "%s %s %dk" % ("rand" if rnd else "seq", kind, bs // 1024),
                         mib / res[0], mib / res[1]))
        print("%-16s %-16s %12s %12s %7s" % ("image", "workload", "ours MiB/s", "QEMU MiB/s", "ratio"))
        for label, w, o, q in rows:
            print("%-16s %-16s %12.1f %12.1f %6.2fx" % (label, w, o, q, o / q))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
