//! Producer-side compression of a batch's records section and consumer-side decompression, in
//! Kafka's formats: gzip; snappy raw blocks (what librdkafka sends; the xerial framing the Java
//! client writes is also read); lz4 *frame* format (KIP-57: independent 64 KiB blocks, as
//! Kafka's `KafkaLZ4BlockOutputStream` writes them); zstd (level 3, Kafka's default).
//!
//! Owns: codec choice and parameters on the producer side (a reusable zstd context, raw snappy
//! blocks like librdkafka). Decompression is the engine's bounded decoder. Must never:
//! decompress without a bound on the output (a hostile or corrupt batch could expand without
//! limit).

use std::io::Write;

use sluice_engine::batch::Compression;

use crate::bench::workload::CompressionCodec;

pub fn engine_codec(codec: CompressionCodec) -> Compression {
    match codec {
        CompressionCodec::None => Compression::None,
        CompressionCodec::Gzip => Compression::Gzip,
        CompressionCodec::Snappy => Compression::Snappy,
        CompressionCodec::Lz4 => Compression::Lz4,
        CompressionCodec::Zstd => Compression::Zstd,
    }
}

/// A producer's compressor; keeps codec state (zstd context, snappy encoder) across batches.
pub struct Compressor {
    codec: CompressionCodec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    snappy: snap::raw::Encoder,
}

impl Compressor {
    pub fn new(codec: CompressionCodec) -> Compressor {
        let zstd = (codec == CompressionCodec::Zstd).then(|| zstd::bulk::Compressor::new(3).expect("zstd context"));
        Compressor { codec, zstd, snappy: snap::raw::Encoder::new() }
    }

    pub fn codec(&self) -> CompressionCodec {
        self.codec
    }

    /// Compresses `input`; `None` codec returns it unchanged.
    pub fn compress(&mut self, input: &[u8]) -> Vec<u8> {
        match self.codec {
            CompressionCodec::None => input.to_vec(),
            CompressionCodec::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(input.len() / 2 + 64),
                    flate2::Compression::default(),
                );
                enc.write_all(input).expect("gzip to memory");
                enc.finish().expect("gzip to memory")
            }
            CompressionCodec::Snappy => self.snappy.compress_vec(input).expect("snappy input within 4 GiB"),
            CompressionCodec::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc =
                    lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(input.len() / 2 + 64));
                enc.write_all(input).expect("lz4 to memory");
                enc.finish().expect("lz4 to memory")
            }
            CompressionCodec::Zstd => self.zstd.as_mut().expect("zstd context").compress(input).expect("zstd"),
        }
    }
}

/// Decompresses a records section into `out` (cleared first), refusing more than
/// `max_output_bytes`: the engine's bounded decoder (the one the broker validates with), so
/// the bench reads exactly what the broker accepts.
pub fn decompress(codec: Compression, input: &[u8], out: &mut Vec<u8>, max_output_bytes: usize) -> Result<(), String> {
    out.clear();
    if codec == Compression::None {
        out.extend_from_slice(input);
        return Ok(());
    }
    sluice_engine::compression::decompress(codec, input, max_output_bytes, out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 1000).to_be_bytes()).collect();
        for codec in [
            CompressionCodec::None,
            CompressionCodec::Gzip,
            CompressionCodec::Snappy,
            CompressionCodec::Lz4,
            CompressionCodec::Zstd,
        ] {
            let mut c = Compressor::new(codec);
            let compressed = c.compress(&input);
            if codec != CompressionCodec::None {
                assert!(compressed.len() < input.len() / 2, "{codec:?} compresses");
            }
            let mut out = Vec::new();
            decompress(engine_codec(codec), &compressed, &mut out, 1 << 20).unwrap();
            assert_eq!(out, input, "{codec:?}");
            assert!(
                decompress(engine_codec(codec), &compressed, &mut out, 1000).is_err()
                    || codec == CompressionCodec::None
            );
        }
    }

    #[test]
    fn lz4_frames_use_independent_64k_blocks() {
        let out = Compressor::new(CompressionCodec::Lz4).compress(b"hello hello hello");
        assert_eq!(&out[..4], &[0x04, 0x22, 0x4D, 0x18], "lz4 frame magic");
        let flg = out[4];
        assert_eq!(flg >> 6, 1, "version 1");
        assert_ne!(flg & 0x20, 0, "block independence");
        assert_eq!((out[5] >> 4) & 0x07, 4, "64 KiB max block size");
    }

    /// The xerial snappy stream header (magic, version 1, compatible version 1).
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

    #[test]
    fn xerial_framed_snappy_is_read() {
        let block = snap::raw::Encoder::new().compress_vec(b"abcabcabc").unwrap();
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&1u32.to_be_bytes());
        framed.extend_from_slice(&1u32.to_be_bytes());
        framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
        framed.extend_from_slice(&block);
        let mut out = Vec::new();
        decompress(Compression::Snappy, &framed, &mut out, 100).unwrap();
        assert_eq!(out, b"abcabcabc");
    }
}
