#!/usr/bin/env python3
#
# A small scripted QMP client for the iotests.
#
# Usage: qmp-client.py [--timeout S] [--quiet-send] ADDR [ADDR...] < script
#   ADDR is a unix socket path or tcp:HOST:PORT; connections are numbered
#   from 0 in that order and each one's greeting is printed as it arrives.
#
# Script lines (a leading "@N " sends to connection N instead of 0):
#   {...}              send the line plus "\n"; print messages until a reply
#   send TEXT          same, for text that does not start with "{"
#   raw TEXT           send TEXT with Python escapes (\n, \x00) and no wait
#   recv               print the next message, whatever it is
#   reply              print messages until a reply (return or error)
#   wait EVENT         print messages until the event EVENT
#   sendfd PATH TEXT   send TEXT + "\n" with PATH's fd attached (SCM_RIGHTS),
#                      then wait for the reply
#   garbage N          send N bytes of deterministic non-JSON garbage
#   letters N          send N bytes of letters (one giant bad keyword) + "\n"
#   blob N             send an N-byte JSON string value that never becomes
#                      a command: {"execute": "aaaa...a"} (unknown command)
#   nest N             send N nested "[" then N "]" and wait for the reply
#   sync               send query-status with a fresh id, print the set of
#                      distinct messages seen before its reply (x1 or xN;
#                      "invalid keyword" errors are merged), then the reply
#   expect-eof         print messages until the peer closes
#   close              close the connection
#   sleep S            pause
#   # ...              comment, echoed
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import json
import os
import re
import select
import socket
import sys
import time


class Timeout(Exception):
    pass


class Conn:
    def __init__(self, addr, timeout):
        self.addr = addr
        self.timeout = timeout
        # Unread input is buf[pos:]; consumed bytes are dropped in bulk so
        # millions of small replies do not cost quadratic copying.
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.sock = self._connect(addr)

    def _connect(self, addr):
        deadline = time.time() + self.timeout
        while True:
            try:
                if addr.startswith("tcp:"):
                    host, port = addr[4:].rsplit(":", 1)
                    s = socket.create_connection((host, int(port)))
                else:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(addr)
                return s
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)

    def send(self, data, fds=None):
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def _fill(self):
        r, _, _ = select.select([self.sock], [], [], self.timeout)
        if not r:
            raise Timeout()
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            self.eof = True
        self.buf += chunk

    def message(self):
        """Returns (raw text, parsed) of the next message, or None at EOF.

        Messages end with a newline; a pretty-printed one spans several
        lines, so lines are joined until the text parses."""
        acc = b""
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl < 0:
                if self.eof:
                    return None
                if self.pos > (1 << 20):
                    del self.buf[:self.pos]
                    self.pos = 0
                self._fill()
                continue
            acc += bytes(self.buf[self.pos:nl + 1])
            self.pos = nl + 1
            text = acc.decode("utf-8", "replace")
            if not text.strip():
                acc = b""
                continue
            try:
                return text.rstrip("\r\n"), json.loads(text)
            except ValueError:
                continue


def garbage(n):
    """Deterministic bytes with no quotes or brackets, so the stream can
    only hold junk tokens and resynchronises as soon as it ends."""
    bad = set(b"\"'{}[]")
    out = bytearray()
    x = 12345
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        b = (x >> 16) & 0xFF
        if b not in bad:
            out.append(b)
    return bytes(out)


def shown(text):
    """Long messages (an error echoing a 10 MB name) are cut for logs."""
    if len(text) > 1000:
        return text[:200] + "...(%d bytes)" % len(text)
    return text


def main():
    args = sys.argv[1:]
    timeout = 10.0
    echo = True
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--timeout":
            timeout = float(args.pop(0))
        elif opt == "--quiet-send":
            echo = False
    conns = []
    for a in args:
        c = Conn(a, timeout)
        conns.append(c)
        m = c.message()
        print(m[0] if m else "EOF before greeting")
    sync_id = 0

    def show_until(c, pred):
        while True:
            m = c.message()
            if m is None:
                print("EOF")
                return None
            print(shown(m[0]))
            if pred(m[1]):
                return m[1]

    def is_reply(o):
        return isinstance(o, dict) and ("return" in o or "error" in o)

    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            print(line)
            continue
        c = conns[0] if conns else None
        if line.startswith("@"):
            idx, line = line[1:].split(" ", 1)
            c = conns[int(idx)]
        word, _, rest = line.partition(" ")
        if line.startswith("{") or word == "send":
            text = line if line.startswith("{") else rest
            if echo:
                print(text if len(text) < 400 else "(sent %d bytes)" % len(text))
            c.send(text.encode() + b"\n")
            show_until(c, is_reply)
        elif word == "raw":
            data = rest.encode().decode("unicode_escape").encode("latin-1")
            if echo:
                print("(raw) " + rest)
            c.send(data)
        elif word == "recv":
            m = c.message()
            print(shown(m[0]) if m else "EOF")
        elif word == "reply":
            show_until(c, is_reply)
        elif word == "wait":
            show_until(c, lambda o: isinstance(o, dict) and o.get("event") == rest)
        elif word == "sendfd":
            path, text = rest.split(" ", 1)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if echo:
                print("(with fd) " + text)
            c.send(text.encode() + b"\n", [fd])
            os.close(fd)
            show_until(c, is_reply)
        elif word in ("garbage", "letters", "blob", "nest"):
            n = int(rest)
            if word == "garbage":
                data = garbage(n)
            elif word == "letters":
                data = bytes(b"abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(n)) + b"\n"
            elif word == "blob":
                data = b'{"execute": "' + b"a" * n + b'"}\n'
            else:
                data = b"[" * n + b"]" * n + b"\n"
            print("(%s of %d bytes)" % (word, n))
            # Read while writing: the server may answer a long stream of
            # junk with many errors, and a full pipe must not deadlock us.
            c.sock.setblocking(False)
            view = memoryview(data)
            while view:
                r, w, _ = select.select([c.sock], [c.sock], [], timeout)
                if not r and not w:
                    raise Timeout()
                if w:
                    try:
                        sent = c.sock.send(view[:65536])
                        view = view[sent:]
                    except BlockingIOError:
                        pass
                if r:
                    chunk = c.sock.recv(1 << 20)
                    if not chunk:
                        c.eof = True
                        break
                    c.buf += chunk
            c.sock.setblocking(True)
            if word == "nest":
                show_until(c, is_reply)
        elif word == "sync":
            sync_id += 1
            sid = "sync-%d" % sync_id
            c.send(json.dumps({"execute": "query-status", "id": sid}).encode() + b"\n")
            seen = {}
            while True:
                m = c.message()
                if m is None:
                    print("EOF")
                    break
                o = m[1]
                if isinstance(o, dict) and o.get("id") == sid:
                    for k in sorted(seen):
                        print("%s (x%s)" % (k, "N" if seen[k] > 1 else "1"))
                    print(shown(m[0]))
                    break
                # The keyword in this message is whatever junk came in.
                key = re.sub(r"invalid keyword '[^'\x22]*'?", "invalid keyword 'K'",
                             json.dumps(o, sort_keys=True))
                key = shown(key)
                seen[key] = seen.get(key, 0) + 1
        elif word == "expect-eof":
            show_until(c, lambda o: False)
        elif word == "close":
            c.sock.close()
        elif word == "sleep":
            time.sleep(float(rest))
        else:
            print("qmp-client: unknown directive: " + line, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    # Tests interleave our output with other programs': no block buffering.
    sys.stdout.reconfigure(line_buffering=True)
    try:
        sys.exit(main())
    except Timeout:
        print("qmp-client: timeout waiting for a message")
        sys.exit(1)
    except (OSError, ValueError) as e:
        print("qmp-client: %s" % e)
        sys.exit(1)
