//! Transaction markers: Kafka's `EndTransactionMarker` control batches, which close a
//! producer's transaction in a partition (commit or abort). A marker is a one-record batch with
//! the transactional and control attribute bits, the producer's id and epoch, base sequence -1;
//! its record's key is (version 0, type: 0 abort / 1 commit) and its value (version 0,
//! coordinator epoch), all big-endian `int16`/`int32` — Kafka's `ControlRecordType` and
//! `EndTransactionMarker`.
//!
//! Owns: encoding a marker batch and reading one back (log replay). Must never: do I/O, or
//! accept a batch that is not a control batch as a marker.

use crate::batch::{
    compute_crc, read_varint, read_varlong, BatchHeader, BatchInfo, ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, CONTROL_MASK,
    CRC_OFFSET, TRANSACTIONAL_MASK,
};
use crate::record_encoding::build_batch;

/// `ControlRecordType.ABORT`.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// `ControlRecordType.COMMIT`.
pub const CONTROL_TYPE_COMMIT: i16 = 1;
/// Version of the control record key and of the marker value Kafka writes.
const MARKER_VERSION: i16 = 0;
/// Key: version + type. Value: version + coordinator epoch.
const MARKER_KEY_BYTES: usize = 4;
const MARKER_VALUE_BYTES: usize = 6;

/// What a marker says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// A marker batch at `base_offset` for a producer (the partition log assigns the real offset
/// and leader epoch on append).
pub fn encode_marker_batch(
    base_offset: i64,
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let control_type = if marker.commit { CONTROL_TYPE_COMMIT } else { CONTROL_TYPE_ABORT };
    let mut key = [0u8; MARKER_KEY_BYTES];
    key[..2].copy_from_slice(&MARKER_VERSION.to_be_bytes());
    key[2..].copy_from_slice(&control_type.to_be_bytes());
    let mut value = [0u8; MARKER_VALUE_BYTES];
    value[..2].copy_from_slice(&MARKER_VERSION.to_be_bytes());
    value[2..].copy_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut batch = build_batch(base_offset, &[(Some(&key), Some(&value), &[])], timestamp_ms);
    {
        use zerocopy::FromBytes;
        let (header, _) = BatchHeader::mut_from_prefix(&mut batch[..]).expect("a built batch has a header");
        header.attributes.set(TRANSACTIONAL_MASK | CONTROL_MASK);
        header.producer_id.set(producer_id);
        header.producer_epoch.set(producer_epoch);
        header.base_sequence.set(-1);
    }
    let crc = compute_crc(&batch);
    batch[CRC_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The marker of a stored control batch (`batch`: its whole bytes, `info`: its header), or
/// `None` if it is not an end-transaction marker (another control type, or damaged).
pub fn decode_marker(info: &BatchInfo, batch: &[u8]) -> Option<EndTxnMarker> {
    if !info.is_control() || info.records_count < 1 || info.compression() != crate::batch::Compression::None {
        return None;
    }
    let records = batch.get(BATCH_HEADER_LEN..)?;
    let mut pos = 0usize;
    let _length = read_varint(records, &mut pos)?;
    pos += 1; // record attributes
    read_varlong(records, &mut pos)?; // timestamp delta
    read_varint(records, &mut pos)?; // offset delta
    let key_len = usize::try_from(read_varint(records, &mut pos)?).ok()?;
    let key = records.get(pos..pos.checked_add(key_len)?)?;
    pos += key_len;
    if key_len < MARKER_KEY_BYTES || i16::from_be_bytes([key[0], key[1]]) < 0 {
        return None;
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_ABORT => false,
        CONTROL_TYPE_COMMIT => true,
        _ => return None,
    };
    let value_len = usize::try_from(read_varint(records, &mut pos)?).ok()?;
    let value = records.get(pos..pos.checked_add(value_len)?)?;
    if value_len < MARKER_VALUE_BYTES {
        return None;
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Some(EndTxnMarker { commit, coordinator_epoch })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::validate_stored;

    #[test]
    fn a_marker_is_a_valid_transactional_control_batch_and_reads_back() {
        for commit in [false, true] {
            let marker = EndTxnMarker { commit, coordinator_epoch: 7 };
            let batch = encode_marker_batch(42, 1000, 3, marker, 1_700_000_000_000);
            let info = validate_stored(&batch).expect("valid stored batch");
            assert!(info.is_control() && info.is_transactional());
            assert_eq!((info.base_offset, info.records_count, info.last_offset_delta), (42, 1, 0));
            assert_eq!((info.producer_id, info.producer_epoch, info.base_sequence), (1000, 3, -1));
            assert_eq!(decode_marker(&info, &batch), Some(marker));
            // Kafka's layout of the key: version 0, then the type.
            let type_code = if commit { CONTROL_TYPE_COMMIT } else { CONTROL_TYPE_ABORT };
            let key = [0, 0, 0, type_code as u8];
            assert!(batch.windows(4).any(|w| w == key));
        }
    }

    #[test]
    fn data_batches_and_damaged_markers_are_not_markers() {
        let data = build_batch(0, &[(None, Some(b"v"), &[])], 0);
        let info = validate_stored(&data).unwrap();
        assert_eq!(decode_marker(&info, &data), None);
        let batch = encode_marker_batch(0, 1, 0, EndTxnMarker { commit: true, coordinator_epoch: 0 }, 0);
        let info = validate_stored(&batch).unwrap();
        for cut in 0..batch.len() {
            let _ = decode_marker(&info, &batch[..cut]); // never panics
        }
        assert_eq!(decode_marker(&info, &batch[..BATCH_HEADER_LEN + 3]), None);
    }
}
