//! Rewriting one stored batch with only some of its records (Kafka's `MemoryRecords.filterTo`):
//! what log compaction does to every batch of the segments it cleans.
//!
//! Owns: walking a batch's records (decompressed when the batch is compressed) as
//! [`RecordView`]s, and building the retained batch: the same base offset, last offset delta
//! (so the producer's last sequence survives, as in Kafka), producer fields, attributes and
//! codec; the retained records' bytes unchanged (their offset and timestamp deltas are
//! relative to the base, which stays); `recordsCount`, `maxTimestamp` (create time) and the CRC
//! recomputed. Must never: do I/O, renumber an offset, change a batch it keeps whole, or size an
//! allocation from a count in the batch.

use zerocopy::FromBytes;

use crate::batch::BATCH_HEADER_LEN;
use crate::batch::{read_varint, read_varlong, reframe, BatchError, BatchHeader, Compression, TimestampType};
use crate::compressed_batch::MAX_DECOMPRESSED_RECORDS_BYTES;
use crate::compression::{compress, decompress};

/// One record of a batch, as the cleaner's decision needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    /// `None`: a record without a key.
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub is_tombstone: bool,
}

/// What became of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every record kept: write the original bytes.
    Unchanged,
    /// No record kept (and the caller did not ask to keep an empty batch).
    Removed,
    /// Some records kept (or none, with `keep_empty`): the rewritten batch.
    Rewritten(Vec<u8>),
}

/// Calls `visit` for every record of `batch` (a whole stored batch), in order.
/// `scratch` holds the decompressed records of a compressed batch.
pub fn for_each_record(
    batch: &[u8],
    scratch: &mut Vec<u8>,
    mut visit: impl FnMut(RecordView<'_>, &[u8]),
) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let total = header.total_len();
    if batch.len() < total {
        return Err(BatchError::InvalidRecord("batch shorter than its length"));
    }
    let records: &[u8] = match header.compression() {
        Compression::None => &batch[BATCH_HEADER_LEN..total],
        Compression::Unknown(id) => return Err(BatchError::UnknownCompression(id)),
        codec => {
            scratch.clear();
            decompress(codec, &batch[BATCH_HEADER_LEN..total], MAX_DECOMPRESSED_RECORDS_BYTES, scratch)
                .map_err(BatchError::Compressed)?;
            scratch.as_slice()
        }
    };
    let (base_offset, base_timestamp) = (header.base_offset(), header.base_timestamp());
    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let max_timestamp = header.max_timestamp();
    const BAD: BatchError = BatchError::InvalidRecord("record fields overrun the record");
    let mut pos = 0usize;
    while pos < records.len() {
        let record_start = pos;
        let len = usize::try_from(read_varint(records, &mut pos).ok_or(BAD)?).map_err(|_| BAD)?;
        let end = pos.checked_add(len).filter(|e| *e <= records.len()).ok_or(BAD)?;
        let body = &records[pos..end];
        let mut at = 1usize; // attributes
        let timestamp_delta = read_varlong(body, &mut at).ok_or(BAD)?;
        let offset_delta = read_varint(body, &mut at).ok_or(BAD)?;
        let key_len = read_varint(body, &mut at).ok_or(BAD)?;
        let key = if key_len < 0 {
            None
        } else {
            let key_end = at.checked_add(key_len as usize).filter(|e| *e <= body.len()).ok_or(BAD)?;
            let key = &body[at..key_end];
            at = key_end;
            Some(key)
        };
        let value_len = read_varint(body, &mut at).ok_or(BAD)?;
        let timestamp_ms = if log_append_time { max_timestamp } else { base_timestamp.saturating_add(timestamp_delta) };
        let view = RecordView {
            offset: base_offset + i64::from(offset_delta),
            timestamp_ms,
            key,
            is_tombstone: value_len < 0,
        };
        visit(view, &records[record_start..end]);
        pos = end;
    }
    Ok(())
}

/// Rewrites `batch` keeping the records `keep` accepts. `keep_empty`: when no record is kept,
/// still write the batch with no records (Kafka keeps a producer's last batch so its sequence
/// state survives compaction).
pub fn filter_batch(
    batch: &[u8],
    keep_empty: bool,
    scratch: &mut Vec<u8>,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Filtered, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let codec = header.compression();
    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    let mut retained: Vec<u8> = Vec::new();
    let (mut kept, mut dropped) = (0i32, 0i32);
    let mut max_timestamp = -1i64;
    for_each_record(batch, scratch, |record, bytes| {
        if keep(&record) {
            kept += 1;
            max_timestamp = max_timestamp.max(record.timestamp_ms);
            retained.extend_from_slice(bytes);
        } else {
            dropped += 1;
        }
    })?;
    if dropped == 0 {
        return Ok(Filtered::Unchanged);
    }
    if kept == 0 && !keep_empty {
        return Ok(Filtered::Removed);
    }
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + retained.len());
    out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    if codec == Compression::None || retained.is_empty() {
        out.extend_from_slice(&retained);
    } else {
        compress(codec, &retained, &mut out).map_err(BatchError::Compressed)?;
    }
    {
        let (header, _) = BatchHeader::mut_from_prefix(&mut out).expect("a whole header was copied");
        header.records_count.set(kept);
        if !log_append_time && kept > 0 {
            header.max_timestamp.set(max_timestamp);
        }
    }
    // An empty batch is written uncompressed (nothing to compress), as Kafka does.
    reframe(&mut out, if retained.is_empty() { Compression::None } else { codec });
    Ok(Filtered::Rewritten(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, validate_stored, RecordSpec};
    use crate::compressed_batch::recompress;

    fn batch_of(base_offset: i64, records: &[(Option<&str>, Option<&str>)]) -> Vec<u8> {
        let specs: Vec<RecordSpec<'_>> =
            records.iter().map(|(k, v)| (k.map(str::as_bytes), v.map(str::as_bytes), &[][..])).collect();
        build_batch(base_offset, &specs, 1_000)
    }

    fn offsets_and_keys(batch: &[u8]) -> Vec<(i64, Option<Vec<u8>>, bool)> {
        let mut out = Vec::new();
        for_each_record(batch, &mut Vec::new(), |r, _| out.push((r.offset, r.key.map(<[u8]>::to_vec), r.is_tombstone)))
            .unwrap();
        out
    }

    #[test]
    fn kept_records_keep_their_offsets_and_the_batch_its_last_offset() {
        let batch =
            batch_of(100, &[(Some("a"), Some("1")), (Some("b"), Some("2")), (Some("a"), Some("3")), (Some("c"), None)]);
        let out = match filter_batch(&batch, false, &mut Vec::new(), |r| r.offset != 100).unwrap() {
            Filtered::Rewritten(b) => b,
            other => panic!("{other:?}"),
        };
        let info = validate_stored(&out).expect("valid batch with a good CRC");
        assert_eq!((info.base_offset, info.last_offset_delta, info.records_count), (100, 3, 3));
        assert_eq!(
            offsets_and_keys(&out),
            vec![
                (101, Some(b"b".to_vec()), false),
                (102, Some(b"a".to_vec()), false),
                (103, Some(b"c".to_vec()), true)
            ]
        );
    }

    #[test]
    fn all_kept_is_unchanged_and_none_kept_is_removed_unless_asked_to_keep_it_empty() {
        let batch = batch_of(0, &[(Some("a"), Some("1")), (Some("b"), Some("2"))]);
        assert_eq!(filter_batch(&batch, false, &mut Vec::new(), |_| true).unwrap(), Filtered::Unchanged);
        assert_eq!(filter_batch(&batch, false, &mut Vec::new(), |_| false).unwrap(), Filtered::Removed);
        let Filtered::Rewritten(empty) = filter_batch(&batch, true, &mut Vec::new(), |_| false).unwrap() else {
            panic!("an empty batch was asked for")
        };
        let info = validate_stored(&empty).unwrap();
        assert_eq!((info.base_offset, info.last_offset_delta, info.records_count), (0, 1, 0));
        assert!(offsets_and_keys(&empty).is_empty());
    }

    #[test]
    fn compressed_batches_stay_compressed_with_the_same_codec() {
        let plain = batch_of(10, &[(Some("x"), Some("old")), (Some("y"), Some("v")), (Some("x"), Some("new"))]);
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut scratch = Vec::new();
            let info = validate_stored(&plain).unwrap();
            let compressed = recompress(&plain, &info, codec, &mut scratch).unwrap();
            assert_eq!(BatchHeader::parse(&compressed).unwrap().compression(), codec);
            let Filtered::Rewritten(out) = filter_batch(&compressed, false, &mut scratch, |r| r.offset != 10).unwrap()
            else {
                panic!("{codec:?}: one record dropped")
            };
            let header = BatchHeader::parse(&out).unwrap();
            assert_eq!(header.compression(), codec);
            validate_stored(&out).unwrap();
            assert_eq!(
                offsets_and_keys(&out).into_iter().map(|(o, k, _)| (o, k)).collect::<Vec<_>>(),
                vec![(11, Some(b"y".to_vec())), (12, Some(b"x".to_vec()))],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut batch = batch_of(0, &[(Some("a"), Some("1")), (Some("b"), Some("2"))]);
        let len = batch.len();
        for i in BATCH_HEADER_LEN..len {
            let mut broken = batch.clone();
            broken[i] = 0xff;
            let _ = filter_batch(&broken, false, &mut Vec::new(), |_| false);
        }
        batch.truncate(len - 3);
        assert!(filter_batch(&batch, false, &mut Vec::new(), |_| true).is_err());
    }
}
