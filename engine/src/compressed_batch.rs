//! Compressed record batches: validating their records after decompression, and rewriting a
//! batch in a topic's `compression.type` (Kafka's broker-side recompression).
//!
//! Owns: the rules for when the broker keeps a producer's batch byte for byte and when it
//! rewrites it, and the scratch-buffer discipline for decompression (one reusable buffer,
//! output capped at [`MAX_DECOMPRESSED_RECORDS_BYTES`]). Must never: do I/O, trust a record
//! count or length from the wire to size an allocation, or keep a scratch buffer that grew
//! past [`SCRATCH_KEEP_BYTES`].

use crate::batch::{
    read_varint, read_varlong, reframe, walk_records, BatchError, BatchHeader, BatchInfo, Compression, TimestampType,
    BATCH_HEADER_LEN,
};
use crate::compression::{compress, decompress};
use crate::log_config::BrokerCompressionType;

/// Largest records region a compressed batch may decompress to. Kafka clients cap
/// uncompressed batches near 1 MiB (`batch.size`, librdkafka's `batch.size`), so 64 MiB leaves
/// room for any sane producer while a decompression bomb stops early.
pub const MAX_DECOMPRESSED_RECORDS_BYTES: usize = 64 << 20;
/// A scratch buffer that grew beyond this is released after use rather than kept.
pub const SCRATCH_KEEP_BYTES: usize = 8 << 20;

/// Decompresses the records region of a compressed batch into `scratch` (cleared first).
fn decompress_records(batch: &[u8], info: &BatchInfo, scratch: &mut Vec<u8>) -> Result<(), BatchError> {
    scratch.clear();
    let records = &batch[BATCH_HEADER_LEN..info.total_len];
    decompress(info.compression(), records, MAX_DECOMPRESSED_RECORDS_BYTES, scratch).map_err(BatchError::Compressed)
}

/// Drops a scratch buffer's memory if it grew past [`SCRATCH_KEEP_BYTES`].
pub fn trim_scratch(scratch: &mut Vec<u8>) {
    scratch.clear();
    if scratch.capacity() > SCRATCH_KEEP_BYTES {
        *scratch = Vec::new();
    }
}

/// Checks the records of a batch that [`crate::batch::validate_from_client`] accepted and
/// whose codec is not none: the payload decompresses within the limit, and the records parse
/// exactly like an uncompressed batch's (lengths, fields, `offsetDelta` = index,
/// `recordsCount` records and nothing after) — what Kafka's `LogValidator` does for compressed
/// batches.
pub fn validate_compressed_records(batch: &[u8], info: &BatchInfo, scratch: &mut Vec<u8>) -> Result<(), BatchError> {
    debug_assert_ne!(info.compression(), Compression::None);
    validate_and_rewrite(batch, info, None, scratch).map(|_| ())
}

/// The append path's one pass over a client batch: validates its records if it is compressed
/// (see [`validate_compressed_records`]) and, with a `target` codec, returns it rewritten in
/// that codec (see [`recompress`]) — decompressing at most once.
pub fn validate_and_rewrite(
    batch: &[u8],
    info: &BatchInfo,
    target: Option<Compression>,
    scratch: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, BatchError> {
    let result = (|| {
        let records = plain_records(batch, info, scratch)?;
        if info.compression() != Compression::None {
            walk_records(records, info.records_count)?;
        }
        target.map(|codec| rebuild(&batch[..BATCH_HEADER_LEN], records, codec)).transpose()
    })();
    trim_scratch(scratch);
    result
}

/// The uncompressed records region of a batch: borrowed from it, or decompressed into
/// `scratch`.
fn plain_records<'a>(batch: &'a [u8], info: &BatchInfo, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], BatchError> {
    if info.compression() == Compression::None {
        return Ok(&batch[BATCH_HEADER_LEN..info.total_len]);
    }
    decompress_records(batch, info, scratch)?;
    Ok(scratch)
}

/// A batch with `header`'s fields and `records` compressed by `codec` (or stored plain for
/// [`Compression::None`]), with its attributes, length and CRC set.
fn rebuild(header: &[u8], records: &[u8], codec: Compression) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len() / 2);
    out.extend_from_slice(header);
    if codec == Compression::None {
        out.extend_from_slice(records);
    } else {
        compress(codec, records, &mut out).map_err(BatchError::Compressed)?;
    }
    reframe(&mut out, codec);
    Ok(out)
}

/// The codec a batch is stored with under the topic's `compression.type`, or `None` when the
/// batch is kept exactly as the producer sent it (`producer`, or the codecs already match).
pub fn target_codec(topic: BrokerCompressionType, batch: Compression) -> Option<Compression> {
    let target = match topic {
        BrokerCompressionType::Producer => return None,
        BrokerCompressionType::Uncompressed => Compression::None,
        BrokerCompressionType::Gzip => Compression::Gzip,
        BrokerCompressionType::Snappy => Compression::Snappy,
        BrokerCompressionType::Lz4 => Compression::Lz4,
        BrokerCompressionType::Zstd => Compression::Zstd,
    };
    (target != batch).then_some(target)
}

/// Rewrites a validated batch with its records compressed by `target` (or uncompressed for
/// [`Compression::None`]): the same header fields, new attributes codec bits, length and CRC.
/// `scratch` holds the decompressed records meanwhile.
pub fn recompress(
    batch: &[u8],
    info: &BatchInfo,
    target: Compression,
    scratch: &mut Vec<u8>,
) -> Result<Vec<u8>, BatchError> {
    let result =
        plain_records(batch, info, scratch).and_then(|records| rebuild(&batch[..BATCH_HEADER_LEN], records, target));
    trim_scratch(scratch);
    result
}

/// The first record of a batch (compressed or not) whose timestamp is `>= target_ms`, as
/// (offset, timestamp): ListOffsets by time inside a batch, like Kafka, which decompresses.
/// `None` when no record qualifies or the batch is malformed.
pub fn first_record_at_or_after(batch: &[u8], target_ms: i64, scratch: &mut Vec<u8>) -> Option<(i64, i64)> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() == Compression::None || header.timestamp_type() == TimestampType::LogAppendTime {
        return crate::batch::first_record_at_or_after(batch, target_ms);
    }
    let info = crate::batch::validate_stored(batch).ok()?;
    let found =
        decompress_records(batch, &info, scratch).ok().and_then(|()| first_in_records(scratch, &info, target_ms));
    trim_scratch(scratch);
    found
}

fn first_in_records(records: &[u8], info: &BatchInfo, target_ms: i64) -> Option<(i64, i64)> {
    let mut pos = 0usize;
    for _ in 0..info.records_count.max(0) {
        let len = usize::try_from(read_varint(records, &mut pos)?).ok()?;
        let body = records.get(pos..pos.checked_add(len)?)?;
        let mut at = 1usize; // attributes byte
        let timestamp_delta = read_varlong(body, &mut at)?;
        let offset_delta = read_varint(body, &mut at)?;
        let timestamp = info.base_timestamp.checked_add(timestamp_delta)?;
        if timestamp >= target_ms {
            return Some((info.base_offset + i64::from(offset_delta), timestamp));
        }
        pos += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, build_batch_with_timestamps, validate_from_client, validate_stored};
    use crate::compression::CodecError;
    use crate::error_code::ErrorCode;

    const CODECS: [Compression; 4] = [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    fn sample() -> Vec<u8> {
        let values: Vec<Vec<u8>> = (0..50u32).map(|i| format!("value-{i}-{}", "x".repeat(i as usize)).into()).collect();
        let records: Vec<crate::batch::RecordSpec<'_>> =
            values.iter().map(|v| (Some(&b"key"[..]), Some(&v[..]), &[][..])).collect();
        build_batch(0, &records, 1_700_000_000_000)
    }

    fn compressed(codec: Compression) -> Vec<u8> {
        let plain = sample();
        let info = validate_from_client(&plain).unwrap();
        recompress(&plain, &info, codec, &mut Vec::new()).unwrap()
    }

    #[test]
    fn recompressed_batches_validate_and_round_trip_to_the_same_records() {
        let plain = sample();
        for codec in CODECS {
            let batch = compressed(codec);
            let info = validate_from_client(&batch).unwrap();
            assert_eq!(info.compression(), codec);
            assert_eq!(info.records_count, 50);
            let mut scratch = Vec::new();
            validate_compressed_records(&batch, &info, &mut scratch).unwrap();
            let back = recompress(&batch, &info, Compression::None, &mut scratch).unwrap();
            assert_eq!(back, plain, "{codec:?}: decompressing restores the exact original batch");
        }
    }

    #[test]
    fn corrupt_payload_with_a_valid_crc_is_corrupt_message_and_bad_records_are_invalid_record() {
        for codec in CODECS {
            let mut batch = compressed(codec);
            let len = batch.len();
            // Garble the compressed payload, then fix the CRC so only decompression notices.
            for b in &mut batch[BATCH_HEADER_LEN + 4..len - 2] {
                *b ^= 0x5a;
            }
            reframe(&mut batch, codec);
            let info = validate_from_client(&batch).unwrap();
            let err = validate_compressed_records(&batch, &info, &mut Vec::new()).unwrap_err();
            assert!(
                err.error_code() == ErrorCode::CORRUPT_MESSAGE || err.error_code() == ErrorCode::INVALID_RECORD,
                "{codec:?}: {err}"
            );
        }
        // Records that decompress fine but do not parse: wrong count.
        let plain = sample();
        let mut body = plain[BATCH_HEADER_LEN..].to_vec();
        body.extend_from_slice(&[0x02, 0x00]); // a stray partial record
        let mut batch = plain[..BATCH_HEADER_LEN].to_vec();
        crate::compression::compress(Compression::Zstd, &body, &mut batch).unwrap();
        reframe(&mut batch, Compression::Zstd);
        let info = validate_from_client(&batch).unwrap();
        let err = validate_compressed_records(&batch, &info, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, BatchError::InvalidRecord(_)), "{err}");
        assert_eq!(err.error_code(), ErrorCode::INVALID_RECORD);
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; MAX_DECOMPRESSED_RECORDS_BYTES + 1];
        let mut batch = sample()[..BATCH_HEADER_LEN].to_vec();
        crate::compression::compress(Compression::Zstd, &zeros, &mut batch).unwrap();
        reframe(&mut batch, Compression::Zstd);
        assert!(batch.len() < 1 << 20);
        let info = validate_stored(&batch).unwrap();
        let mut scratch = Vec::new();
        let err = validate_compressed_records(&batch, &info, &mut scratch).unwrap_err();
        assert_eq!(err, BatchError::Compressed(CodecError::TooLarge { limit_bytes: MAX_DECOMPRESSED_RECORDS_BYTES }));
        assert_eq!(err.error_code(), ErrorCode::INVALID_RECORD);
        assert!(scratch.capacity() <= SCRATCH_KEEP_BYTES, "scratch released");
    }

    #[test]
    fn target_codec_follows_kafkas_compression_type() {
        use BrokerCompressionType as T;
        assert_eq!(target_codec(T::Producer, Compression::Gzip), None);
        assert_eq!(target_codec(T::Zstd, Compression::Zstd), None);
        assert_eq!(target_codec(T::Zstd, Compression::None), Some(Compression::Zstd));
        assert_eq!(target_codec(T::Uncompressed, Compression::Lz4), Some(Compression::None));
        assert_eq!(target_codec(T::Uncompressed, Compression::None), None);
    }

    #[test]
    fn timestamp_lookup_sees_inside_compressed_batches() {
        let plain = build_batch_with_timestamps(100, b"v", 5_000, &[0, 1_000, 2_000, 300_000]);
        let info = validate_from_client(&plain).unwrap();
        let mut scratch = Vec::new();
        for codec in CODECS {
            let batch = recompress(&plain, &info, codec, &mut scratch).unwrap();
            assert_eq!(first_record_at_or_after(&batch, 5_001, &mut scratch), Some((101, 6_000)), "{codec:?}");
            assert_eq!(first_record_at_or_after(&batch, 7_001, &mut scratch), Some((103, 305_000)));
            assert_eq!(first_record_at_or_after(&batch, 305_001, &mut scratch), None);
        }
        assert_eq!(first_record_at_or_after(&plain, 6_500, &mut scratch), Some((102, 7_000)));
    }
}
