#!/usr/bin/env python3
#
# Types lines into a human monitor on a socket and prints the session:
# each command's output is read up to the next "(qemu) " prompt.
#
# Usage: hmp-client.py ADDR < lines     (ADDR: unix path or tcp:HOST:PORT)
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import select
import socket
import sys
import time

TIMEOUT = 10.0
PROMPT = b"(qemu) "


def connect(addr):
    deadline = time.time() + TIMEOUT
    while True:
        try:
            if addr.startswith("tcp:"):
                host, port = addr[4:].rsplit(":", 1)
                return socket.create_connection((host, int(port)))
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(addr)
            return s
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.02)


def read_to_prompt(s):
    buf = b""
    while not buf.endswith(PROMPT):
        r, _, _ = select.select([s], [], [], TIMEOUT)
        if not r:
            return buf, "timeout"
        chunk = s.recv(65536)
        if not chunk:
            return buf, "eof"
        buf += chunk
    return buf, None


def out(b):
    sys.stdout.write(b.decode("utf-8", "replace").replace("\r", ""))


def main():
    s = connect(sys.argv[1])
    buf, end = read_to_prompt(s)
    out(buf)
    for line in sys.stdin:
        if end:
            break
        s.sendall(line.encode())
        buf, end = read_to_prompt(s)
        out(buf)
    if end:
        sys.stdout.write("\n(%s)\n" % end)
    else:
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    # Tests interleave our output with other programs': no block buffering.
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
