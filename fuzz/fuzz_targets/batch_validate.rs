//! Arbitrary bytes as record batches (a produce request's `records`, or a segment's bytes):
//! `validate_stored`, `validate_from_client`, `batches` in both modes and
//! `log_recovery::scan_buffer` must not panic and must agree with one another; every stored
//! control batch through `txn_marker::decode_marker` (what the log replay reads). The same bytes
//! as a `.txnindex` file and as a producer-state snapshot: decoders that accept them must
//! round-trip what they decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{batches, validate_from_client, validate_stored, BatchError, Validation};
use sluice_engine::log_recovery::scan_buffer;
use sluice_engine::producer_state::ProducerStateTable;
use sluice_engine::txn_index::TxnIndex;
use sluice_engine::txn_marker::{decode_marker, encode_marker_batch};

fuzz_target!(init: sluice_fuzz::alloc_guard::init_from_env(), |data: &[u8]| {
    check(data);
    // Mutations almost never keep a CRC valid; the same checks on a copy with every batch's
    // CRC recomputed reach the record walk and the offset checks behind the CRC gate.
    let fixed = sluice_fuzz::with_fixed_crcs(data);
    if fixed[..] != data[..] {
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    // The batch at the start of the buffer, both ways.
    let stored = validate_stored(data);
    let client = validate_from_client(data);
    if let Ok(info) = &client {
        let stored = stored.as_ref().expect("validate_from_client accepted a batch validate_stored rejects");
        assert_eq!(stored, info, "the two validations disagree on the batch's header");
    }
    if let Ok(info) = &stored {
        assert!(info.total_len <= data.len());
        sluice_fuzz::check_assign_offsets(&data[..info.total_len], info, client.is_ok());
    }
    // Truncation is the only error that depends on how many bytes follow.
    if let Err(BatchError::Truncated { needed, available }) = &stored {
        assert_eq!(*available, data.len());
        assert!(*needed > data.len());
    }

    // The whole buffer as a produce request's records.
    sluice_fuzz::check_client_records(data);

    // The whole buffer as stored batches; the client-accepted prefix must be a prefix of it.
    let stored_ok: Vec<_> = batches(data, Validation::Stored).map_while(Result::ok).collect();
    let client_ok: Vec<_> = batches(data, Validation::FromClient).map_while(Result::ok).collect();
    assert!(client_ok.len() <= stored_ok.len(), "client validation accepted more batches than stored");
    assert_eq!(&stored_ok[..client_ok.len()], &client_ok[..], "stored and client iterations disagree");
    let mut end = 0usize;
    for (pos, info) in &stored_ok {
        assert_eq!(*pos, end, "batches() skipped or repeated bytes");
        end = pos + info.total_len;
        assert!(end <= data.len());
        if let Some(marker) = decode_marker(info, &data[*pos..end]) {
            assert!(info.is_control());
            let again = encode_marker_batch(info.base_offset, info.producer_id, info.producer_epoch, marker, 0);
            let again_info = validate_stored(&again).expect("an encoded marker is a valid batch");
            assert_eq!(decode_marker(&again_info, &again), Some(marker), "a marker does not round-trip");
        }
    }

    // The same bytes as the files that sit beside segments.
    if let Ok(index) = TxnIndex::decode(data) {
        let back = TxnIndex::decode(&index.encode()).expect("an encoded index decodes");
        assert_eq!(back.entries(), index.entries(), "a transaction index does not round-trip");
    }
    if let Some((table, next_offset)) = ProducerStateTable::decode_snapshot(data) {
        let back = ProducerStateTable::decode_snapshot(&table.encode_snapshot(next_offset));
        assert_eq!(back, Some((table, next_offset)), "a producer snapshot does not round-trip");
    }

    // Crash recovery over the same bytes: the valid prefix is a prefix of the stored batches,
    // ending at a batch boundary, with offsets increasing.
    let mut min_next_offset = 0i64;
    let mut visited = Vec::new();
    let (valid, stop) = scan_buffer(data, 0, &mut min_next_offset, &mut |pos, info| visited.push((pos, *info)));
    assert!(valid <= data.len());
    assert!(visited.len() <= stored_ok.len(), "recovery accepted a batch validate_stored rejects");
    let mut scan_end = 0usize;
    let mut min = 0i64;
    for ((pos, info), (want_pos, want_info)) in visited.iter().zip(&stored_ok) {
        assert_eq!(*pos as usize, *want_pos);
        assert_eq!(info, want_info);
        assert!(info.base_offset >= min, "recovery accepted an offset going backwards");
        min = info.next_offset();
        scan_end = want_pos + want_info.total_len;
    }
    assert_eq!(valid, scan_end, "recovery's valid length is not the end of its last batch");
    if !visited.is_empty() {
        assert_eq!(min_next_offset, min);
    }
    if stop.is_none() {
        // Needs more bytes: either fewer than a header remain or the next batch is truncated.
        let rest = &data[valid..];
        assert!(
            rest.len() < 61 || matches!(validate_stored(rest), Err(BatchError::Truncated { .. })),
            "recovery asked for more bytes after a batch it could judge"
        );
    }
}
