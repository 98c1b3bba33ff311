//! Page compressors of the kdump formats: zlib (zlib wrapper, level 1, as
//! QEMU's compress2(Z_BEST_SPEED)), LZO1X-1 and raw (unframed) snappy.

use flate2::{Compress, Compression, FlushCompress, Status};

use super::header::{FLAG_LZO, FLAG_SNAPPY, FLAG_ZLIB};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    Zlib,
    Lzo,
    Snappy,
}

impl CodecKind {
    /// The flag in `disk_dump_header.status` and in each page descriptor.
    pub fn flag(self) -> u32 {
        match self {
            CodecKind::Zlib => FLAG_ZLIB,
            CodecKind::Lzo => FLAG_LZO,
            CodecKind::Snappy => FLAG_SNAPPY,
        }
    }
}

/// One compressor with its reusable state; each worker thread owns one.
pub struct Codec {
    kind: CodecKind,
    zlib: Compress,
    snappy: snap::raw::Encoder,
    scratch: Vec<u8>,
}

impl Codec {
    pub fn new(kind: CodecKind) -> Self {
        Codec {
            kind,
            zlib: Compress::new(Compression::new(1), true),
            snappy: snap::raw::Encoder::new(),
            scratch: Vec::new(),
        }
    }

    /// Appends the compressed page to `out` and returns true when that is
    /// smaller than the page; otherwise leaves `out` alone.
    pub fn compress(&mut self, page: &[u8], out: &mut Vec<u8>) -> bool {
        let limit = page.len() - 1;
        match self.kind {
            CodecKind::Zlib => {
                self.zlib.reset();
                self.scratch.resize(limit, 0);
                // Output that does not finish within `limit` bytes is not
                // worth storing compressed, so stop there.
                match self
                    .zlib
                    .compress(page, &mut self.scratch, FlushCompress::Finish)
                {
                    Ok(Status::StreamEnd) => {
                        let n = self.zlib.total_out() as usize;
                        out.extend_from_slice(&self.scratch[..n]);
                        true
                    }
                    _ => false,
                }
            }
            CodecKind::Lzo => {
                let c = lzo1x::compress(page, lzo1x::CompressLevel::new(3));
                if c.len() <= limit {
                    out.extend_from_slice(&c);
                    true
                } else {
                    false
                }
            }
            CodecKind::Snappy => {
                self.scratch
                    .resize(snap::raw::max_compress_len(page.len()), 0);
                match self.snappy.compress(page, &mut self.scratch) {
                    Ok(n) if n <= limit => {
                        out.extend_from_slice(&self.scratch[..n]);
                        true
                    }
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_page() -> Vec<u8> {
        (0..4096u32)
            .map(|i| b"kdump page "[(i % 11) as usize])
            .collect()
    }

    fn noise_page() -> Vec<u8> {
        let mut x = 0x1234_5678_9abc_def0u64;
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_a_compressible_page() {
        let page = text_page();
        for kind in [CodecKind::Zlib, CodecKind::Lzo, CodecKind::Snappy] {
            let mut out = Vec::new();
            assert!(Codec::new(kind).compress(&page, &mut out), "{kind:?}");
            let mut back = vec![0u8; 4096];
            match kind {
                CodecKind::Zlib => {
                    let mut d = flate2::Decompress::new(true);
                    d.decompress(&out, &mut back, flate2::FlushDecompress::Finish)
                        .unwrap();
                }
                CodecKind::Lzo => lzo1x::decompress(&out, &mut back).unwrap(),
                CodecKind::Snappy => {
                    snap::raw::Decoder::new()
                        .decompress(&out, &mut back)
                        .unwrap();
                }
            }
            assert_eq!(back, page, "{kind:?}");
        }
    }

    #[test]
    fn zlib_output_has_the_zlib_wrapper_at_level_1() {
        let mut out = Vec::new();
        Codec::new(CodecKind::Zlib).compress(&text_page(), &mut out);
        // CMF 0x78, FLG 0x01: deflate, 32 KiB window, fastest level.
        assert_eq!(&out[..2], &[0x78, 0x01]);
    }

    #[test]
    fn incompressible_page_is_refused_by_every_codec() {
        let page = noise_page();
        for kind in [CodecKind::Zlib, CodecKind::Lzo, CodecKind::Snappy] {
            let mut out = Vec::new();
            assert!(!Codec::new(kind).compress(&page, &mut out), "{kind:?}");
            assert!(out.is_empty());
        }
    }
}
