#!/usr/bin/env python3
#
# Measures one QMP server binary: exec-to-greeting time (median of N
# starts), resident memory once idle after negotiation, and query-status
# round trips per second on one unix-socket connection, sequential and
# pipelined.  Prints one JSON object.
#
# Usage: qmp-bench.py [--starts N] [--requests N] BINARY [ARGS...]
#   ARGS default to: -M none -nodefaults -display none
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def greeting_time(cmd):
    """Seconds from exec to the first byte of the greeting on stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd + ["-qmp", "stdio"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline()
    t1 = time.perf_counter()
    if b'"QMP"' not in line:
        raise RuntimeError("no greeting from %s: %r" % (cmd[0], line))
    p.kill()
    p.wait()
    return t1 - t0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def count_replies(self, n):
        """Reads until n lines with a reply have arrived."""
        got = 0
        while got < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            got += sum(1 for l in lines if l.startswith(b'{"return"'))
        return got


def main():
    args = sys.argv[1:]
    starts, requests = 21, 10000
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--starts":
            starts = int(args.pop(0))
        elif opt == "--requests":
            requests = int(args.pop(0))
    binary, extra = args[0], args[1:]
    cmd = [binary] + (extra or ["-M", "none", "-nodefaults", "-display", "none"])

    times = [greeting_time(cmd) for _ in range(starts)]

    tmp = tempfile.mkdtemp(prefix="qmp-bench-")
    path = os.path.join(tmp, "qmp.sock")
    p = subprocess.Popen(cmd + ["-qmp", "unix:%s,server,nowait" % path],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    s = socket.socket(socket.AF_UNIX)
    for _ in range(500):
        try:
            s.connect(path)
            break
        except OSError:
            time.sleep(0.01)
    r = Reader(s)
    r.line()
    s.sendall(b'{"execute": "qmp_capabilities"}\n')
    r.line()
    time.sleep(0.5)
    rss = rss_kib(p.pid)

    req = b'{"execute": "query-status"}\n'
    t0 = time.perf_counter()
    for _ in range(requests):
        s.sendall(req)
        r.line()
    seq = requests / (time.perf_counter() - t0)

    blob = req * requests
    t0 = time.perf_counter()
    w = threading.Thread(target=s.sendall, args=(blob,))
    w.start()
    r.count_replies(requests)
    w.join()
    pipe = requests / (time.perf_counter() - t0)

    s.sendall(b'{"execute": "quit"}\n')
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
    s.close()
    try:
        os.unlink(path)
    except OSError:
        pass
    os.rmdir(tmp)

    print(json.dumps({
        "binary": binary,
        "greeting_ms_median": statistics.median(times) * 1000,
        "greeting_ms_min": min(times) * 1000,
        "rss_kib": rss,
        "rtt_per_s_sequential": seq,
        "rtt_per_s_pipelined": pipe,
        "starts": starts,
        "requests": requests,
    }))


if __name__ == "__main__":
    main()
