//! Compressed clusters: raw deflate, with back-references kept within 4 KiB
//! because QEMU inflates with a 4 KiB window (window bits -12).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::error::{BlockError, BlockResult};

/// Size of the window readers use; no match may reach further back.
const WINDOW: usize = 4096;

/// Compresses `input` into `out`; returns None when the result would not be
/// smaller than `input` (the cluster is then written uncompressed).
pub fn compress_cluster(input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let mut c = Compress::new(Compression::default(), false);
    out.clear();
    out.resize(input.len(), 0);
    // Resetting the dictionary every WINDOW bytes keeps every match distance below
    // the reader's window, which miniz_oxide cannot limit otherwise.
    let chunks = input.len().div_ceil(WINDOW);
    for (i, chunk) in input.chunks(WINDOW).enumerate() {
        let last = i + 1 == chunks;
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Full
        };
        let pos = c.total_out() as usize;
        if pos >= out.len() {
            return None;
        }
        let before_in = c.total_in();
        let st = c.compress(chunk, &mut out[pos..], flush).ok()?;
        if (c.total_in() - before_in) as usize != chunk.len() {
            return None;
        }
        if last && st != Status::StreamEnd {
            return None;
        }
        if !last && c.total_out() as usize >= out.len() {
            return None;
        }
    }
    let n = c.total_out() as usize;
    if n >= input.len() {
        return None;
    }
    out.truncate(n);
    Some(n)
}

/// Inflates one compressed cluster; `out` must come out exactly full.
pub fn decompress_cluster(input: &[u8], out: &mut [u8]) -> BlockResult<()> {
    let mut d = Decompress::new(false);
    let st = d.decompress(input, out, FlushDecompress::Finish);
    let ok = matches!(
        st,
        Ok(Status::StreamEnd) | Ok(Status::Ok) | Ok(Status::BufError)
    );
    if !ok || d.total_out() as usize != out.len() {
        return Err(BlockError::errno("Could not decompress cluster", libc::EIO));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_cluster_round_trips() {
        let mut input = vec![0u8; 65536];
        for (i, b) in input.iter_mut().enumerate() {
            *b = (i % 251) as u8 ^ (i / 4096) as u8;
        }
        let mut out = Vec::new();
        let n = compress_cluster(&input, &mut out).unwrap();
        assert!(n < input.len());
        let mut back = vec![0u8; 65536];
        decompress_cluster(&out, &mut back).unwrap();
        assert_eq!(back, input);
    }

    #[test]
    fn random_data_is_not_compressed() {
        let mut x = 12345u64;
        let input: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut out = Vec::new();
        assert!(compress_cluster(&input, &mut out).is_none());
    }

    #[test]
    fn garbage_input_fails_to_decompress() {
        let mut out = vec![0u8; 4096];
        assert!(decompress_cluster(&[0xff; 100], &mut out).is_err());
    }
}
