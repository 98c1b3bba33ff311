#!/usr/bin/env python3
#
# Reads the guest-memory dumps of the dump tests and checks them against
# pmemsave files of the same guest.
#
# Usage:
#   dump-reader.py elf CORE PMEM@ADDR...     check an ELF core
#   dump-reader.py kdump FILE PMEM@ADDR...   check a kdump file (flattened or
#                                            plain diskdump)
#   dump-reader.py unflatten IN OUT          rearrange the flattened format
#   dump-reader.py codecs                    print which codecs can be read
#
# PMEM@ADDR names a pmemsave file taken at guest-physical ADDR (hex or
# decimal). Every dumped byte that one of them covers must be equal.
# Output is stable text (no file offsets that depend on the note size),
# for the golden .out files.
#
# Decompression: zlib from Python; LZO1X and raw snappy through the
# system's liblzo2 and libsnappy (ctypes), so the check does not rely on
# the emulator's own codecs.
#
# Copyright (C) 2026 The rqemu authors. GPL-2.0-or-later.

import ctypes
import ctypes.util
import struct
import sys
import zlib

PAGE = 4096


class Bad(Exception):
    pass


# ---- codecs ----------------------------------------------------------------

def _lib(name):
    path = ctypes.util.find_library(name)
    if not path:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


LZO = _lib("lzo2")
SNAPPY = _lib("snappy")


def lzo_decompress(data, size):
    if LZO is None:
        raise Bad("liblzo2 not available")
    out = ctypes.create_string_buffer(size)
    out_len = ctypes.c_size_t(size)
    rc = LZO.lzo1x_decompress_safe(data, ctypes.c_size_t(len(data)), out,
                                   ctypes.byref(out_len), None)
    if rc != 0:
        raise Bad("lzo1x_decompress_safe failed: %d" % rc)
    return out.raw[:out_len.value]


def snappy_decompress(data, size):
    if SNAPPY is None:
        raise Bad("libsnappy not available")
    out = ctypes.create_string_buffer(size)
    out_len = ctypes.c_size_t(size)
    rc = SNAPPY.snappy_uncompress(data, ctypes.c_size_t(len(data)), out,
                                  ctypes.byref(out_len))
    if rc != 0:
        raise Bad("snappy_uncompress failed: %d" % rc)
    return out.raw[:out_len.value]


def zlib_decompress(data, size):
    # The zlib wrapper (header + adler32), not raw deflate.
    return zlib.decompress(data)


CODECS = {1: ("zlib", zlib_decompress), 2: ("lzo", lzo_decompress),
          4: ("snappy", snappy_decompress)}


# ---- oracle ----------------------------------------------------------------

class Pmem:
    """pmemsave files, each at a guest-physical address."""

    def __init__(self, specs):
        self.parts = []
        for spec in specs:
            path, _, addr = spec.partition("@")
            with open(path, "rb") as f:
                self.parts.append((int(addr, 0), f.read()))

    def lookup(self, gpa, n):
        """The n bytes at gpa, or None when no file covers them all."""
        for base, data in self.parts:
            if base <= gpa and gpa + n <= base + len(data):
                return data[gpa - base:gpa - base + n]
        return None


# ---- ELF -------------------------------------------------------------------

PT_LOAD, PT_NOTE = 1, 4
PN_XNUM = 0xffff


def parse_notes(blob):
    notes = []
    off = 0
    while off + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, off)
        off += 12
        name = blob[off:off + namesz].rstrip(b"\0").decode("ascii", "replace")
        off += (namesz + 3) & ~3
        desc = blob[off:off + descsz]
        off += (descsz + 3) & ~3
        notes.append((name, ntype, desc))
    return notes


def check_elf(path, pmem):
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise Bad("not an ELF file")
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2) or ei_data != 1:
        raise Bad("not a little-endian ELF32/ELF64 file")
    c64 = ei_class == 2
    if c64:
        (e_type, e_machine, _v, _entry, e_phoff, e_shoff, _flags, _ehsize,
         e_phentsize, e_phnum, e_shentsize, e_shnum, _shstrndx) = struct.unpack_from(
            "<HHIQQQIHHHHHH", data, 16)
    else:
        (e_type, e_machine, _v, _entry, e_phoff, e_shoff, _flags, _ehsize,
         e_phentsize, e_phnum, e_shentsize, e_shnum, _shstrndx) = struct.unpack_from(
            "<HHIIIIIHHHHHH", data, 16)
    print("elf: class %d, type %d (CORE=4), machine %d (x86-64=62, i386=3)" % (
        64 if c64 else 32, e_type, e_machine))
    phnum = e_phnum
    if e_phnum == PN_XNUM:
        # The real count is in section 0's sh_info.
        if e_shnum < 1 or e_shoff == 0:
            raise Bad("PN_XNUM without section 0")
        phnum = struct.unpack_from("<I", data, e_shoff + (44 if c64 else 28))[0]
        print("elf: PN_XNUM, %d program headers in section 0" % phnum)
    loads = []
    notes = []
    for i in range(phnum):
        at = e_phoff + i * e_phentsize
        if c64:
            (p_type, _pf, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz,
             _align) = struct.unpack_from("<IIQQQQQQ", data, at)
        else:
            (p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _pf,
             _align) = struct.unpack_from("<IIIIIIII", data, at)
        if p_offset + p_filesz > len(data):
            raise Bad("segment %d runs past the end of the file" % i)
        if p_type == PT_NOTE:
            notes += parse_notes(data[p_offset:p_offset + p_filesz])
        elif p_type == PT_LOAD:
            loads.append((p_vaddr, p_paddr, p_filesz, p_memsz, p_offset))
    print("elf: %d PT_LOAD" % len(loads))
    shown = loads if len(loads) <= 40 else loads[:5] + [None] + loads[-5:]
    for load in shown:
        if load is None:
            print("  ... %d more" % (len(loads) - 10))
            continue
        v, p, fs, ms, _o = load
        print("  LOAD vaddr 0x%x paddr 0x%x filesz 0x%x memsz 0x%x" % (v, p, fs, ms))
    for name, ntype, desc in notes:
        print("  NOTE %s type %d size %d" % (name, ntype, len(desc)))
    compared = 0
    for v, p, fs, ms, off in loads:
        for at in range(0, fs, PAGE):
            n = min(PAGE, fs - at)
            want = pmem.lookup(p + at, n)
            if want is None:
                continue
            if data[off + at:off + at + n] != want:
                raise Bad("PT_LOAD paddr 0x%x differs from pmemsave at 0x%x" % (p, p + at))
            compared += 1
    print("elf: %d pieces compared with pmemsave, all equal" % compared)


# ---- kdump -----------------------------------------------------------------

def unflatten(data):
    """makedumpfile's flattened format -> the plain diskdump file."""
    if data[:12] != b"makedumpfile":
        raise Bad("no makedumpfile header")
    ftype, version = struct.unpack_from(">qq", data, 16)
    if ftype != 1 or version != 1:
        raise Bad("flat header type %d version %d" % (ftype, version))
    off = 4096
    out = bytearray()
    records = 0
    while True:
        if off + 16 > len(data):
            raise Bad("flattened stream ends without the end mark")
        at, size = struct.unpack_from(">qq", data, off)
        off += 16
        if at == -1 and size == -1:
            break
        if at < 0 or size < 0 or off + size > len(data):
            raise Bad("bad flattened record at %d" % (off - 16))
        if len(out) < at + size:
            out.extend(b"\0" * (at + size - len(out)))
        out[at:at + size] = data[off:off + size]
        off += size
        records += 1
    if off != len(data):
        raise Bad("%d bytes after the end mark" % (len(data) - off))
    return bytes(out), records


def check_kdump(path, pmem):
    with open(path, "rb") as f:
        data = f.read()
    if data[:12] == b"makedumpfile":
        data, _ = unflatten(data)
        print("kdump: flattened, rearranged")
    if data[:8] != b"KDUMP   ":
        raise Bad("no KDUMP signature")
    (version,) = struct.unpack_from("<I", data, 8)
    (status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr, total_ram,
     device_blocks, written_blocks, current_cpu, nr_cpus) = struct.unpack_from(
        "<IIIIIIIIII", data, 424)
    print("kdump: version %d, block size %d, %d CPUs, status 0x%x" %
          (version, block_size, nr_cpus, status))
    sub = block_size
    (phys_base, dump_level, split, _spfn, _epfn, off_vmci, size_vmci, off_note,
     note_size, _off_erase, _size_erase, start_pfn, end_pfn, max_mapnr64) = struct.unpack_from(
        "<QIIQQQQQQQQQQQ", data, sub)
    print("kdump: dump level %d, max_mapnr %d, notes %d bytes" %
          (dump_level, max_mapnr64, note_size))
    notes = parse_notes(data[off_note:off_note + note_size])
    for name, ntype, desc in notes:
        print("  NOTE %s type %d size %d" % (name, ntype, len(desc)))
    if block_size != PAGE:
        raise Bad("block size %d" % block_size)
    bm_off = block_size * (1 + sub_hdr_size)
    half = bitmap_blocks * block_size // 2
    bm1 = data[bm_off:bm_off + half]
    bm2 = data[bm_off + half:bm_off + 2 * half]
    if bm1 != bm2:
        raise Bad("the two bitmaps differ")
    desc_off = block_size * (1 + sub_hdr_size + bitmap_blocks)
    counts = {"zero": 0, "raw": 0}
    zero_offsets = set()
    compared = 0
    idx = 0
    for pfn in range(max_mapnr64):
        if not (bm2[pfn >> 3] >> (pfn & 7)) & 1:
            continue
        offset, size, flags, _pf = struct.unpack_from("<QIIQ", data, desc_off + 24 * idx)
        idx += 1
        raw = data[offset:offset + size]
        if len(raw) != size:
            raise Bad("page %d data past the end" % pfn)
        if flags == 0:
            if size != PAGE:
                raise Bad("page %d stored raw with size %d" % (pfn, size))
            page = raw
            counts["raw"] += 1
        elif flags in CODECS:
            name, fn = CODECS[flags]
            if size >= PAGE:
                raise Bad("page %d compressed but not smaller" % pfn)
            page = fn(raw, PAGE)
            counts[name] = counts.get(name, 0) + 1
        else:
            raise Bad("page %d flags 0x%x" % (pfn, flags))
        if len(page) != PAGE:
            raise Bad("page %d is %d bytes" % (pfn, len(page)))
        if page == bytes(PAGE):
            counts["zero"] += 1
            zero_offsets.add((offset, size, flags))
        want = pmem.lookup(pfn * PAGE, PAGE)
        if want is not None:
            if page != want:
                raise Bad("page %d differs from pmemsave" % pfn)
            compared += 1
    print("kdump: %d pages, %d compared with pmemsave, all equal" % (idx, compared))
    print("kdump: zero pages %d sharing %d descriptor(s)" % (counts["zero"], len(zero_offsets)))
    shown = ", ".join("%s %s" % (k, "yes" if counts[k] else "no")
                      for k in sorted(counts) if k != "zero")
    print("kdump: page kinds seen: %s" % shown)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd = argv[1]
    try:
        if cmd == "elf":
            check_elf(argv[2], Pmem(argv[3:]))
        elif cmd == "kdump":
            check_kdump(argv[2], Pmem(argv[3:]))
        elif cmd == "unflatten":
            with open(argv[2], "rb") as f:
                out, records = unflatten(f.read())
            with open(argv[3], "wb") as f:
                f.write(out)
        elif cmd == "codecs":
            print("zlib lzo snappy" if LZO and SNAPPY else
                  " ".join(["zlib"] + (["lzo"] if LZO else []) + (["snappy"] if SNAPPY else [])))
        else:
            print("unknown command %s" % cmd)
            return 2
    except Bad as e:
        print("FAIL: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
