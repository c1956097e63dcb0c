//! Encoding records and whole v2 record batches: varints, the record layout, headers with a
//! CRC. Used by the incremental builder of `sluice bench`'s producers
//! ([`crate::batch_builder`]) and, through the `build_batch*` functions, by tests and
//! benchmarks in every crate. Not used on the broker's data path (the broker stores the bytes
//! clients send).
//!
//! Owns: the producing side of the layout [`crate::batch`] reads. Must never: produce a batch
//! that fails [`crate::batch::validate_from_client`] for a non-empty record set.

use zerocopy::FromBytes;

use crate::batch::*;

/// A record header for [`build_batch`]: key, nullable value.
pub type HeaderSpec<'a> = (&'a [u8], Option<&'a [u8]>);
/// A record for [`build_batch`]: nullable key, nullable value, headers.
pub type RecordSpec<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, &'a [HeaderSpec<'a>]);

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unsigned_varint_len(mut raw: u64) -> usize {
    let mut len = 1;
    while raw >= 0x80 {
        raw >>= 7;
        len += 1;
    }
    len
}

fn put_unsigned_varint(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_varint_len(u64::from(zigzag32(v)))
}

pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_unsigned_varint(out, u64::from(zigzag32(v)));
}

pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_unsigned_varint(out, zigzag64(v));
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).expect("builder: field longer than i32::MAX")
}

fn nullable_len(field: Option<&[u8]>) -> usize {
    match field {
        None => varint_len(-1),
        Some(bytes) => varint_len(len_i32(bytes.len())) + bytes.len(),
    }
}

pub(crate) fn put_nullable(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, len_i32(bytes.len()));
            out.extend_from_slice(bytes);
        }
    }
}

/// Size of a record body (after its length varint) with timestamp delta 0.
fn record_body_len(offset_delta: i32, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[HeaderSpec<'_>]) -> usize {
    record_body_len_at(0, offset_delta, key, value, headers)
}

pub(crate) fn record_body_len_at(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[HeaderSpec<'_>],
) -> usize {
    let mut len = 1
        + unsigned_varint_len(zigzag64(timestamp_delta))
        + varint_len(offset_delta)
        + nullable_len(key)
        + nullable_len(value);
    len += varint_len(len_i32(headers.len()));
    for (header_key, header_value) in headers {
        len += nullable_len(Some(header_key)) + nullable_len(*header_value);
    }
    len
}

fn put_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[HeaderSpec<'_>],
) {
    put_record_at(out, 0, offset_delta, key, value, headers);
}

pub(crate) fn put_record_at(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[HeaderSpec<'_>],
) {
    put_varint(out, len_i32(record_body_len_at(timestamp_delta, offset_delta, key, value, headers)));
    out.push(0); // attributes
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, key);
    put_nullable(out, value);
    put_varint(out, len_i32(headers.len()));
    for (header_key, header_value) in headers {
        put_nullable(out, Some(header_key));
        put_nullable(out, *header_value);
    }
}

/// Fills in the header of a batch whose records follow byte 61 of `out`, and its CRC.
pub(crate) fn finish_batch(out: &mut [u8], base_offset: i64, count: usize, base_timestamp_ms: i64) {
    let count = len_i32(count);
    let batch_length = len_i32(out.len() - LOG_OVERHEAD);
    let (header, _) = BatchHeader::mut_from_prefix(out).expect("builder: buffer shorter than a header");
    header.base_offset.set(base_offset);
    header.batch_length.set(batch_length);
    header.partition_leader_epoch.set(-1);
    header.magic = MAGIC_V2;
    header.attributes.set(0);
    header.last_offset_delta.set((count - 1).max(0));
    header.base_timestamp.set(base_timestamp_ms);
    header.max_timestamp.set(base_timestamp_ms);
    header.producer_id.set(-1);
    header.producer_epoch.set(-1);
    header.base_sequence.set(-1);
    header.records_count.set(count);
    let crc = compute_crc(out);
    out[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
}

/// Stamps an idempotent producer's identity on a batch: `producerId`, `producerEpoch` and
/// `baseSequence`, then recomputes the CRC. For tests, benchmarks and load generators.
///
/// # Panics
/// If `batch` is shorter than its header says.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    let (header, _) = BatchHeader::mut_from_prefix(batch).expect("set_producer: buffer shorter than a batch header");
    header.producer_id.set(producer_id);
    header.producer_epoch.set(producer_epoch);
    header.base_sequence.set(base_sequence);
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
}

/// [`set_producer`] for a transactional producer: also sets the `isTransactional` attribute.
///
/// # Panics
/// If `batch` is shorter than its header says.
pub fn set_transactional_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    {
        let (header, _) = BatchHeader::mut_from_prefix(batch)
            .expect("set_transactional_producer: buffer shorter than a batch header");
        header.attributes.set(header.attributes.get() | crate::batch::TRANSACTIONAL_MASK);
    }
    set_producer(batch, producer_id, producer_epoch, base_sequence);
}

/// Rewrites a batch's header after its records region changed size or codec: sets the
/// compression bits of `attributes` to `codec`, `batchLength` to `batch.len() - 12`, and the
/// CRC. The caller has already put the new records region after the 61-byte header.
///
/// # Panics
/// If `batch` is shorter than a header.
pub fn reframe(batch: &mut [u8], codec: Compression) {
    let total = batch.len();
    let (header, _) = BatchHeader::mut_from_prefix(batch).expect("reframe: buffer shorter than a batch header");
    header.attributes.set((header.attributes.get() & !COMPRESSION_MASK) | i16::from(codec.id()));
    header.batch_length.set(len_i32(total - LOG_OVERHEAD));
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
}

/// Like [`build_batch_of_size`] but record `i` has timestamp `base_timestamp_ms +
/// timestamp_deltas_ms[i]` (maxTimestamp is the largest). For tests of timestamp lookups.
pub fn build_batch_with_timestamps(
    base_offset: i64,
    value: &[u8],
    base_timestamp_ms: i64,
    timestamp_deltas_ms: &[i64],
) -> Vec<u8> {
    let mut out = vec![0u8; BATCH_HEADER_LEN];
    for (i, delta) in timestamp_deltas_ms.iter().enumerate() {
        put_record_at(&mut out, *delta, len_i32(i), None, Some(value), &[]);
    }
    let max_delta = timestamp_deltas_ms.iter().copied().max().unwrap_or(0);
    finish_batch(&mut out, base_offset, timestamp_deltas_ms.len(), base_timestamp_ms);
    if max_delta != 0 {
        let (header, _) = BatchHeader::mut_from_prefix(&mut out[..]).expect("header");
        header.max_timestamp.set(base_timestamp_ms + max_delta);
        let crc = compute_crc(&out);
        out[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// Builds a valid uncompressed v2 batch, as a non-idempotent Java producer would send it:
/// producer id/epoch/sequence -1, partition leader epoch -1, CreateTime, every record's
/// timestamp delta 0 and `maxTimestamp = baseTimestamp = base_timestamp_ms`, offset deltas
/// 0, 1, 2, ...
///
/// With no records the batch has `recordsCount = 0` and `lastOffsetDelta = 0`: it passes
/// [`validate_stored`] (like a batch emptied by compaction) but not
/// [`validate_from_client`].
///
/// For tests and benchmarks. Panics if a length does not fit in an `i32`.
pub fn build_batch(base_offset: i64, records: &[RecordSpec<'_>], base_timestamp_ms: i64) -> Vec<u8> {
    let records_len: usize = records
        .iter()
        .enumerate()
        .map(|(i, (key, value, headers))| {
            let body = record_body_len(len_i32(i), *key, *value, headers);
            varint_len(len_i32(body)) + body
        })
        .sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records_len);
    out.resize(BATCH_HEADER_LEN, 0);
    for (i, (key, value, headers)) in records.iter().enumerate() {
        put_record(&mut out, len_i32(i), *key, *value, headers);
    }
    debug_assert_eq!(out.len(), BATCH_HEADER_LEN + records_len);
    finish_batch(&mut out, base_offset, records.len(), base_timestamp_ms);
    out
}

/// Builds a valid uncompressed batch of `record_count` records with null keys, no headers
/// and `value_len`-byte values (a repeating byte pattern), otherwise as [`build_batch`].
/// For benchmarks and tests.
pub fn build_batch_of_size(base_offset: i64, record_count: usize, value_len: usize, base_timestamp_ms: i64) -> Vec<u8> {
    let value: Vec<u8> = (0..value_len).map(|i| (i % 251) as u8).collect();
    let records_len: usize = (0..record_count)
        .map(|i| {
            let body = record_body_len(len_i32(i), None, Some(&value), &[]);
            varint_len(len_i32(body)) + body
        })
        .sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records_len);
    out.resize(BATCH_HEADER_LEN, 0);
    for i in 0..record_count {
        put_record(&mut out, len_i32(i), None, Some(&value), &[]);
    }
    finish_batch(&mut out, base_offset, record_count, base_timestamp_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{validate_from_client, BatchHeader};

    #[test]
    fn a_transactional_producer_stamp_sets_the_attribute_and_keeps_the_batch_valid() {
        let mut batch = build_batch(0, &[(None, Some(&b"v"[..]), &[][..])], 1_000);
        set_transactional_producer(&mut batch, 42, 3, 7);
        validate_from_client(&batch).expect("the CRC covers the new attributes and producer fields");
        let header = BatchHeader::parse(&batch).expect("header");
        assert!(header.is_transactional());
        assert_eq!((header.producer_id(), header.producer_epoch(), header.base_sequence()), (42, 3, 7));
    }
}
