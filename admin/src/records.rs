//! Record batches for the console producer and consumer, through the `kafka-protocol` crate's
//! record codec (v2 batches, every compression codec): a produce batch from (key, value,
//! headers, timestamp), and a fetched record set walked batch by batch.
//!
//! Owns: splitting a fetched record set at batch boundaries (a fetch may end in a partial
//! batch, which is normal) and the next fetch offset past each batch (past records compaction
//! removed too). Must never: return control records (transaction markers) as data, or trust a
//! batch length without a bounds check.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_engine::batch::{BatchHeader, LOG_OVERHEAD, MIN_BATCH_LENGTH};

/// One record as the console tools see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes `records` as one v2 batch (offsets 0.., no producer id: not idempotent).
pub fn encode_batch(records: &[ConsoleRecord], compression: Compression) -> Result<Bytes, String> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The codec keeps records in one batch only while offset − sequence stays the same,
            // and writes the first record's sequence as the batch's base sequence: -1, none
            // (not idempotent). Per-record sequences are not on the wire.
            sequence: i as i32 - 1,
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression })
        .map_err(|e| format!("encode record batch: {e}"))?;
    Ok(buf.freeze())
}

/// The records of a fetched record set at or after `from_offset`, and the offset to fetch next
/// (past the last complete batch; `from_offset` when there is none).
pub fn decode_record_set(set: &Bytes, from_offset: i64) -> Result<(Vec<ConsoleRecord>, i64), String> {
    let mut out = Vec::new();
    let mut next = from_offset;
    let mut pos = 0;
    while set.len() - pos >= LOG_OVERHEAD {
        let batch_length = i32::from_be_bytes(set[pos + 8..pos + 12].try_into().expect("4 bytes"));
        if batch_length < MIN_BATCH_LENGTH {
            return Err(format!("record batch length {batch_length} is shorter than a v2 batch header"));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if set.len() - pos < total {
            break; // a partial batch ends the fetch
        }
        let batch = set.slice(pos..pos + total);
        pos += total;
        let header = BatchHeader::parse(&batch).map_err(|e| format!("record batch header: {e}"))?;
        next = next.max(header.next_offset());
        if header.is_control() || header.last_offset() < from_offset {
            continue;
        }
        let decoded = RecordBatchDecoder::decode(&mut batch.clone()).map_err(|e| format!("record batch: {e}"))?;
        for r in decoded.records {
            if r.control || r.offset < from_offset {
                continue;
            }
            out.push(ConsoleRecord {
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            });
        }
    }
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &str) -> ConsoleRecord {
        ConsoleRecord {
            offset: 0,
            timestamp_ms: 1_700_000_000_000,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
        }
    }

    /// A batch as a broker would return it: base offset set.
    fn at(base: i64, batch: Bytes) -> Vec<u8> {
        let mut b = batch.to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        // the CRC covers attributes onwards, not the base offset: still valid
        b
    }

    #[test]
    fn round_trips_keys_values_headers_and_skips_what_was_already_read() {
        for compression in [Compression::None, Compression::Zstd, Compression::Lz4] {
            let mut set = at(10, encode_batch(&[record("a", "1"), record("b", "2")], compression).unwrap());
            set.extend(at(12, encode_batch(&[record("c", "3")], compression).unwrap()));
            let partial = at(13, encode_batch(&[record("d", "4")], compression).unwrap());
            set.extend_from_slice(&partial[..partial.len() - 5]);
            let header = BatchHeader::parse(&set).unwrap();
            assert_eq!((header.base_sequence(), header.producer_id(), header.records_count()), (-1, -1, 2));
            let (records, next) = decode_record_set(&Bytes::from(set), 11).unwrap();
            assert_eq!(next, 13, "{compression:?}");
            assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![11, 12]);
            assert_eq!(records[0].key.as_deref(), Some(&b"b"[..]));
            assert_eq!(records[1].value.as_deref(), Some(&b"3"[..]));
            assert_eq!(records[1].headers, vec![("h".to_string(), Some(Bytes::from_static(b"1")))]);
            assert_eq!(records[1].timestamp_ms, 1_700_000_000_000);
        }
    }

    #[test]
    fn an_empty_or_short_set_reads_nothing_and_a_bad_length_is_an_error() {
        assert_eq!(decode_record_set(&Bytes::new(), 5).unwrap(), (vec![], 5));
        let mut set = encode_batch(&[record("a", "1")], Compression::None).unwrap().to_vec();
        set[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(decode_record_set(&Bytes::from(set), 0).is_err());
    }
}
