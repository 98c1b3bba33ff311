#!/usr/bin/env python3
"""End-to-end check of chardevs over a real QMP unix socket.

Run by hand after `cargo build --bin qemu-system-x86_64`:
    python3 tests/chardev/qmp_check.py [path/to/qemu-system-x86_64]
Prints each step and ends with "N checks passed" or the first failure.
"""
import base64, json, os, select, socket, subprocess, sys, tempfile, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/debug/qemu-system-x86_64"
TMP = tempfile.mkdtemp(prefix="rqemu-chardev-")
passed = 0


def check(what, got, want):
    global passed
    if got != want:
        print(f"FAIL {what}\n  got:  {got!r}\n  want: {want!r}")
        sys.exit(1)
    passed += 1
    print(f"ok   {what}")


def wait_path(p, timeout=5):
    end = time.time() + timeout
    while not os.path.exists(p):
        if time.time() > end:
            raise RuntimeError(f"{p} never appeared")
        time.sleep(0.02)


def recv_until(sock, needle, timeout=3):
    data = b""
    end = time.time() + timeout
    while needle not in data:
        r, _, _ = select.select([sock], [], [], max(0, end - time.time()))
        if not r:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class QMP:
    def __init__(self, path):
        wait_path(path)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        self.greeting = json.loads(self.f.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode())
        while True:
            r = json.loads(self.f.readline())
            if "event" not in r:
                return r

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})["return"]

    def chardevs(self):
        return {c["label"]: (c["filename"], c["frontend-open"]) for c in self.cmd("query-chardev")["return"]}


def err(r):
    return r.get("error", {}).get("desc")


def main():
    qsock = os.path.join(TMP, "qmp.sock")
    msock = os.path.join(TMP, "mon.sock")
    log = os.path.join(TMP, "mon.log")
    proc = subprocess.Popen(
        [BIN, "-machine", "none", "-nodefaults", "-display", "none",
         "-qmp", f"unix:{qsock},server,nowait",
         "-chardev", f"socket,id=mon0,path={msock},server,nowait,mux=on,logfile={log}",
         "-mon", "chardev=mon0,mode=readline"],
        stderr=subprocess.PIPE)
    try:
        run(QMP(qsock), msock, log, proc)
    finally:
        proc.kill()
        proc.wait()
    nographic()
    print(f"{passed} checks passed")


def nographic():
    """-nographic: serial and monitor share stdio through a mux; the serial
    port has focus first, C-a c switches, C-a x exits."""
    p = subprocess.Popen([BIN, "-M", "pc,accel=qtest", "-nographic"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    def send(b):
        p.stdin.write(b); p.stdin.flush(); time.sleep(0.3)
    time.sleep(0.5)
    send(b"to-serial\x01c")
    send(b"info chardev\n")
    send(b"\x01c")
    send(b"\x01c")
    send(b"\x01x")
    out, _ = p.communicate(timeout=5)
    check("-nographic transcript", out,
          b"QEMU 2.8.0 monitor - type 'help' for more information\r\n(qemu) info chardev\r\n"
          b"serial0: filename=mux\r\nserial0-base: filename=stdio\r\n(qemu) \r\n(qemu) QEMU: Terminated\n\r")
    check("C-a x exit status", p.returncode, 0)


def run(q, msock, log, proc):
    labels = [c["label"] for c in q.cmd("query-chardev")["return"]]
    check("query-chardev lists newest first", labels, ["mon0", "mon0-base", "compat_monitor0"])
    cd = q.chardevs()
    check("mux filename", cd["mon0"], ("mux", True))
    check("disconnected socket filename", cd["mon0-base"],
          (f"disconnected:unix:{msock},server", True))
    names = [b["name"] for b in q.cmd("query-chardev-backends")["return"]]
    check("backends", names, ["testdev", "msmouse", "vc", "memory", "mux", "pipe", "pty", "parport",
                              "parallel", "tty", "serial", "stdio", "file", "ringbuf", "udp", "socket", "null"])

    # A human monitor on the mux socket: banner, commands, C-a escapes.
    m = socket.socket(socket.AF_UNIX)
    m.connect(msock)
    banner = recv_until(m, b"(qemu) ")
    check("mux monitor banner", banner.endswith(b"monitor - type 'help' for more information\r\n(qemu) "), True)
    check("connected unix server filename", q.chardevs()["mon0-base"][0], f"unix:{msock},server")
    m.sendall(b"info chardev\n")
    out = recv_until(m, b"(qemu) ")
    check("info chardev over the mux", b"mon0: filename=mux\r\n" in out, True)
    m.sendall(b"\x01c")
    check("C-a c with one frontend: newline then prompt", recv_until(m, b"(qemu) "), b"\r\n(qemu) ")
    m.sendall(b"\x01t")
    m.sendall(b"info name\n")
    stamped = recv_until(m, b"(qemu) ")
    check("C-a t stamps lines", b"\r\n[00:00:0" in stamped, True)
    m.sendall(b"\x01t")
    m.close()
    time.sleep(0.2)
    check("socket back to disconnected", q.chardevs()["mon0-base"][0], f"disconnected:unix:{msock},server")
    check("logfile holds monitor output", b"info chardev" in open(log, "rb").read(), True)

    # file backend
    fout = os.path.join(TMP, "out.txt")
    r = q.cmd("chardev-add", id="f0", backend={"type": "file", "data": {"out": fout}})
    check("chardev-add file", r, {"return": {}})
    check("file filename", q.chardevs()["f0"], ("file", False))
    check("duplicate id", err(q.cmd("chardev-add", id="f0", backend={"type": "null", "data": {}})),
          "Chardev 'f0' already exists")
    check("missing input file",
          err(q.cmd("chardev-add", id="f1", backend={"type": "file", "data": {"out": fout, "in": "/nonexistent"}})),
          "Could not open '/nonexistent': No such file or directory")
    check("chardev-remove file", q.cmd("chardev-remove", id="f0"), {"return": {}})
    check("chardev-remove unknown", err(q.cmd("chardev-remove", id="f0")), "Chardev 'f0' not found")
    check("chardev-remove busy", err(q.cmd("chardev-remove", id="mon0")), "Chardev 'mon0' is busy")
    check("chardev-remove mux base busy", err(q.cmd("chardev-remove", id="mon0-base")), "Chardev 'mon0-base' is busy")

    # unavailable backends
    for t, data in [("braille", {}), ("console", {}), ("spicevmc", {"type": "vdagent"}), ("spiceport", {"fqdn": "x"})]:
        check(f"{t} not available", err(q.cmd("chardev-add", id="x", backend={"type": t, "data": data})),
              "chardev backend not available")

    # pty
    r = q.cmd("chardev-add", id="pty0", backend={"type": "pty", "data": {}})
    path = r["return"]["pty"]
    check("pty reply", path.startswith("/dev/pts/"), True)
    check("pty filename", q.chardevs()["pty0"][0], "pty:" + path)
    check("pty startup message", f"char device redirected to {path} (label pty0)" in
          proc.stderr.read1(4096).decode(), True)
    q.cmd("chardev-remove", id="pty0")
    check("pty gone after remove", os.path.exists(path), False)

    # ringbuf
    check("ringbuf size check",
          err(q.cmd("chardev-add", id="r0", backend={"type": "ringbuf", "data": {"size": 3}})),
          "size of ringbuf chardev must be power of two")
    q.cmd("chardev-add", id="r0", backend={"type": "ringbuf", "data": {"size": 8}})
    q.cmd("ringbuf-write", device="r0", data="0123456789")
    check("ringbuf overflow keeps newest", q.cmd("ringbuf-read", device="r0", size=100)["return"], "23456789")
    q.cmd("ringbuf-write", device="r0", data=base64.b64encode(b"\xff\xfeA").decode(), format="base64")
    check("ringbuf invalid utf8 replaced", q.cmd("ringbuf-read", device="r0", size=100)["return"], "\ufffd\ufffdA")
    q.cmd("ringbuf-write", device="r0", data="héllo")
    check("ringbuf base64 read", q.cmd("ringbuf-read", device="r0", size=3, format="base64")["return"],
          base64.b64encode("hé".encode()).decode())
    check("ringbuf bad base64", err(q.cmd("ringbuf-write", device="r0", data="a*b", format="base64")),
          "Base64 data contains invalid characters")
    check("ringbuf size zero", err(q.cmd("ringbuf-read", device="r0", size=0)), "size must be greater than zero")
    check("not a ringbuf", err(q.cmd("ringbuf-read", device="mon0", size=1)), "mon0 is not a ringbuf device")
    check("no device", err(q.cmd("ringbuf-write", device="zz", data="")), "Device 'zz' not found")
    check("hmp ringbuf_write", q.hmp("ringbuf_write r0 a\\b"), "")
    check("hmp ringbuf_read", q.hmp("ringbuf_read r0 100"), "lloa\\\\b\r\n")

    # socket server with telnet; client on tcp
    lsn = socket.socket(); lsn.bind(("127.0.0.1", 0)); port = lsn.getsockname()[1]; lsn.close()
    r = q.cmd("chardev-add", id="t0", backend={"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(port)}}, "telnet": True}})
    check("telnet server add", r, {"return": {}})
    check("telnet disconnected filename", q.chardevs()["t0"][0], f"disconnected:telnet:127.0.0.1:{port},server")
    c = socket.create_connection(("127.0.0.1", port))
    neg = recv_until(c, b"\xff\xfd\x00")
    check("telnet negotiation", neg, bytes([255, 251, 1, 255, 251, 3, 255, 251, 0, 255, 253, 0]))
    time.sleep(0.1)
    fn = q.chardevs()["t0"][0]
    check("telnet connected filename", fn.startswith(f"telnet:127.0.0.1:{port},server <-> 127.0.0.1:"), True)
    c.close()

    # a listening socket passed with getfd
    lsn = socket.socket(); lsn.bind(("127.0.0.1", 0)); lsn.listen(1); port = lsn.getsockname()[1]
    socket.send_fds(q.s, [json.dumps({"execute": "getfd", "arguments": {"fdname": "lfd"}}).encode()], [lsn.fileno()])
    check("getfd", json.loads(q.f.readline()), {"return": {}})
    lsn.close()
    r = q.cmd("chardev-add", id="fd0", backend={"type": "socket", "data": {
        "addr": {"type": "fd", "data": {"str": "lfd"}}, "server": True}})
    check("server on a passed fd", r, {"return": {}})
    check("fd disconnected filename", q.chardevs()["fd0"][0], "disconnected:fd:lfd,server")
    c = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.1)
    check("fd server connected filename",
          q.chardevs()["fd0"][0].startswith(f"tcp:127.0.0.1:{port},server <-> 127.0.0.1:"), True)
    c.close()
    check("unknown fd name", err(q.cmd("chardev-add", id="fd1", backend={"type": "socket", "data": {
        "addr": {"type": "fd", "data": {"str": "nofd"}}}})), "File descriptor named 'nofd' has not been found")

    # reconnecting client: comes up when a server appears
    rsock = os.path.join(TMP, "rec.sock")
    r = q.cmd("chardev-add", id="rc0", backend={"type": "socket", "data": {
        "addr": {"type": "unix", "data": {"path": rsock}}, "server": False, "reconnect": 1}})
    check("reconnect client add without server", r, {"return": {}})
    check("reconnect client disconnected", q.chardevs()["rc0"][0], f"disconnected:unix:{rsock}")
    srv = socket.socket(socket.AF_UNIX); srv.bind(rsock); srv.listen(1)
    srv.settimeout(3)
    conn, _ = srv.accept()
    time.sleep(0.1)
    check("reconnect client connected", q.chardevs()["rc0"][0], "unix:")
    conn.close()
    conn, _ = srv.accept()
    check("reconnect after the server dropped it", conn is not None, True)
    conn.close(); srv.close()
    q.cmd("chardev-remove", id="rc0")

    # udp
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); peer.bind(("127.0.0.1", 0))
    r = q.cmd("chardev-add", id="u0", backend={"type": "udp", "data": {
        "remote": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(peer.getsockname()[1])}}}})
    check("udp add", (r, q.chardevs()["u0"]), ({"return": {}}, ("udp", False)))
    check("udp unix remote", err(q.cmd("chardev-add", id="u1", backend={"type": "udp", "data": {
        "remote": {"type": "unix", "data": {"path": "/x"}}}})), "socket type unsupported for datagram")

    # HMP chardev-add / chardev-remove
    check("hmp chardev-add", q.hmp("chardev-add ringbuf,id=h0,size=16"), "")
    check("hmp chardev-add duplicate", q.hmp("chardev-add null,id=h0"),
          "Duplicate ID 'h0' for chardev\r\nParsing chardev args failed\r\n")
    check("hmp chardev-add bad key", q.hmp("chardev-add null,id=h1,bogus=1"),
          "Invalid parameter 'bogus'\r\nParsing chardev args failed\r\n")
    check("hmp chardev-add unknown backend", q.hmp("chardev-add nope,id=h1"),
          "chardev: backend \"nope\" not found\r\n")
    check("hmp chardev-remove", q.hmp("chardev-remove h0"), "")
    check("hmp chardev-remove unknown", q.hmp("chardev-remove h0"), "Chardev 'h0' not found\r\n")
    check("info chardev format", q.hmp("info chardev").splitlines()[0], "u0: filename=udp")
    q.cmd("quit")


if __name__ == "__main__":
    main()
