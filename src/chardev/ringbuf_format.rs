//! The data formats of ringbuf-write and ringbuf-read, with QEMU 2.8's
//! exact behaviour: base64 input checked against QEMU's character set and
//! then decoded as GLib does; utf8 output cut at the first NUL byte and
//! decoded as QEMU's JSON writer decodes strings (each invalid sequence
//! becomes U+FFFD).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn rank(c: u8) -> Option<u32> {
    if c == b'=' {
        // GLib counts padding as a zero digit and drops bytes after.
        return Some(0);
    }
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// QEMU's qbase64_decode: only the alphabet, `=` and newlines are
/// accepted; GLib then skips newlines, decodes whole quadruples, and
/// drops the bytes a trailing `=` or `==` stands for.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    if !s.bytes().all(|c| rank(c).is_some() || c == b'\n') {
        return Err("Base64 data contains invalid characters".into());
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut v, mut n) = (0u32, 0);
    let mut last = [0u8; 2];
    for c in s.bytes() {
        let Some(r) = rank(c) else { continue };
        last[1] = last[0];
        last[0] = c;
        v = (v << 6) | r;
        n += 1;
        if n == 4 {
            out.push((v >> 16) as u8);
            if last[1] != b'=' {
                out.push((v >> 8) as u8);
            }
            if last[0] != b'=' {
                out.push(v as u8);
            }
            n = 0;
            v = 0;
        }
    }
    Ok(out)
}

/// One code point as QEMU's mod_utf8_codepoint reads it: the value (None
/// for an invalid sequence) and the bytes consumed.
fn codepoint(s: &[u8]) -> (Option<u32>, usize) {
    const MIN: [u32; 5] = [0x80, 0x800, 0x10000, 0x20_0000, 0x400_0000];
    let lead = s[0];
    if lead < 0x80 {
        return (Some(u32::from(lead)), 1);
    }
    if lead >= 0xFE || lead & 0x40 == 0 {
        return (None, 1);
    }
    let len = lead.leading_ones() as usize;
    let mut cp = u32::from(lead) & ((0x80u32 >> len) - 1);
    for i in 1..len {
        match s.get(i) {
            Some(&b) if b & 0xC0 == 0x80 => cp = (cp << 6) | u32::from(b & 0x3F),
            _ => return (None, i),
        }
    }
    let bad = cp > 0x10FFFF
        || (0xFDD0..=0xFDEF).contains(&cp)
        || cp & 0xFFFE == 0xFFFE
        || (0xD800..=0xDFFF).contains(&cp)
        || (cp < MIN[len - 2] && !(cp == 0 && len == 2));
    (if bad { None } else { Some(cp) }, len)
}

/// Ring bytes as the string QMP's ringbuf-read returns for utf8.
pub fn to_utf8_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut s = &bytes[..end];
    let mut out = String::with_capacity(s.len());
    while !s.is_empty() {
        let (cp, used) = codepoint(s);
        out.push(cp.and_then(char::from_u32).unwrap_or('\u{FFFD}'));
        s = &s[used.max(1)..];
    }
    out
}

/// The text HMP's ringbuf_read prints: up to the first NUL, `\` doubled,
/// control characters other than newline and tab as `\uXXXX`.
pub fn to_hmp_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let mut raw = Vec::with_capacity(end);
    for &b in &bytes[..end] {
        if b == b'\\' {
            raw.extend_from_slice(b"\\\\");
        } else if (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7F {
            raw.extend_from_slice(format!("\\u{b:04X}").as_bytes());
        } else {
            raw.push(b);
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// ringbuf-write's utf8 data: the string's bytes up to an embedded NUL.
pub fn utf8_input(s: &str) -> &[u8] {
    let b = s.as_bytes();
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_valid_and_padding() {
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm9v\nYmFy\n").unwrap(), b"foobar");
        assert_eq!(decode_base64("").unwrap(), b"");
    }

    #[test]
    fn base64_incomplete_group_is_dropped_like_glib() {
        assert_eq!(decode_base64("Zm9vYg").unwrap(), b"foo");
    }

    #[test]
    fn base64_invalid_characters_are_refused() {
        for bad in ["Zm9v!", "Zm 9v", "Zm9v\r\n", "é"] {
            assert_eq!(
                decode_base64(bad).unwrap_err(),
                "Base64 data contains invalid characters"
            );
        }
    }

    #[test]
    fn utf8_output_replaces_invalid_sequences() {
        assert_eq!(to_utf8_text("héllo".as_bytes()), "héllo");
        assert_eq!(to_utf8_text(b"a\xffb"), "a\u{FFFD}b");
        // A lead byte whose continuation is missing consumes only itself.
        assert_eq!(to_utf8_text(b"\xc3(x"), "\u{FFFD}(x");
        // Overlong forms are invalid, except QEMU's encoding of NUL.
        assert_eq!(to_utf8_text(b"\xe0\x80\xaf"), "\u{FFFD}");
        assert_eq!(to_utf8_text(b"\xc0\x80"), "\u{0}");
        // Surrogates and noncharacters.
        assert_eq!(to_utf8_text(b"\xed\xa0\x80"), "\u{FFFD}");
        assert_eq!(to_utf8_text(b"\xef\xbf\xbf"), "\u{FFFD}");
        // A ring that lost the start of a character.
        assert_eq!(to_utf8_text(b"\xa9ok"), "\u{FFFD}ok");
    }

    #[test]
    fn utf8_output_stops_at_nul() {
        assert_eq!(to_utf8_text(b"ab\0cd"), "ab");
        assert_eq!(utf8_input("ab\0cd"), b"ab");
    }

    #[test]
    fn hmp_text_escapes_controls_and_backslash() {
        assert_eq!(to_hmp_text(b"a\\b\x01\n\t\x7f"), "a\\\\b\\u0001\n\t\\u007F");
    }
}
