//! Transactions in the partition log: transactional batches open a transaction, markers close
//! it, the last stable offset (LSO) holds read_committed readers below open transactions, and
//! abort markers fill the segments' `.txnindex` files — across clean and unclean restarts,
//! truncation, retention and DeleteRecords.

mod support;

use std::path::Path;

use sluice_engine::batch::{batches, set_producer, BatchInfo, Validation};
use sluice_engine::error_code::ErrorCode;
use sluice_engine::partition_log::{PartitionLog, ReadBound};
use sluice_engine::txn_index::AbortedTxn;
use sluice_engine::txn_marker::decode_marker;
use support::*;

/// A transactional batch of `count` records tagged `tag`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, tag: u64, count: usize) -> Vec<u8> {
    let mut b = tagged_batch(tag, count, 150, 1_000);
    b[21..23].copy_from_slice(&0x10i16.to_be_bytes()); // attributes: transactional
    set_producer(&mut b, pid, epoch, seq); // recomputes the CRC
    b
}

/// Every batch below `bound`, as a read loop would fetch them: (info, bytes).
async fn read_batches(log: &PartitionLog, bound: ReadBound) -> Vec<(BatchInfo, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    loop {
        let read = log.read(offset, 1 << 20, bound, true).await.expect("read");
        if read.is_empty() {
            return out;
        }
        let bytes = read.to_vec().await.unwrap();
        for item in batches(&bytes, Validation::Stored) {
            let (pos, info) = item.unwrap();
            out.push((info, bytes[pos..pos + info.total_len].to_vec()));
            offset = info.next_offset();
        }
    }
}

/// What a consumer sees: the tags of the data batches, dropping control batches and — for
/// read_committed — the batches of aborted transactions, the way clients filter with the
/// fetch's aborted-transaction list (Kafka's `Fetcher`/librdkafka).
fn visible_tags(batches: &[(BatchInfo, Vec<u8>)], aborted: Option<&[AbortedTxn]>) -> Vec<(i64, u64)> {
    let mut pending: Vec<AbortedTxn> = aborted.map(|a| a.to_vec()).unwrap_or_default();
    pending.sort_by_key(|a| a.first_offset);
    let mut aborting = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (info, bytes) in batches {
        while let Some(first) = pending.first() {
            if first.first_offset > info.last_offset() {
                break;
            }
            aborting.insert(pending.remove(0).producer_id);
        }
        if info.is_control() {
            if decode_marker(info, bytes).is_some_and(|m| !m.commit) {
                aborting.remove(&info.producer_id);
            }
            continue;
        }
        if aborted.is_some() && aborting.contains(&info.producer_id) {
            continue;
        }
        // The first record's value starts "<tag>:0:".
        let at = bytes.windows(3).position(|w| w == b":0:").expect("a tagged value");
        let start = bytes[..at].iter().rposition(|b| !b.is_ascii_digit()).map_or(0, |p| p + 1);
        let tag = std::str::from_utf8(&bytes[start..at]).unwrap().parse().unwrap();
        out.push((info.base_offset, tag));
    }
    out
}

fn config() -> sluice_engine::log_config::LogConfig {
    config_with(&[("segment.bytes", "1024"), ("index.interval.bytes", "100")])
}

fn txn_index_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txnindex"))
        .collect();
    names.sort();
    names
}

/// Offsets: 0..2 plain (tag 1); 3..4 pid 10 (tag 2, aborted); 5..6 pid 20 (tag 3, committed);
/// 7 pid 10 (tag 4, aborted); marker abort pid 10 at 8; 9 plain (tag 5); marker commit pid 20
/// at 10; 11..12 pid 30 (tag 6, left open).
async fn write_scenario(log: &PartitionLog) {
    log.append(&tagged_batch(1, 3, 150, 1_000), 0).await.unwrap();
    assert_eq!(log.last_stable_offset(), 3);
    log.append(&txn_batch(10, 0, 0, 2, 2), 0).await.unwrap();
    log.append(&txn_batch(20, 0, 0, 3, 2), 0).await.unwrap();
    log.append(&txn_batch(10, 0, 2, 4, 1), 0).await.unwrap();
    assert_eq!(log.high_watermark(), 8);
    assert_eq!(log.last_stable_offset(), 3, "held at pid 10's first offset");
    assert_eq!(log.open_transactions(), vec![(10, 3), (20, 5)]);
    let marker = log.append_txn_marker(10, 0, 0, false, 0).await.unwrap();
    assert_eq!(marker.base_offset, 8);
    assert_eq!(log.last_stable_offset(), 5, "now held at pid 20's");
    log.append(&tagged_batch(5, 1, 150, 1_000), 0).await.unwrap();
    log.append_txn_marker(20, 0, 0, true, 0).await.unwrap();
    assert_eq!(log.last_stable_offset(), 11);
    log.append(&txn_batch(30, 0, 0, 6, 2), 0).await.unwrap();
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (13, 11));
}

const ABORTED_10: AbortedTxn = AbortedTxn { producer_id: 10, first_offset: 3, last_offset: 8, last_stable_offset: 5 };

async fn check_scenario(log: &PartitionLog) {
    assert_eq!((log.log_end_offset(), log.high_watermark(), log.last_stable_offset()), (13, 13, 11));
    assert_eq!(log.aborted_transaction_index(), vec![ABORTED_10]);
    assert_eq!(log.aborted_transactions(0, 3), vec![], "ends before pid 10's transaction");
    assert_eq!(log.aborted_transactions(9, 11), vec![], "starts after its marker");
    assert_eq!(log.aborted_transactions(4, 5), vec![ABORTED_10]);
    let uncommitted = read_batches(log, ReadBound::HighWatermark).await;
    assert_eq!(
        visible_tags(&uncommitted, None),
        vec![(0, 1), (3, 2), (5, 3), (7, 4), (9, 5), (11, 6)],
        "read_uncommitted sees every data batch"
    );
    let committed = read_batches(log, ReadBound::LastStable).await;
    assert!(committed.iter().all(|(info, _)| info.last_offset() < 11), "nothing at or past the LSO");
    let aborted = log.aborted_transactions(0, log.last_stable_offset());
    assert_eq!(visible_tags(&committed, Some(&aborted)), vec![(0, 1), (5, 3), (9, 5)], "read_committed");
    let markers: Vec<i64> = committed.iter().filter(|(i, _)| i.is_control()).map(|(i, _)| i.base_offset).collect();
    assert_eq!(markers, vec![8, 10], "markers take offsets (consumers skip them)");
}

#[test]
fn abort_and_commit_read_back_under_both_isolation_levels_and_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        write_scenario(&log).await;
        check_scenario(&log).await;
        // Stale markers are refused and write nothing.
        let stale_epoch = log.append_txn_marker(30, -1, 0, true, 0).await.unwrap_err();
        assert_eq!(stale_epoch.error_code(), ErrorCode::INVALID_PRODUCER_EPOCH);
        log.append_txn_marker(40, 0, 5, true, 0).await.unwrap(); // offset 13: coordinator epoch 5
        let fenced = log.append_txn_marker(40, 0, 4, false, 0).await.unwrap_err();
        assert_eq!(fenced.error_code(), ErrorCode::TRANSACTION_COORDINATOR_FENCED);
        assert_eq!(log.log_end_offset(), 14);
        log.truncate_to(13).await.unwrap(); // back to the scenario
        log.close().await.unwrap();
    });
    assert!(!txn_index_files(dir.path()).is_empty(), "the abort is in a .txnindex file");
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        check_scenario(&log).await;
        assert_eq!(log.open_transactions(), vec![(30, 11)], "the snapshot carried the open transaction");
        // Closing it after the restart moves the LSO to the end.
        log.append_txn_marker(30, 0, 0, true, 0).await.unwrap();
        assert_eq!(log.last_stable_offset(), 14);
        log.close().await.unwrap();
    });
}

#[test]
fn an_unclean_restart_rebuilds_the_index_and_the_lso() {
    for delete_index_files in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        run(async {
            let log = open(dir.path(), config(), small_writer_options(), true).await;
            write_scenario(&log).await;
            log.flush().await.unwrap();
            drop(log); // a crash: no close, no final snapshot
        });
        if delete_index_files {
            for name in txn_index_files(dir.path()) {
                std::fs::remove_file(dir.path().join("t-0").join(name)).unwrap();
            }
            // Without the snapshots too, the whole log is replayed.
            for e in std::fs::read_dir(dir.path().join("t-0")).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "snapshot") {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
        run(async {
            let log = open(dir.path(), config(), small_writer_options(), false).await;
            check_scenario(&log).await;
            assert_eq!(log.open_transactions(), vec![(30, 11)]);
            log.close().await.unwrap();
        });
        assert!(!txn_index_files(dir.path()).is_empty(), "rebuilt entries are written back");
    }
}

#[test]
fn truncation_below_a_marker_reopens_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        write_scenario(&log).await;
        log.truncate_to(8).await.unwrap(); // drops pid 10's abort marker and everything after
        assert_eq!(log.aborted_transaction_index(), vec![]);
        assert_eq!(log.open_transactions(), vec![(10, 3), (20, 5)]);
        assert_eq!((log.high_watermark(), log.last_stable_offset()), (8, 3));
        let committed = read_batches(&log, ReadBound::LastStable).await;
        assert_eq!(visible_tags(&committed, Some(&[])), vec![(0, 1)]);
        log.close().await.unwrap();
    });
}

#[test]
fn deleting_segments_deletes_their_transaction_index() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        write_scenario(&log).await;
        log.append_txn_marker(30, 0, 0, false, 0).await.unwrap(); // abort pid 30 at 13
        log.roll().await.unwrap();
        log.append(&tagged_batch(7, 1, 150, 1_000), 0).await.unwrap(); // the new active segment
        log.close().await.unwrap();
    });
    let before = txn_index_files(dir.path());
    assert!(!before.is_empty());
    run(async {
        let log = open(dir.path(), config(), small_writer_options(), true).await;
        assert_eq!(log.aborted_transaction_index().len(), 2);
        let hw = log.high_watermark();
        log.delete_records_before(hw).await.unwrap();
        assert_eq!(log.aborted_transaction_index(), vec![], "the segments holding the markers are gone");
        log.close().await.unwrap();
    });
    assert_eq!(txn_index_files(dir.path()), Vec::<String>::new());
}
