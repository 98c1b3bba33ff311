//! Transmission-phase codecs: the request header, simple replies and
//! structured reply chunks.

use super::iobuf::{Mark, OutputBuffer};
use super::proto;

pub(crate) const REQUEST_LEN: usize = 28;
pub(crate) const CHUNK_HEADER_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    pub flags: u16,
    pub typ: u16,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

/// Decode a request header; None when the magic is wrong (the stream is
/// out of sync and the connection must go).
pub(crate) fn parse_request(b: &[u8]) -> Option<Request> {
    let b: &[u8; REQUEST_LEN] = b.get(..REQUEST_LEN)?.try_into().ok()?;
    let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic != proto::REQUEST_MAGIC {
        return None;
    }
    let mut cookie = [0u8; 8];
    cookie.copy_from_slice(&b[8..16]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&b[16..24]);
    Some(Request {
        flags: u16::from_be_bytes([b[4], b[5]]),
        typ: u16::from_be_bytes([b[6], b[7]]),
        cookie: u64::from_be_bytes(cookie),
        offset: u64::from_be_bytes(offset),
        len: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
    })
}

pub(crate) fn simple_reply(out: &mut OutputBuffer, error: u32, cookie: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
    h[4..8].copy_from_slice(&error.to_be_bytes());
    h[8..16].copy_from_slice(&cookie.to_be_bytes());
    out.push(&h);
}

pub(crate) fn chunk_header(out: &mut OutputBuffer, flags: u16, typ: u16, cookie: u64, len: u32) {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[0..4].copy_from_slice(&proto::STRUCTURED_REPLY_MAGIC.to_be_bytes());
    h[4..6].copy_from_slice(&flags.to_be_bytes());
    h[6..8].copy_from_slice(&typ.to_be_bytes());
    h[8..16].copy_from_slice(&cookie.to_be_bytes());
    h[16..20].copy_from_slice(&len.to_be_bytes());
    out.push(&h);
}

/// Mark the chunk whose header starts at `mark` as the final one.
pub(crate) fn set_done(out: &mut OutputBuffer, mark: Mark) {
    out.patch(mark.bytes + 4, &proto::REPLY_FLAG_DONE.to_be_bytes());
}

/// Set the length of the chunk whose header starts at `mark`.
pub(crate) fn set_chunk_len(out: &mut OutputBuffer, mark: Mark, len: u32) {
    out.patch(mark.bytes + 16, &len.to_be_bytes());
}

/// NBD_REPLY_TYPE_NONE, final.
pub(crate) fn done_chunk(out: &mut OutputBuffer, cookie: u64) {
    chunk_header(
        out,
        proto::REPLY_FLAG_DONE,
        proto::REPLY_TYPE_NONE,
        cookie,
        0,
    );
}

/// NBD_REPLY_TYPE_ERROR with a message, final.
pub(crate) fn error_chunk(out: &mut OutputBuffer, cookie: u64, error: u32, msg: &str) {
    let msg = &msg.as_bytes()[..msg.len().min(proto::MAX_STRING)];
    chunk_header(
        out,
        proto::REPLY_FLAG_DONE,
        proto::REPLY_TYPE_ERROR,
        cookie,
        6 + msg.len() as u32,
    );
    out.push(&error.to_be_bytes());
    out.push(&(msg.len() as u16).to_be_bytes());
    out.push(msg);
}

/// NBD_REPLY_TYPE_OFFSET_HOLE, not final.
pub(crate) fn hole_chunk(out: &mut OutputBuffer, cookie: u64, offset: u64, len: u32) {
    chunk_header(out, 0, proto::REPLY_TYPE_OFFSET_HOLE, cookie, 12);
    out.push(&offset.to_be_bytes());
    out.push(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_bytes(magic: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&magic.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&proto::CMD_WRITE.to_be_bytes());
        b.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        b.extend_from_slice(&4096u64.to_be_bytes());
        b.extend_from_slice(&512u32.to_be_bytes());
        b
    }

    #[test]
    fn request_header_decodes_all_fields() {
        let r = parse_request(&request_bytes(proto::REQUEST_MAGIC));
        assert_eq!(
            r,
            Some(Request {
                flags: 1,
                typ: proto::CMD_WRITE,
                cookie: 0x1122_3344_5566_7788,
                offset: 4096,
                len: 512
            })
        );
    }

    #[test]
    fn request_with_bad_magic_is_rejected() {
        assert_eq!(parse_request(&request_bytes(0xdead_beef)), None);
        assert_eq!(parse_request(&[0u8; 10]), None);
    }

    #[test]
    fn error_chunk_carries_value_and_message() {
        let mut out = OutputBuffer::default();
        error_chunk(&mut out, 7, proto::EINVAL, "bad");
        let mut wire = Vec::new();
        let _ = out.write_to(&mut wire);
        assert_eq!(wire.len(), CHUNK_HEADER_LEN + 9);
        assert_eq!(&wire[4..8], &[0, 1, 0x80, 1]);
        assert_eq!(&wire[16..20], &[0, 0, 0, 9]);
        assert_eq!(&wire[20..24], &[0, 0, 0, 22]);
        assert_eq!(&wire[24..29], &[0, 3, b'b', b'a', b'd']);
    }
}
