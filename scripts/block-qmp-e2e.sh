#!/bin/bash
# End-to-end run of the block QMP/HMP commands against the binary with real
# images (made and checked with qemu-img). Prints every command with its
# reply; run by hand and read, or diff two runs (QEMU=... picks the binary).
#   scripts/block-qmp-e2e.sh [path-to-qemu-system-x86_64]
set -u
BIN=$(realpath "${1:-${QEMU:-$(dirname "$0")/../target/debug/qemu-system-x86_64}}")
DIR=$(mktemp -d /tmp/block-e2e.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
cd "$DIR" || exit 1

qemu-img create -q -f qcow2 base.qcow2 1M
qemu-img create -q -f qcow2 -b "$DIR/base.qcow2" -F qcow2 top.qcow2
qemu-img create -q -f raw r.img 1M
qemu-img create -q -f qcow2 ov.qcow2 1M
qemu-img create -q -f qcow2 q.qcow2 1M

# run ARGS... < commands: one QMP command per line; '#' lines are echoed.
run() {
    QEMU_BIN="$BIN" python3 - "$@" <<'PY'
import json, os, subprocess, sys
p = subprocess.Popen([os.environ["QEMU_BIN"], "-nodefaults", "-display", "none",
                      "-qmp", "stdio"] + sys.argv[1:],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
def rd():
    while True:
        line = p.stdout.readline()
        if not line:
            return None
        try:
            obj = json.loads(line)
        except ValueError:
            print("OUT:", line.rstrip("\n"))
            continue
        if "timestamp" in obj:
            obj["timestamp"] = "X"
        return obj
if rd() is None:
    sys.exit(1)
p.stdin.write('{"execute":"qmp_capabilities"}\n'); p.stdin.flush(); rd()
for cmd in open("/dev/fd/3"):
    cmd = cmd.strip()
    if not cmd:
        continue
    if cmd.startswith("#"):
        print(cmd); continue
    print(">>>", cmd)
    p.stdin.write(cmd + "\n"); p.stdin.flush()
    while True:
        r = rd()
        if r is None:
            break
        if isinstance(r.get("return"), str):
            print("<<< HMP:"); print(r["return"].replace("\r\n", "\n"), end="")
        else:
            print("<<<", json.dumps(r))
        if "return" in r or "error" in r:
            break
p.stdin.write('{"execute":"quit"}\n'); p.stdin.flush()
for l in p.communicate(timeout=10)[0].splitlines():
    if '"return": {}' not in l and "SHUTDOWN" not in l:
        print("OUT:", l)
PY
}

echo "=== -drive errors (each a failed start) ==="
for d in "file=$DIR/nonexist,if=none" "if=bogus" "file=$DIR/r.img,format=qcow2,if=none" \
         "if=none,cache=bogus" "if=none,werror=bogus" "if=none,media=tape" \
         "file=$DIR/r.img,if=none,bps=1000"; do
    echo "-drive $d"
    echo '{"execute":"qmp_capabilities"}{"execute":"quit"}' |
        "$BIN" -M none -nodefaults -display none -qmp stdio -drive "$d" 2>&1 |
        grep -v '"return"\|"QMP"\|SHUTDOWN'
done

echo "=== query-block, info block, image changes, snapshots ==="
run -M none -drive "file=$DIR/top.qcow2,if=none,id=d0,node-name=top0" 3<<CMDS
{"execute":"query-block"}
{"execute":"human-monitor-command","arguments":{"command-line":"info block -v"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info block -n"}}
{"execute":"block_resize","arguments":{"device":"d0","size":2097152}}
{"execute":"block_resize","arguments":{"device":"nope","size":2097152}}
{"execute":"block_resize","arguments":{"node-name":"top0","size":-1}}
{"execute":"block_resize","arguments":{"device":"d0","size":1048576}}
{"execute":"block_passwd","arguments":{"device":"d0","password":"x"}}
{"execute":"blockdev-snapshot-internal-sync","arguments":{"device":"d0","name":"s1"}}
{"execute":"blockdev-snapshot-internal-sync","arguments":{"device":"d0","name":"s1"}}
{"execute":"blockdev-snapshot-internal-sync","arguments":{"device":"d0","name":""}}
{"execute":"blockdev-snapshot-delete-internal-sync","arguments":{"device":"d0","name":"nosuch"}}
{"execute":"blockdev-snapshot-delete-internal-sync","arguments":{"device":"d0"}}
{"execute":"blockdev-snapshot-delete-internal-sync","arguments":{"device":"d0","name":"s1"}}
{"execute":"blockdev-snapshot-sync","arguments":{"device":"d0","snapshot-file":"$DIR/snap1.qcow2"}}
{"execute":"blockdev-snapshot-sync","arguments":{"node-name":"top0","snapshot-file":"$DIR/snap2.qcow2"}}
{"execute":"blockdev-snapshot-sync","arguments":{"device":"d0","snapshot-file":"$DIR/snap2.qcow2","snapshot-node-name":"top0"}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"qcow2","node-name":"ovl","file":{"driver":"file","filename":"$DIR/ov.qcow2"}}}}
{"execute":"blockdev-snapshot","arguments":{"node":"d0","overlay":"ovl"}}
{"execute":"blockdev-snapshot","arguments":{"node":"d0","overlay":"ovl"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info block"}}
{"execute":"change-backing-file","arguments":{"device":"d0","image-node-name":"top0","backing-file":"$DIR/base.qcow2"}}
{"execute":"x-blockdev-del","arguments":{"node-name":"ovl"}}
{"execute":"x-blockdev-del","arguments":{"id":"d0"}}
CMDS
for i in top.qcow2 snap1.qcow2 ov.qcow2; do qemu-img check "$i" | sed "s|$DIR|DIR|"; done

echo "=== removable media, blockdev-add/x-blockdev-del, drive_add/drive_del ==="
run -M none -drive if=none,id=cd0 -drive "file=$DIR/r.img,format=raw,if=none,id=d1,snapshot=on" \
    -blockdev "driver=qcow2,node-name=bd0,file.driver=file,file.filename=$DIR/ov.qcow2" 3<<CMDS
{"execute":"human-monitor-command","arguments":{"command-line":"info block"}}
{"execute":"blockdev-change-medium","arguments":{"device":"cd0","filename":"$DIR/top.qcow2","read-only-mode":"read-only"}}
{"execute":"blockdev-change-medium","arguments":{"device":"cd0","filename":"$DIR/nonexist"}}
{"execute":"blockdev-change-medium","arguments":{"device":"nodev","filename":"$DIR/r.img"}}
{"execute":"change","arguments":{"device":"cd0","target":"$DIR/r.img","arg":"raw"}}
{"execute":"change","arguments":{"device":"vnc","target":"password"}}
{"execute":"blockdev-open-tray","arguments":{"device":"cd0"}}
{"execute":"blockdev-close-tray","arguments":{"device":"cd0"}}
{"execute":"x-blockdev-remove-medium","arguments":{"device":"cd0"}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"raw","node-name":"rn","file":{"driver":"file","filename":"$DIR/r.img"}}}}
{"execute":"x-blockdev-insert-medium","arguments":{"device":"cd0","node-name":"rn"}}
{"execute":"x-blockdev-insert-medium","arguments":{"device":"cd0","node-name":"rn"}}
{"execute":"eject","arguments":{"device":"cd0"}}
{"execute":"eject","arguments":{"device":"nodev"}}
{"execute":"x-blockdev-del","arguments":{"node-name":"rn"}}
{"execute":"x-blockdev-del","arguments":{"node-name":"rn"}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"qcow2","id":"b2","file":{"driver":"file","filename":"$DIR/top.qcow2"}}}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"qcow2","id":"b2","file":{"driver":"file","filename":"$DIR/top.qcow2"}}}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"qcow2","file":{"driver":"file","filename":"$DIR/top.qcow2"}}}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"qcow2","id":"b3","backing":"","file":{"driver":"file","filename":"$DIR/top.qcow2"}}}}
{"execute":"x-blockdev-del","arguments":{"id":"b2"}}
{"execute":"x-blockdev-del","arguments":{"id":"nob"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_add 0 if=none,file=$DIR/r.img,format=raw,id=hd1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_add 0 if=none,file=$DIR/r.img,format=raw,id=hd1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_add 0 if=virtio,file=$DIR/r.img,format=raw"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_add -n 0 file.driver=file,file.filename=$DIR/r.img,driver=raw,node-name=nn1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_del b3"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_del hd1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_del nn1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"drive_del nosuch"}}
{"execute":"human-monitor-command","arguments":{"command-line":"snapshot_blkdev_internal b3 s1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"snapshot_delete_blkdev_internal b3 s1"}}
{"execute":"human-monitor-command","arguments":{"command-line":"snapshot_blkdev b3"}}
{"execute":"human-monitor-command","arguments":{"command-line":"block_resize b3 4M"}}
{"execute":"human-monitor-command","arguments":{"command-line":"block_passwd b3 pw"}}
{"execute":"human-monitor-command","arguments":{"command-line":"eject b3"}}
{"execute":"human-monitor-command","arguments":{"command-line":"change b3 $DIR/r.img raw read-only"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info block"}}
CMDS
for i in top.qcow2 ov.qcow2; do qemu-img check "$i" | sed "s|$DIR|DIR|"; done
qemu-img info top.qcow2 | sed "s|$DIR|DIR|"

echo "=== qemu-io over HMP, BLOCK_IMAGE_CORRUPTED ==="
qemu-img create -q -f qcow2 c.qcow2 1M
qemu-io -c "write -P 0x11 0 64k" c.qcow2 >/dev/null
# Point the first data cluster's L2 entry at the active L1 table.
python3 - "$DIR/c.qcow2" <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    h = f.read(104)
    l1 = struct.unpack(">Q", h[40:48])[0]
    f.seek(l1)
    l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    f.seek(l2)
    f.write(struct.pack(">Q", (1 << 63) | l1))
PY
run -M none -drive "file=$DIR/q.qcow2,if=none,id=q0" -drive "file=$DIR/c.qcow2,if=none,id=c0" 3<<CMDS
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io q0 \"write -P 0x5a 0 64k\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io q0 \"read -P 0x5a 0 64k\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io q0 \"bogus\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io nodev \"read 0 512\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io c0 \"write -P 0x22 0 512\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"info block c0"}}
CMDS
qemu-img check q.qcow2 | sed "s|$DIR|DIR|"
qemu-io -c "read -P 0x5a 0 64k" q.qcow2 | head -1

echo "=== statistics, dirty bitmaps, write threshold, throttling, quorum ==="
for i in 1 2 3 4; do qemu-img create -q -f raw "qr$i.img" 1M; done
run -M none -drive "file=$DIR/q.qcow2,if=none,id=d0,node-name=n0,stats-intervals.0=60" \
    -drive "file=$DIR/r.img,format=raw,if=none,id=t0,throttling.iops-total=1" 3<<CMDS
{"execute":"block-dirty-bitmap-add","arguments":{"node":"d0","name":"b0"}}
{"execute":"block-dirty-bitmap-add","arguments":{"node":"d0","name":"b0"}}
{"execute":"block-dirty-bitmap-add","arguments":{"node":"d0","name":"b1","granularity":1000}}
{"execute":"block-dirty-bitmap-add","arguments":{"node":"nope","name":"b1"}}
{"execute":"block-set-write-threshold","arguments":{"node-name":"n0","write-threshold":4096}}
{"execute":"block-set-write-threshold","arguments":{"node-name":"d0","write-threshold":4096}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io d0 \"aio_write -P 1 0 64k\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io d0 \"aio_flush\""}}
{"execute":"query-block"}
{"execute":"query-blockstats"}
{"execute":"query-blockstats","arguments":{"query-nodes":true}}
{"execute":"human-monitor-command","arguments":{"command-line":"info blockstats"}}
{"execute":"block-dirty-bitmap-clear","arguments":{"node":"d0","name":"b0"}}
{"execute":"block-dirty-bitmap-clear","arguments":{"node":"d0","name":"zz"}}
{"execute":"block-dirty-bitmap-remove","arguments":{"node":"d0","name":"b0"}}
{"execute":"block-dirty-bitmap-remove","arguments":{"node":"xx","name":"b0"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info block t0"}}
{"execute":"block_set_io_throttle","arguments":{"device":"d0","bps":1024,"bps_rd":1,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}}
{"execute":"block_set_io_throttle","arguments":{"device":"nod","bps":1024,"bps_rd":0,"bps_wr":0,"iops":0,"iops_rd":0,"iops_wr":0}}
{"execute":"block_set_io_throttle","arguments":{"device":"d0","bps":0,"bps_rd":0,"bps_wr":4096,"iops":0,"iops_rd":0,"iops_wr":0,"group":"gg"}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io t0 \"aio_read 0 512\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io t0 \"aio_read 0 512\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io t0 \"aio_flush\""}}
{"execute":"human-monitor-command","arguments":{"command-line":"block_set_io_throttle d0 0 0 0 0 0 0"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info block d0"}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"quorum","id":"q0","node-name":"qn","vote-threshold":2,"children":[{"driver":"raw","node-name":"c1","file":{"driver":"file","filename":"$DIR/qr1.img"}},{"driver":"raw","node-name":"c2","file":{"driver":"file","filename":"$DIR/qr2.img"}},{"driver":"raw","node-name":"c3","file":{"driver":"file","filename":"$DIR/qr3.img"}}]}}}
{"execute":"blockdev-add","arguments":{"options":{"driver":"raw","node-name":"c4","file":{"driver":"file","filename":"$DIR/qr4.img"}}}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io q0 \"write -P 7 0 4k\""}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn","child":"children.2"}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn","child":"children.7"}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn","node":"c4","child":"children.0"}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn"}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn","node":"zz"}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn","node":"c1"}}
{"execute":"x-blockdev-change","arguments":{"parent":"c4","node":"c1"}}
{"execute":"x-blockdev-change","arguments":{"parent":"qn","node":"c4"}}
{"execute":"x-blockdev-del","arguments":{"node-name":"c4"}}
{"execute":"human-monitor-command","arguments":{"command-line":"qemu-io q0 \"read -P 7 0 4k\""}}
CMDS
