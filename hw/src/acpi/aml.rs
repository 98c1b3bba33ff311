//! A minimal AML encoder: names, integers, packages, scopes and devices, enough for
//! the DSDT's sleep-state packages and a few device objects.

/// Encodes a PkgLength for a body of `body_len` bytes (the length counts itself).
pub fn pkg_length(body_len: usize) -> Vec<u8> {
    // One byte holds lengths up to 63; otherwise 2..4 bytes with 4 bits in the lead.
    if body_len < 0x3f {
        return vec![(body_len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = body_len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut v = vec![((extra as u8) << 6) | (total & 0x0f) as u8];
            for k in 0..extra {
                v.push((total >> (4 + 8 * k)) as u8);
            }
            return v;
        }
    }
    // Larger than AML allows (256 MiB): callers never build such objects.
    vec![0xff, 0xff, 0xff, 0xff]
}

/// A NameSeg / root path like `_S5_`, `\_SB_` or `PCI0` (segments padded with `_`).
pub fn name_string(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = name;
    if let Some(r) = rest.strip_prefix('\\') {
        out.push(b'\\');
        rest = r;
    }
    let segs: Vec<&str> = rest.split('.').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => out.push(0x00),
        1 => {}
        2 => out.push(0x2e),
        n => {
            out.push(0x2f);
            out.push(n as u8);
        }
    }
    for s in segs {
        let mut seg = [b'_'; 4];
        for (i, b) in s.bytes().take(4).enumerate() {
            seg[i] = b;
        }
        out.extend_from_slice(&seg);
    }
    out
}

/// An integer with the shortest encoding (Zero, One, Byte/Word/DWord/QWord prefix).
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00],
        1 => vec![0x01],
        2..=0xff => vec![0x0a, v as u8],
        0x100..=0xffff => {
            let mut o = vec![0x0b];
            o.extend_from_slice(&(v as u16).to_le_bytes());
            o
        }
        0x1_0000..=0xffff_ffff => {
            let mut o = vec![0x0c];
            o.extend_from_slice(&(v as u32).to_le_bytes());
            o
        }
        _ => {
            let mut o = vec![0x0e];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// `Name(name, value)`.
pub fn name(n: &str, value: &[u8]) -> Vec<u8> {
    let mut o = vec![0x08];
    o.extend(name_string(n));
    o.extend_from_slice(value);
    o
}

/// `Package() { ints... }`.
pub fn package(items: &[u64]) -> Vec<u8> {
    let mut body = vec![items.len() as u8];
    for &i in items {
        body.extend(integer(i));
    }
    let mut o = vec![0x12];
    o.extend(pkg_length(body.len()));
    o.extend(body);
    o
}

/// A string constant.
pub fn string(s: &str) -> Vec<u8> {
    let mut o = vec![0x0d];
    o.extend(s.bytes().filter(|b| *b != 0));
    o.push(0);
    o
}

/// A compressed EISA id (`PNP0A03`) as a DWord integer.
pub fn eisa_id(id: &str) -> Vec<u8> {
    let b = id.as_bytes();
    if b.len() != 7 {
        return integer(0);
    }
    let c = |x: u8| ((x.wrapping_sub(b'@')) & 0x1f) as u32;
    let hex = |x: u8| (x as char).to_digit(16).unwrap_or(0);
    let v: u32 = (c(b[0]) << 26)
        | (c(b[1]) << 21)
        | (c(b[2]) << 16)
        | (hex(b[3]) << 12)
        | (hex(b[4]) << 8)
        | (hex(b[5]) << 4)
        | hex(b[6]);
    let mut o = vec![0x0c];
    o.extend_from_slice(&v.swap_bytes().to_le_bytes());
    o
}

fn block(prefix: &[u8], n: &str, body: &[u8]) -> Vec<u8> {
    let mut inner = name_string(n);
    inner.extend_from_slice(body);
    let mut o = prefix.to_vec();
    o.extend(pkg_length(inner.len()));
    o.extend(inner);
    o
}

/// `Scope(name) { body }`.
pub fn scope(n: &str, body: &[u8]) -> Vec<u8> {
    block(&[0x10], n, body)
}

/// `Device(name) { body }`.
pub fn device(n: &str, body: &[u8]) -> Vec<u8> {
    block(&[0x5b, 0x82], n, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_package_encodes_as_acpica_does() {
        let v = name("_S5_", &package(&[0, 0, 0, 0]));
        assert_eq!(
            v,
            vec![0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0, 0, 0, 0]
        );
    }

    #[test]
    fn pkg_length_switches_to_two_bytes_past_63() {
        assert_eq!(pkg_length(10), vec![11]);
        assert_eq!(pkg_length(62), vec![63]);
        assert_eq!(pkg_length(63), vec![0x41, 0x04]); // 65 = 0x41: 1 extra byte, low nibble 1, then 4
        assert_eq!(pkg_length(0x1000), vec![0x83, 0x00, 0x01]);
    }

    #[test]
    fn integers_use_the_shortest_prefix() {
        assert_eq!(integer(0), vec![0]);
        assert_eq!(integer(1), vec![1]);
        assert_eq!(integer(0x20), vec![0x0a, 0x20]);
        assert_eq!(integer(0x1234), vec![0x0b, 0x34, 0x12]);
        assert_eq!(integer(0x1_0000), vec![0x0c, 0, 0, 1, 0]);
    }

    #[test]
    fn eisa_id_matches_known_encoding() {
        // PNP0A03 is 0x030AD041 stored little-endian.
        assert_eq!(eisa_id("PNP0A03"), vec![0x0c, 0x41, 0xd0, 0x0a, 0x03]);
    }

    #[test]
    fn paths_get_dual_and_root_prefixes() {
        assert_eq!(name_string("\\_SB"), b"\\_SB_".to_vec());
        assert_eq!(name_string("_SB.PCI0"), [&[0x2e][..], b"_SB_PCI0"].concat());
    }
}
