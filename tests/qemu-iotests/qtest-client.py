#!/usr/bin/env python3
#
# Drives the qtest protocol as QEMU's libqtest does: listen on a unix
# socket, start the emulator with "-qtest unix:SOCK" so it connects to us,
# then send one command per stdin line and print "> cmd" / "< reply".
#
# Usage: qtest-client.py SOCKDIR -- EMULATOR ARGS... < commands
# At the end the emulator gets SIGTERM and its exit status is printed.
# A line "!wait-for PATH" pauses (up to 10 s) until PATH exists, so a test
# can use another monitor of the same emulator meanwhile.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import os
import select
import signal
import socket
import subprocess
import sys
import time

TIMEOUT = 10.0


def main():
    sockdir = sys.argv[1]
    if sys.argv[2] != "--":
        print("usage: qtest-client.py SOCKDIR -- EMULATOR ARGS...", file=sys.stderr)
        return 2
    cmd = sys.argv[3:]
    path = os.path.join(sockdir, "qtest-%d.sock" % os.getpid())
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    proc = subprocess.Popen(cmd + ["-qtest", "unix:" + path],
                            stdin=subprocess.DEVNULL)
    r, _, _ = select.select([lsock], [], [], TIMEOUT)
    if not r:
        print("qtest-client: emulator did not connect")
        proc.kill()
        proc.wait()
        return 1
    conn, _ = lsock.accept()
    buf = b""
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line.startswith("#"):
            print(line)
            continue
        if line.startswith("!wait-for "):
            path_wanted = line.split(" ", 1)[1]
            for _ in range(200):
                if os.path.exists(path_wanted):
                    break
                time.sleep(0.05)
            continue
        shown = line if len(line) < 200 else line[:60] + "...(%d bytes)" % len(line)
        print("> " + shown)
        conn.sendall(line.encode() + b"\n")
        # Asynchronous "IRQ raise/lower N" lines are printed in the order
        # they arrive; the reply is the first other line.
        eof = False
        while True:
            while b"\n" not in buf:
                r, _, _ = select.select([conn], [], [], TIMEOUT)
                if not r:
                    print("qtest-client: timeout")
                    proc.kill()
                    proc.wait()
                    return 1
                chunk = conn.recv(1 << 20)
                if not chunk:
                    print("< EOF")
                    eof = True
                    break
                buf += chunk
            if eof:
                break
            reply, buf = buf.split(b"\n", 1)
            text = reply.decode("utf-8", "replace")
            if len(text) > 200:
                text = text[:60] + "...(%d bytes)" % len(text)
            print("< " + text)
            if not text.startswith("IRQ "):
                break
        if eof:
            break
    conn.close()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    os.unlink(path)
    print("(exit status: %d)" % rc)
    return 0


if __name__ == "__main__":
    # Tests interleave our output with other programs': no block buffering.
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
