//! Log compaction on a real log (glommio, files): 20 versions of 200 keys and tombstones for
//! some; cleaning keeps exactly the latest record of every key in the sealed segments, with its
//! offset, drops tombstones once `delete.retention.ms` has passed after their first cleaning,
//! shrinks the log, survives a reopen, and cleans in passes when the key map is small.

mod support;

use std::collections::BTreeMap;

use sluice_engine::batch::{batches, build_batch, RecordSpec, Validation};
use sluice_engine::cleaner::record_filter::for_each_record;
use sluice_engine::cleaner::shard_cleaner::{CleanerOptions, ShardCleaner};
use sluice_engine::log_config::LogConfig;
use sluice_engine::partition_log::PartitionLog;
use support::*;

const KEYS: usize = 200;
const VERSIONS: usize = 20;

fn compacted_config(delete_retention_ms: &str) -> LogConfig {
    config_with(&[
        ("cleanup.policy", "compact"),
        ("segment.bytes", "16384"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", delete_retention_ms),
    ])
}

/// One record per batch: (key, value or tombstone).
async fn put(log: &PartitionLog, key: &str, value: Option<&str>) -> i64 {
    let spec: [RecordSpec<'_>; 1] = [(Some(key.as_bytes()), value.map(str::as_bytes), &[][..])];
    log.append(&build_batch(0, &spec, 1_000), 0).await.expect("append").base_offset
}

/// Every record of the log: offset → (key, value).
async fn records(log: &PartitionLog) -> BTreeMap<i64, (String, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut scratch = Vec::new();
    for (_, bytes) in read_all(log, log.log_start_offset()).await {
        for item in batches(&bytes, Validation::Stored) {
            let (pos, info) = item.expect("valid batch");
            if info.is_control() {
                continue; // transaction markers carry no data
            }
            for_each_record(&bytes[pos..pos + info.total_len], &mut scratch, |r, raw| {
                let key = String::from_utf8(r.key.expect("compacted records have keys").to_vec()).unwrap();
                let value = (!r.is_tombstone).then(|| value_of(raw));
                out.insert(r.offset, (key, value));
            })
            .unwrap();
        }
    }
    out
}

/// The value of a record written by `put` (the tail of its raw bytes: value then no headers).
fn value_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let start = text.find("v=").expect("values start with v=");
    text[start..text.len() - 1].to_string()
}

/// Writes the versions; every key divisible by 10 ends with a tombstone. Returns what a reader
/// must see after cleaning: the latest record of each key.
async fn write_versions(log: &PartitionLog) -> BTreeMap<String, (i64, Option<String>)> {
    let mut latest = BTreeMap::new();
    for version in 0..VERSIONS {
        for k in 0..KEYS {
            let key = format!("key-{k:03}");
            let value = format!("v={version}:{k}");
            let offset = put(log, &key, Some(&value)).await;
            latest.insert(key, (offset, Some(value)));
        }
    }
    for k in (0..KEYS).step_by(10) {
        let key = format!("key-{k:03}");
        let offset = put(log, &key, None).await;
        latest.insert(key, (offset, None));
    }
    latest
}

async fn clean_until_done(cleaner: &ShardCleaner, log: &std::rc::Rc<PartitionLog>, now_ms: i64) -> usize {
    let mut passes = 0;
    while let Some(result) = cleaner.clean_dirtiest(std::slice::from_ref(log), now_ms).await {
        result.expect("a pass succeeds");
        passes += 1;
        assert!(passes < 100, "cleaning does not converge");
    }
    passes
}

#[test]
fn cleaning_keeps_the_latest_record_of_every_key_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let expected = run(async {
        let log = open(dir.path(), compacted_config("86400000"), small_writer_options(), true).await;
        let latest = write_versions(&log).await;
        log.roll().await.unwrap(); // everything written is in sealed segments
        let before_bytes = log.size_bytes();
        let before = records(&log).await;
        assert_eq!(before.len(), KEYS * VERSIONS + KEYS / 10);

        let cleaner = ShardCleaner::new(CleanerOptions::default());
        let passes = clean_until_done(&cleaner, &log, now()).await;
        assert_eq!(passes, 1, "one pass maps every key");
        let after = records(&log).await;
        let by_key: BTreeMap<String, (i64, Option<String>)> =
            after.iter().map(|(o, (k, v))| (k.clone(), (*o, v.clone()))).collect();
        assert_eq!(after.len(), KEYS, "one record per key, tombstones kept on their first cleaning");
        assert_eq!(by_key, latest, "the latest record of each key, at its original offset");
        assert!(log.size_bytes() * 5 < before_bytes, "{} bytes after, {before_bytes} before", log.size_bytes());
        // A read at a removed offset continues at the next record kept.
        let removed = *before.keys().find(|o| !after.contains_key(o)).unwrap();
        let read = log.read(removed, 1 << 20, sluice_engine::ReadBound::HighWatermark, true).await.unwrap();
        let bytes = read.to_vec().await.unwrap();
        let first = batches(&bytes, Validation::Stored).next().unwrap().unwrap().1;
        assert_eq!(first.base_offset, *after.range(removed..).next().unwrap().0);
        assert_eq!(log.log_end_offset(), (KEYS * VERSIONS + KEYS / 10) as i64, "the log end does not move");
        log.close().await.unwrap();
        latest
    });
    // Reopened (after a crash too), the log is the cleaned one.
    for clean in [true, false] {
        let dir = dir.path();
        let expected = expected.clone();
        run(async move {
            let log = open(dir, compacted_config("86400000"), small_writer_options(), clean).await;
            let by_key: BTreeMap<String, (i64, Option<String>)> =
                records(&log).await.into_iter().map(|(o, (k, v))| (k, (o, v))).collect();
            assert_eq!(by_key, expected, "clean={clean}");
            log.close().await.unwrap();
        });
    }
}

#[test]
fn tombstones_go_once_delete_retention_passed_after_their_first_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), compacted_config("0"), small_writer_options(), true).await;
        let latest = write_versions(&log).await;
        log.roll().await.unwrap();
        let cleaner = ShardCleaner::new(CleanerOptions::default());
        clean_until_done(&cleaner, &log, now()).await;
        assert_eq!(records(&log).await.len(), KEYS, "tombstones survive the first cleaning");
        // New writes make the log dirty again; the next cleaning drops the tombstones.
        for k in 0..KEYS {
            put(&log, &format!("key-{k:03}"), Some("v=again")).await;
        }
        log.roll().await.unwrap();
        clean_until_done(&cleaner, &log, now() + 1).await;
        let after = records(&log).await;
        assert!(after.values().all(|(_, v)| v.is_some()), "no tombstone left");
        assert_eq!(after.len(), KEYS, "every key has its newest value");
        assert!(after.values().all(|(_, v)| v.as_deref() == Some("v=again")));
        drop(latest);
        log.close().await.unwrap();
    });
}

#[test]
fn a_small_key_map_cleans_in_passes() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), compacted_config("86400000"), small_writer_options(), true).await;
        let latest = write_versions(&log).await;
        log.roll().await.unwrap();
        // Room for ~60 keys: every pass maps a stretch of the dirty section.
        let cleaner = ShardCleaner::new(CleanerOptions { dedupe_buffer_bytes: 64 * 32, ..CleanerOptions::default() });
        let passes = clean_until_done(&cleaner, &log, now()).await;
        assert!(passes > 3, "{passes} passes");
        let by_key: BTreeMap<String, (i64, Option<String>)> =
            records(&log).await.into_iter().map(|(o, (k, v))| (k, (o, v))).collect();
        assert_eq!(by_key, latest);
        log.close().await.unwrap();
    });
}

#[test]
fn a_record_without_a_key_is_refused_by_a_compacted_log() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), compacted_config("86400000"), small_writer_options(), true).await;
        let keyless: [RecordSpec<'_>; 2] =
            [(Some(&b"k"[..]), Some(&b"v"[..]), &[][..]), (None, Some(&b"v"[..]), &[][..])];
        let err = log.append(&build_batch(0, &keyless, 1_000), 0).await.expect_err("keyless record");
        assert_eq!(err.error_code(), sluice_engine::error_code::ErrorCode::INVALID_RECORD);
        assert_eq!(log.log_end_offset(), 0);
        log.close().await.unwrap();
    });
}

fn now() -> i64 {
    sluice_engine::clock::now_ms()
}

#[test]
fn cleaning_while_writing_still_keeps_only_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), compacted_config("86400000"), small_writer_options(), true).await;
        let cleaner = ShardCleaner::new(CleanerOptions::default());
        let mut latest = BTreeMap::new();
        for version in 0..VERSIONS {
            for k in 0..KEYS {
                let key = format!("key-{k:03}");
                let value = format!("v={version}:{k}");
                let offset = put(&log, &key, Some(&value)).await;
                latest.insert(key, (offset, Some(value)));
            }
            clean_until_done(&cleaner, &log, now()).await;
        }
        for k in (0..KEYS).step_by(10) {
            let key = format!("key-{k:03}");
            let offset = put(&log, &key, None).await;
            latest.insert(key, (offset, None));
        }
        log.roll().await.unwrap();
        clean_until_done(&cleaner, &log, now()).await;
        let by_key: BTreeMap<String, Vec<(i64, Option<String>)>> =
            records(&log).await.into_iter().fold(BTreeMap::new(), |mut m, (o, (k, v))| {
                m.entry(k).or_insert_with(Vec::new).push((o, v));
                m
            });
        let doubled: Vec<_> = by_key.iter().filter(|(_, v)| v.len() > 1).take(3).collect();
        assert!(doubled.is_empty(), "{doubled:?}");
        log.close().await.unwrap();
    });
}

/// A transactional batch of `records` (key, value) for producer `pid`, epoch 0.
fn txn_batch(pid: i64, sequence: i32, records: &[(&str, &str)]) -> Vec<u8> {
    let specs: Vec<RecordSpec<'_>> =
        records.iter().map(|(k, v)| (Some(k.as_bytes()), Some(v.as_bytes()), &[][..])).collect();
    let mut batch = build_batch(0, &specs, 1_000);
    sluice_engine::batch::set_transactional_producer(&mut batch, pid, 0, sequence);
    batch
}

#[test]
fn aborted_transactions_are_removed_and_committed_ones_compacted() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), compacted_config("86400000"), small_writer_options(), true).await;
        let old = put(&log, "k0", Some("v=plain-old")).await;
        log.append(&txn_batch(1000, 0, &[("k0", "v=aborted"), ("k1", "v=aborted")]), 0).await.unwrap();
        log.append_txn_marker(1000, 0, 0, false, 0).await.unwrap();
        log.append(&txn_batch(2000, 0, &[("k0", "v=committed-old")]), 0).await.unwrap();
        log.append_txn_marker(2000, 0, 0, true, 0).await.unwrap();
        let newest = log.append(&txn_batch(2000, 1, &[("k0", "v=committed-new")]), 0).await.unwrap().base_offset;
        log.append_txn_marker(2000, 0, 0, true, 0).await.unwrap();
        let plain = put(&log, "k2", Some("v=plain")).await;
        log.roll().await.unwrap();
        assert_eq!(records(&log).await.len(), 6);

        let cleaner = ShardCleaner::new(CleanerOptions::default());
        clean_until_done(&cleaner, &log, now()).await;
        let after = records(&log).await;
        let expected: BTreeMap<i64, (String, Option<String>)> = [
            (newest, ("k0".to_string(), Some("v=committed-new".to_string()))),
            (plain, ("k2".to_string(), Some("v=plain".to_string()))),
        ]
        .into_iter()
        .collect();
        assert_eq!(after, expected, "the aborted records and the superseded k0 ({old}) are gone");
        // The markers stay: read_committed readers still get the aborted transaction listed.
        let aborted = log.aborted_transactions(0, log.log_end_offset());
        assert_eq!(aborted.iter().map(|a| a.producer_id).collect::<Vec<_>>(), vec![1000]);
        log.close().await.unwrap();
    });
}
