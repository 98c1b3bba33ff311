#!/usr/bin/env python3
#
# A machine driven the way a guest IDE driver would drive it: qtest port
# I/O on the PIIX3 IDE ports (0x1f0/0x3f6, 0x170/0x376) plus a QMP monitor,
# with commands, replies and events printed in a stable form.
#
# Works against QEMU too (same qtest protocol), for side-by-side checks.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("qmpc", os.path.join(_here, "qmp-client.py"))
qmpc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qmpc)

TIMEOUT = 10.0
BUSES = [(0x1f0, 0x3f6), (0x170, 0x376)]


def scrub(text, tdir):
    return text.replace(tdir, "TEST_DIR") if tdir else text


class VM:
    def __init__(self, args, tdir, echo=True):
        self.tdir = tdir
        self.echo = echo
        qpath = os.path.join(tdir, "ide-qtest-%d.sock" % os.getpid())
        self.mpath = os.path.join(tdir, "ide-qmp-%d.sock" % os.getpid())
        for p in (qpath, self.mpath):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(qpath)
        ls.listen(1)
        prog = os.environ.get("QEMU_PROG", "qemu-system-x86_64")
        self.proc = subprocess.Popen(
            [prog] + args + ["-qtest", "unix:" + qpath,
                             "-qmp", "unix:%s,server,nowait" % self.mpath],
            stdin=subprocess.DEVNULL)
        r, _, _ = select.select([ls], [], [], TIMEOUT)
        if not r:
            raise RuntimeError("emulator did not connect")
        self.qs, _ = ls.accept()
        ls.close()
        os.unlink(qpath)
        self.qbuf = b""
        self.m = qmpc.Conn(self.mpath, TIMEOUT)
        self.m.message()
        self.qmp("qmp_capabilities", quiet=True)

    # ---- qtest --------------------------------------------------------
    def qtest(self, line):
        self.qs.sendall(line.encode() + b"\n")
        while True:
            nl = self.qbuf.find(b"\n")
            if nl >= 0:
                reply = self.qbuf[:nl].decode()
                self.qbuf = self.qbuf[nl + 1:]
                if reply.startswith("IRQ"):
                    continue
                return reply
            r, _, _ = select.select([self.qs], [], [], TIMEOUT)
            if not r:
                raise RuntimeError("qtest timeout on %r" % line)
            chunk = self.qs.recv(65536)
            if not chunk:
                raise RuntimeError("qtest connection closed on %r" % line)
            self.qbuf += chunk

    def outb(self, port, v):
        self.qtest("outb 0x%x 0x%x" % (port, v))

    def outw(self, port, v):
        self.qtest("outw 0x%x 0x%x" % (port, v))

    def inb(self, port):
        return int(self.qtest("inb 0x%x" % port).split()[1], 16)

    def inw(self, port):
        return int(self.qtest("inw 0x%x" % port).split()[1], 16)

    # ---- QMP ----------------------------------------------------------
    def show(self, o):
        o = dict(o)
        o.pop("timestamp", None)
        print(scrub(json.dumps(o), self.tdir))

    def qmp(self, name, quiet=False, **args):
        cmd = {"execute": name}
        if args:
            cmd["arguments"] = args
        if not quiet:
            print(scrub(json.dumps(cmd), self.tdir))
        self.m.send(json.dumps(cmd).encode() + b"\n")
        while True:
            _raw, o = self.m.message()
            if "return" in o or "error" in o:
                break
            if not quiet:
                self.show(o)
        if not quiet:
            self.show(o)
        return o

    def events(self, wait=0.2):
        """Prints events that arrive within `wait` seconds."""
        end = time.time() + wait
        while True:
            left = end - time.time()
            if left <= 0 and self.m.buf.find(b"\n", self.m.pos) < 0:
                return
            if self.m.buf.find(b"\n", self.m.pos) < 0:
                r, _, _ = select.select([self.m.sock], [], [], max(left, 0))
                if not r:
                    return
            _raw, o = self.m.message()
            self.show(o)

    def close(self):
        try:
            self.qmp("quit", quiet=True)
        except Exception:
            pass
        self.proc.wait(TIMEOUT)
        try:
            os.unlink(self.mpath)
        except FileNotFoundError:
            pass

    # ---- IDE ----------------------------------------------------------
    def select(self, bus, unit, lba=True):
        base, _ = BUSES[bus]
        self.outb(base + 6, (0xe0 if lba else 0xa0) | (unit << 4))

    def status(self, bus=0):
        return self.inb(BUSES[bus][0] + 7)

    def alt_status(self, bus=0):
        return self.inb(BUSES[bus][1])

    def read_data(self, bus, nbytes):
        base = BUSES[bus][0]
        out = bytearray()
        for _ in range(nbytes // 2):
            out += self.inw(base).to_bytes(2, "little")
        return bytes(out)

    def command(self, bus, unit, cmd, nsector=0, lba=0, feature=0, lba48=False):
        base = BUSES[bus][0]
        self.select(bus, unit)
        if lba48:
            self.outb(base + 2, (nsector >> 8) & 0xff)
            self.outb(base + 3, (lba >> 24) & 0xff)
            self.outb(base + 4, (lba >> 32) & 0xff)
            self.outb(base + 5, (lba >> 40) & 0xff)
        self.outb(base + 1, feature)
        self.outb(base + 2, nsector & 0xff)
        self.outb(base + 3, lba & 0xff)
        self.outb(base + 4, (lba >> 8) & 0xff)
        self.outb(base + 5, (lba >> 16) & 0xff)
        if not lba48:
            self.outb(base + 6, 0xe0 | (unit << 4) | ((lba >> 24) & 0x0f))
        self.outb(base + 7, cmd)

    def identify(self, bus, unit, packet=False):
        self.command(bus, unit, 0xa1 if packet else 0xec)
        st = self.status(bus)
        if not st & 0x08:
            return st, None
        return st, self.read_data(bus, 512)

    def read_sectors(self, bus, unit, lba, count, lba48=False):
        self.command(bus, unit, 0x24 if lba48 else 0x20, count, lba, lba48=lba48)
        data = bytearray()
        for _ in range(count or 256):
            st = self.alt_status(bus)
            if not st & 0x08:
                return st, bytes(data)
            data += self.read_data(bus, 512)
        return self.status(bus), bytes(data)

    def write_sectors(self, bus, unit, lba, data, lba48=False):
        base = BUSES[bus][0]
        count = len(data) // 512
        self.command(bus, unit, 0x34 if lba48 else 0x30, count, lba, lba48=lba48)
        for i in range(count):
            st = self.alt_status(bus)
            if not st & 0x08:
                return st
            block = data[i * 512:(i + 1) * 512]
            for j in range(0, 512, 2):
                self.outw(base, int.from_bytes(block[j:j + 2], "little"))
        return self.status(bus)

    def atapi(self, bus, unit, packet, bcl=0xfffe):
        """Sends a 12-byte packet; returns (status, error, data)."""
        base = BUSES[bus][0]
        packet = bytes(packet) + bytes(12 - len(packet))
        self.select(bus, unit, lba=False)
        self.outb(base + 1, 0)
        self.outb(base + 4, bcl & 0xff)
        self.outb(base + 5, bcl >> 8)
        self.outb(base + 7, 0xa0)
        for j in range(0, 12, 2):
            self.outw(base, int.from_bytes(packet[j:j + 2], "little"))
        data = bytearray()
        while True:
            st = self.alt_status(bus)
            if not st & 0x08:
                break
            n = self.inb(base + 4) | self.inb(base + 5) << 8
            data += self.read_data(bus, n)
        return self.status(bus), self.inb(base + 1), bytes(data)

    def sense(self, bus, unit):
        _st, _err, d = self.atapi(bus, unit, [0x03, 0, 0, 0, 18], 18)
        return d[2] & 0x0f, d[12]


def ata_string(ident, word, nwords):
    raw = ident[word * 2:(word + nwords) * 2]
    swapped = bytearray()
    for i in range(0, len(raw), 2):
        swapped += bytes([raw[i + 1], raw[i]])
    return swapped.decode("ascii", "replace").rstrip()


def ata_word(ident, word):
    return ident[word * 2] | ident[word * 2 + 1] << 8


SENSE_NAMES = {(0, 0): "NO SENSE", (2, 0x3a): "NOT READY/medium not present",
               (6, 0x28): "UNIT ATTENTION/medium may have changed",
               (5, 0x21): "ILLEGAL REQUEST/LBA out of range",
               (5, 0x20): "ILLEGAL REQUEST/invalid opcode",
               (2, 0x53): "NOT READY/medium removal prevented"}


def sense_name(key_asc):
    return SENSE_NAMES.get(key_asc, "key %d asc 0x%02x" % key_asc)


class Dma:
    """Bus-master DMA through the IDE function's BAR 4, set up the way a
    guest driver does (PCI config writes, a PRD table in guest RAM)."""

    def __init__(self, vm, bar=0xc000, prd_table=0x10000):
        self.vm = vm
        self.bar = bar
        self.table = prd_table
        # 00:01.1: BAR 4 at 0x20, command register at 0x04.
        vm.qtest("outl 0xcf8 0x80000920")
        vm.qtest("outl 0xcfc 0x%x" % (bar | 1))
        vm.qtest("outl 0xcf8 0x80000904")
        vm.qtest("outw 0xcfc 0x5")

    def prds(self, bus, entries):
        """entries: (guest address, length); the last one ends the table."""
        base = self.table + bus * 0x1000
        for i, (addr, length) in enumerate(entries):
            flags = 0x80000000 if i == len(entries) - 1 else 0
            self.vm.qtest("writel 0x%x 0x%x" % (base + 8 * i, addr))
            self.vm.qtest("writel 0x%x 0x%x" % (base + 8 * i + 4, flags | (length & 0xffff)))
        self.vm.qtest("outl 0x%x 0x%x" % (self.bar + bus * 8 + 4, base))

    def start(self, bus, to_memory):
        self.vm.outb(self.bar + bus * 8, 0x09 if to_memory else 0x01)

    def stop(self, bus):
        self.vm.outb(self.bar + bus * 8, 0x00)

    def status(self, bus):
        return self.vm.inb(self.bar + bus * 8 + 2)

    def clear(self, bus):
        self.vm.outb(self.bar + bus * 8 + 2, 0x06)

    def memory(self, addr, length):
        r = self.vm.qtest("read 0x%x 0x%x" % (addr, length))
        return bytes.fromhex(r.split()[1][2:])

    def fill(self, addr, data):
        self.vm.qtest("write 0x%x 0x%x 0x%s" % (addr, len(data), data.hex()))
