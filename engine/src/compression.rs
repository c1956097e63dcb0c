//! Kafka's record-batch codecs, as byte-stream transforms: gzip, snappy (raw blocks, or the
//! xerial framing the Java client and kafka-python write), lz4 (the LZ4 frame format) and
//! zstd, all through well-kept crates (flate2, snap, lz4_flex, zstd).
//!
//! Owns: decompressing a batch's records region into a caller's scratch buffer with a hard
//! output limit, and compressing records the way Kafka's broker does when a topic's
//! `compression.type` asks for a codec. Must never: size an allocation from a length the input
//! claims before checking it against the limit, or produce more than `limit_bytes` of output.

use std::io::{Read, Write};

use crate::batch::Compression;

/// xerial snappy-java stream header: magic, then version and minimum compatible version.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// Block size of the xerial framing Kafka's Java producer writes (`SnappyOutputStream`).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Kafka's default `compression.gzip.level` (`Deflater.DEFAULT_COMPRESSION`) is 6.
const GZIP_LEVEL: u32 = 6;
/// Kafka's default `compression.zstd.level`.
const ZSTD_LEVEL: i32 = 3;

/// Why a payload could not be decompressed or compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes are not a valid stream of the codec.
    Corrupt { codec: &'static str, reason: String },
    /// The decompressed records would exceed the limit.
    TooLarge { limit_bytes: usize },
    /// Codec id 0 (none) or 5–7.
    NotACodec(u8),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Corrupt { codec, reason } => write!(f, "{codec} payload does not decompress: {reason}"),
            CodecError::TooLarge { limit_bytes } => {
                write!(f, "decompressed records exceed the {limit_bytes}-byte limit")
            }
            CodecError::NotACodec(id) => write!(f, "compression id {id} is not a codec"),
        }
    }
}

impl std::error::Error for CodecError {}

fn corrupt(codec: &'static str, reason: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt { codec, reason: reason.to_string() }
}

/// Reads all of `reader` into `out` (appending), failing once more than `limit_bytes` would
/// have been produced. Reads at most `limit_bytes + 1` bytes. On failure `out` is as before.
fn read_bounded(
    codec: &'static str,
    reader: impl Read,
    limit_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    let mut bounded = reader.take(limit_bytes as u64 + 1);
    if let Err(e) = bounded.read_to_end(out) {
        out.truncate(start);
        return Err(corrupt(codec, e));
    }
    if out.len() - start > limit_bytes {
        out.truncate(start);
        return Err(CodecError::TooLarge { limit_bytes });
    }
    Ok(())
}

/// Decompresses `input` (a batch's records region) with `codec`, appending to `out`; fails
/// with [`CodecError::TooLarge`] rather than produce more than `limit_bytes`.
pub fn decompress(codec: Compression, input: &[u8], limit_bytes: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    match codec {
        Compression::Gzip => read_bounded("gzip", flate2::read::MultiGzDecoder::new(input), limit_bytes, out),
        Compression::Snappy => decompress_snappy(input, limit_bytes, out),
        Compression::Lz4 => read_bounded("lz4", lz4_flex::frame::FrameDecoder::new(input), limit_bytes, out),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt("zstd", e))?;
            read_bounded("zstd", decoder, limit_bytes, out)
        }
        Compression::None => Err(CodecError::NotACodec(0)),
        Compression::Unknown(id) => Err(CodecError::NotACodec(id)),
    }
}

/// Snappy as Kafka clients write it: xerial framing (`\x82SNAPPY\0`, version, compat, then
/// big-endian length-prefixed raw blocks) or one raw snappy block (librdkafka).
fn decompress_snappy(input: &[u8], limit_bytes: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let result = if input.len() >= XERIAL_HEADER_LEN && input.starts_with(XERIAL_MAGIC) {
        let mut pos = XERIAL_HEADER_LEN;
        let mut result = Ok(());
        while pos < input.len() {
            let Some(len_bytes) = input.get(pos..pos + 4) else {
                result = Err(corrupt("snappy", "xerial block length truncated"));
                break;
            };
            let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            pos += 4;
            let Some(block) = input.get(pos..pos.saturating_add(len)) else {
                result = Err(corrupt("snappy", "xerial block overruns the payload"));
                break;
            };
            pos += len;
            if let Err(e) = decompress_snappy_block(block, limit_bytes - (out.len() - start), out) {
                result = Err(match e {
                    CodecError::TooLarge { .. } => CodecError::TooLarge { limit_bytes },
                    other => other,
                });
                break;
            }
        }
        result
    } else {
        decompress_snappy_block(input, limit_bytes, out)
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decompress_snappy_block(block: &[u8], limit_bytes: usize, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
    if len > limit_bytes {
        return Err(CodecError::TooLarge { limit_bytes });
    }
    let at = out.len();
    out.resize(at + len, 0);
    match snap::raw::Decoder::new().decompress(block, &mut out[at..]) {
        Ok(n) if n == len => Ok(()),
        Ok(n) => {
            out.truncate(at);
            Err(corrupt("snappy", format!("block decompressed to {n} bytes, header said {len}")))
        }
        Err(e) => {
            out.truncate(at);
            Err(corrupt("snappy", e))
        }
    }
}

/// Compresses `input` with `codec` the way Kafka's broker writes it (gzip level 6, xerial
/// snappy with 32 KiB blocks, LZ4 frames of independent 64 KiB blocks, zstd level 3),
/// appending to `out`.
pub fn compress(codec: Compression, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    match codec {
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            encoder.write_all(input).map_err(|e| corrupt("gzip", e))?;
            encoder.finish().map_err(|e| corrupt("gzip", e))?;
            Ok(())
        }
        Compression::Snappy => {
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
            let mut encoder = snap::raw::Encoder::new();
            for block in input.chunks(XERIAL_BLOCK_BYTES) {
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                let at = out.len();
                out.resize(at + snap::raw::max_compress_len(block.len()), 0);
                let n = encoder.compress(block, &mut out[at..]).map_err(|e| corrupt("snappy", e))?;
                out.truncate(at + n);
                out[len_at..at].copy_from_slice(&(n as u32).to_be_bytes());
            }
            Ok(())
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder.write_all(input).map_err(|e| corrupt("lz4", e))?;
            encoder.finish().map_err(|e| corrupt("lz4", e))?;
            Ok(())
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(|e| corrupt("zstd", e))?;
            encoder.write_all(input).map_err(|e| corrupt("zstd", e))?;
            encoder.finish().map_err(|e| corrupt("zstd", e))?;
            Ok(())
        }
        Compression::None => Err(CodecError::NotACodec(0)),
        Compression::Unknown(id) => Err(CodecError::NotACodec(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 4] = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    fn payload(len: usize) -> Vec<u8> {
        // Half random-ish, half repetitive: compresses, but not to nothing.
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 2 == 0 {
                    x as u8
                } else {
                    b'k'
                }
            })
            .collect()
    }

    #[test]
    fn every_codec_round_trips_including_empty_and_multi_block_inputs() {
        for codec in CODECS {
            for len in [0usize, 1, 1000, 70_000, 300_000] {
                let input = payload(len);
                let mut compressed = Vec::new();
                compress(codec, &input, &mut compressed).unwrap();
                let mut out = b"prefix".to_vec();
                decompress(codec, &compressed, len, &mut out).unwrap();
                assert_eq!(&out[6..], &input[..], "{codec:?} {len}");
            }
        }
    }

    #[test]
    fn output_limit_is_enforced_exactly() {
        for codec in CODECS {
            let input = vec![7u8; 100_000];
            let mut compressed = Vec::new();
            compress(codec, &input, &mut compressed).unwrap();
            let mut out = Vec::new();
            assert!(decompress(codec, &compressed, 100_000, &mut out).is_ok(), "{codec:?}");
            let mut out = Vec::new();
            assert_eq!(
                decompress(codec, &compressed, 99_999, &mut out),
                Err(CodecError::TooLarge { limit_bytes: 99_999 }),
                "{codec:?}"
            );
            assert!(out.is_empty(), "{codec:?}: nothing left behind on failure");
        }
    }

    #[test]
    fn garbage_and_truncated_streams_are_corrupt_not_panics() {
        for codec in CODECS {
            let mut compressed = Vec::new();
            compress(codec, &payload(5000), &mut compressed).unwrap();
            // (lz4_flex accepts a frame whose 4-byte end mark is cut short: the data is whole.)
            for cut in [0, 1, 5, compressed.len() / 2, compressed.len() - 5] {
                let mut out = Vec::new();
                let r = decompress(codec, &compressed[..cut], 1 << 20, &mut out);
                if cut == 0 {
                    // An empty payload is zero LZ4 frames (nothing) for lz4_flex, an error for
                    // the others; either way the record walk after it rejects a batch that
                    // announced records.
                    assert!(out.is_empty(), "{codec:?}");
                    continue;
                }
                assert!(matches!(r, Err(CodecError::Corrupt { .. })), "{codec:?} cut {cut}: {r:?}");
            }
            let mut out = Vec::new();
            assert!(decompress(codec, b"definitely not compressed data", 1 << 20, &mut out).is_err());
        }
    }

    #[test]
    fn a_stream_that_fails_after_producing_output_leaves_nothing_behind() {
        // Found by the compressed_batch fuzz target: a gzip member that decodes a few bytes,
        // then fails.
        let input = [
            0x1f, 0x8b, 0x08, 0x00, 0xf6, 0x84, 0x02, 0x6b, 0x02, 0xff, 0xe3, 0x7f, 0x00, 0x63, 0x60, 0x60, 0x60, 0x64,
            0x2a, 0x63, 0x00, 0x00, 0x20, 0xa0, 0xf5, 0xb2, 0x08, 0x00, 0x00, 0x00,
        ];
        let mut out = b"kept".to_vec();
        assert!(matches!(decompress(Compression::Gzip, &input, 1 << 20, &mut out), Err(CodecError::Corrupt { .. })));
        assert_eq!(out, b"kept");
    }

    #[test]
    fn raw_snappy_blocks_from_librdkafka_decode_too() {
        let input = payload(10_000);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        let mut out = Vec::new();
        decompress(Compression::Snappy, &raw, 1 << 20, &mut out).unwrap();
        assert_eq!(out, input);
    }

    #[test]
    fn a_snappy_length_claim_beyond_the_limit_allocates_nothing() {
        // Varint preamble claiming ~4 GiB of output.
        let hostile = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut out = Vec::new();
        assert!(decompress(Compression::Snappy, &hostile, 1 << 20, &mut out).is_err());
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn none_and_unknown_are_not_codecs() {
        let mut out = Vec::new();
        assert_eq!(decompress(Compression::None, b"", 1, &mut out), Err(CodecError::NotACodec(0)));
        assert_eq!(compress(Compression::Unknown(6), b"", &mut out), Err(CodecError::NotACodec(6)));
    }
}
