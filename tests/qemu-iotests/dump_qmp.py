#!/usr/bin/env python3
#
# QMP and HMP helpers for the dump tests: commands with their replies and
# events printed in a stable form.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import importlib.util
import json
import os
import subprocess
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("qmpc", os.path.join(_here, "qmp-client.py"))
qmpc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qmpc)

READER = os.path.join(_here, "dump-reader.py")


def scrub(text, tdir):
    return text.replace(tdir, "TEST_DIR")


class Guest:
    def __init__(self, sock, tdir, timeout=60.0):
        self.tdir = tdir
        self.c = qmpc.Conn(sock, timeout)
        self.c.message()
        self.events = []
        self.cmd({"execute": "qmp_capabilities"}, quiet=True)

    def show(self, o):
        o = dict(o)
        o.pop("timestamp", None)
        print(scrub(json.dumps(o), self.tdir))

    def cmd(self, obj, quiet=False, fds=None, show_events=True):
        if not quiet:
            print(scrub(json.dumps(obj), self.tdir))
        self.c.send(json.dumps(obj).encode() + b"\n", fds)
        while True:
            _raw, o = self.c.message()
            if "return" in o or "error" in o:
                break
            self.events.append(o)
            if show_events and not quiet:
                self.show(o)
        if not quiet:
            self.show(o)
        return o

    def qmp(self, name, quiet=False, **args):
        obj = {"execute": name}
        if args:
            obj["arguments"] = args
        return self.cmd(obj, quiet=quiet)

    def hmp(self, line, quiet=False):
        o = self.cmd({"execute": "human-monitor-command",
                      "arguments": {"command-line": line}}, quiet=True)
        if not quiet:
            print("(hmp) " + scrub(line, self.tdir))
            text = o.get("return", "")
            if "error" in o:
                text = "error: " + o["error"]["desc"] + "\n"
            sys.stdout.write(scrub(text, self.tdir))
        return o

    def wait_event(self, name):
        for i, e in enumerate(self.events):
            if e.get("event") == name:
                del self.events[i]
                return e
        while True:
            _raw, o = self.c.message()
            if o.get("event") == name:
                return o
            self.events.append(o)


def reader(*args):
    """Runs dump-reader.py and prints its output."""
    r = subprocess.run([sys.executable, READER] + list(args), capture_output=True, text=True)
    sys.stdout.write(r.stdout + r.stderr)
    return r.returncode
