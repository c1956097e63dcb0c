//! Shared checks for sluice's fuzz targets (see `README.md`).
//!
//! Every function here panics when sluice breaks one of its stated invariants, so libFuzzer
//! reports it as a crash; none of them may panic on input sluice is right to reject.

pub mod alloc_guard;

/// Every fuzz binary (and the seed generator) runs on the guard; see [`alloc_guard`].
#[global_allocator]
static GLOBAL: alloc_guard::Guard = alloc_guard::Guard;

use bytes::BytesMut;
use kafka_protocol::messages::RequestKind;
use sluice_engine::batch::{
    assign_offsets, assign_offsets_split, batches, compute_crc, validate_from_client, validate_stored, BatchHeader,
    BatchInfo, TimestampType, Validation, BATCH_HEADER_LEN, LOG_OVERHEAD,
};
use sluice_net::connection::{decode_request, Decoded};
use sluice_net::frame::check_size;

/// The broker's default `socket.request.max.bytes` (100 MiB, Kafka's default).
pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// The offsets/epoch/time the fuzz targets stamp onto accepted batches.
const NEW_BASE_OFFSET: i64 = 0x0123_4567_89ab;
const NEW_EPOCH: i32 = 0x0abc_def0;
const APPEND_TIME_MS: i64 = 1_700_000_000_123;

/// Drives `data` through the connection's framing and decoding as a socket would: a stream of
/// `size(i32 BE) ++ frame` units, decoded one after the other until the stream runs out or a
/// frame is refused (the connection would be closed there). Returns how many frames decoded.
pub fn drive_request_stream(mut data: &[u8]) -> usize {
    let mut decoded = 0;
    while data.len() >= 4 {
        let size = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let Ok(size) = check_size(size, MAX_REQUEST_BYTES) else {
            return decoded;
        };
        assert!(size >= 8, "check_size accepted {size}, below a request header");
        let rest = &data[4..];
        if rest.len() < size {
            // A truncated frame: the connection waits for (and then fails on) more bytes.
            return decoded;
        }
        let frame = BytesMut::from(&rest[..size]);
        data = &rest[size..];
        match decode_request(frame.freeze()) {
            Err(_) => return decoded,
            Ok(Decoded::Reply(reply)) => {
                // KIP-511's fallback: a v0 ApiVersions response with its size prefix.
                assert!(reply.len() >= 4, "reply of {} bytes has no size prefix", reply.len());
                let prefix = i32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
                assert_eq!(prefix as usize, reply.len() - 4, "reply size prefix disagrees with its length");
            }
            Ok(Decoded::Request { request, version, header, .. }) => {
                assert_eq!(header.request_api_version, version, "header version differs from the frame's");
                // `Borrow` so this compiles whether `Decoded` boxes the request or not.
                let request: &RequestKind = std::borrow::Borrow::borrow(&request);
                if let RequestKind::Produce(produce) = request {
                    for topic in &produce.topic_data {
                        for partition in &topic.partition_data {
                            if let Some(records) = &partition.records {
                                check_client_records(records);
                                // Mutations almost never keep a CRC valid: also check the
                                // records with every batch's CRC made right, so the record
                                // walk behind the CRC gets explored too.
                                let fixed = with_fixed_crcs(records);
                                if fixed[..] != records[..] {
                                    check_client_records(&fixed);
                                }
                            }
                        }
                    }
                }
            }
        }
        decoded += 1;
    }
    decoded
}

/// A produce request's `records` field: iterate with client validation; every accepted batch
/// must also be accepted by stored validation and survive offset assignment.
pub fn check_client_records(records: &[u8]) {
    let mut expected_pos = 0usize;
    let mut it = batches(records, Validation::FromClient);
    while let Some(item) = it.next() {
        match item {
            Ok((pos, info)) => {
                assert_eq!(pos, expected_pos, "batches() skipped or repeated bytes");
                assert!(info.total_len >= BATCH_HEADER_LEN, "accepted batch shorter than a header");
                let end = pos.checked_add(info.total_len).expect("batch end overflows");
                assert!(end <= records.len(), "accepted batch runs past the buffer");
                let batch = &records[pos..end];
                let client = validate_from_client(batch).expect("batch accepted in place fails on its own bytes");
                assert_eq!(client, info, "batch info depends on the bytes after the batch");
                check_accepted_batch(batch, &info);
                expected_pos = end;
            }
            Err(_) => {
                assert_eq!(it.position(), expected_pos, "error reported at another position");
                assert!(it.next().is_none(), "batches() went on after an error");
                return;
            }
        }
    }
    assert_eq!(it.position(), records.len(), "batches() stopped early without an error");
}

/// `batch` (exactly one batch) passed `validate_from_client` with `info`. It must pass
/// `validate_stored` with the same info, and still pass both validations after
/// `assign_offsets` — with and without LogAppendTime — with the new offset/epoch/time visible.
/// `assign_offsets_split` (the append path's variant) must produce the same bytes.
pub fn check_accepted_batch(batch: &[u8], info: &BatchInfo) {
    let stored = validate_stored(batch).expect("validate_from_client accepted a batch validate_stored rejects");
    assert_eq!(&stored, info, "the two validations disagree on the batch's header");
    check_assign_offsets(batch, info, true);
}

/// `batch` (exactly one batch) passed `validate_stored` with `info`; `from_client` says
/// whether it also passed `validate_from_client`. Stamps it and re-validates.
pub fn check_assign_offsets(batch: &[u8], info: &BatchInfo, from_client: bool) {
    for time in [None, Some(APPEND_TIME_MS), Some(info.max_timestamp)] {
        let mut copy = batch.to_vec();
        assign_offsets(&mut copy, NEW_BASE_OFFSET, NEW_EPOCH, time);

        let mut header: [u8; BATCH_HEADER_LEN] = batch[..BATCH_HEADER_LEN].try_into().unwrap();
        assign_offsets_split(&mut header, &batch[BATCH_HEADER_LEN..], NEW_BASE_OFFSET, NEW_EPOCH, time);
        assert_eq!(&header[..], &copy[..BATCH_HEADER_LEN], "assign_offsets_split differs from assign_offsets");
        assert_eq!(&batch[BATCH_HEADER_LEN..], &copy[BATCH_HEADER_LEN..], "assign_offsets touched the records");

        let after = validate_stored(&copy)
            .unwrap_or_else(|e| panic!("batch fails validate_stored after assign_offsets({time:?}): {e}"));
        assert_eq!(after.base_offset, NEW_BASE_OFFSET);
        assert_eq!(after.partition_leader_epoch, NEW_EPOCH);
        assert_eq!(after.total_len, info.total_len);
        assert_eq!(after.last_offset_delta, info.last_offset_delta);
        assert_eq!(after.records_count, info.records_count);
        assert_eq!(after.base_timestamp, info.base_timestamp);
        match time {
            None => {
                assert_eq!(after.attributes, info.attributes);
                assert_eq!(after.max_timestamp, info.max_timestamp);
            }
            Some(t) => {
                assert_eq!(after.max_timestamp, t);
                assert_eq!(after.timestamp_type(), TimestampType::LogAppendTime);
                assert_eq!(after.attributes & !0x08, info.attributes & !0x08, "other attribute bits changed");
            }
        }
        if from_client {
            let again = validate_from_client(&copy)
                .unwrap_or_else(|e| panic!("batch fails validate_from_client after assign_offsets({time:?}): {e}"));
            assert_eq!(again, after);
        }
    }
}

/// A copy of `buf` with the CRC of every batch whose length field fits the buffer recomputed,
/// walking batch to batch by the length fields (stopping at the first that does not fit).
/// Magic and everything else are left as they are.
pub fn with_fixed_crcs(buf: &[u8]) -> Vec<u8> {
    let mut out = buf.to_vec();
    let mut pos = 0usize;
    while let Ok(header) = BatchHeader::parse(&out[pos..]) {
        let Ok(len) = usize::try_from(header.batch_length()) else { break };
        let total = len.saturating_add(LOG_OVERHEAD);
        if total < BATCH_HEADER_LEN || total > out.len() - pos {
            break;
        }
        let crc = compute_crc(&out[pos..]);
        out[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos += total;
    }
    out
}
