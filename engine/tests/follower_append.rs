//! The follower side of a partition log: appending what a leader's log holds (its offsets,
//! epochs and timestamps kept), truncating a diverged tail, and a high watermark the
//! replication layer moves instead of the durable end.

mod support;

use sluice_engine::batch::{batches, set_producer, Validation};
use sluice_engine::partition_log::{AppendError, LogOptions, PartitionLog, ReadBound};
use support::*;

fn replicated_options() -> LogOptions {
    LogOptions { high_watermark_follows_durable_end: false, ..small_writer_options() }
}

/// An idempotent (or, with `transactional`, transactional) batch.
fn producer_batch(pid: i64, epoch: i16, seq: i32, tag: u64, count: usize, transactional: bool) -> Vec<u8> {
    let mut b = tagged_batch(tag, count, 120, 1_000 + tag as i64);
    if transactional {
        b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    }
    set_producer(&mut b, pid, epoch, seq);
    b
}

/// Everything a log holds up to its end, as one byte string (what a follower's fetches
/// return), read in pieces of `max_bytes` (so reads cut batches at their ends).
async fn leader_bytes_from(log: &PartitionLog, from: i64, max_bytes: usize) -> Vec<u8> {
    let read = log.read(from, max_bytes, ReadBound::LogEnd, true).await.expect("read");
    read.to_vec().await.expect("bytes")
}

/// Copies `leader` into `follower` the way a fetcher does: fetch from the follower's end,
/// append, repeat; the follower's high watermark follows the leader's.
async fn replicate(leader: &PartitionLog, follower: &PartitionLog, max_bytes: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let bytes = leader_bytes_from(leader, follower.log_end_offset(), max_bytes).await;
        // Shared memory, as a fetch response's records are, every other time.
        let appended = if follower.log_end_offset() % 2 == 0 {
            follower.append_as_follower_shared(&bytes::Bytes::from(bytes)).await
        } else {
            follower.append_as_follower(&bytes).await
        }
        .expect("follower append");
        assert!(appended.is_some(), "a fetch of {max_bytes} bytes returned no whole batch");
        follower.set_high_watermark(leader.high_watermark().min(follower.log_end_offset()));
    }
}

/// (base offset, bytes) of every batch to the log end.
async fn stored_batches(log: &PartitionLog) -> Vec<(i64, Vec<u8>)> {
    let bytes = leader_bytes_from(log, log.log_start_offset(), usize::MAX >> 1).await;
    batches(&bytes, Validation::Stored)
        .map(|b| b.expect("stored batch"))
        .map(|(pos, info)| (info.base_offset, bytes[pos..pos + info.total_len].to_vec()))
        .collect()
}

/// A leader log with data in several epochs: plain, idempotent and transactional batches, a
/// committed and an aborted transaction and one left open, across several segments.
async fn fill_leader(leader: &PartitionLog, rng: &mut Rng) {
    let (mut seq, mut seq_9, mut seq_11) = (0, 0, 0);
    for i in 0..40u64 {
        let epoch = (i / 10) as i32; // epochs 0..=3
        let count = 1 + rng.below(4) as usize;
        match i % 8 {
            0 | 1 => {
                leader.append(&tagged_batch(i, count, 200 + rng.below(400) as usize, 1_000), epoch).await.unwrap();
            }
            2 | 3 => {
                leader.append(&producer_batch(7, 0, seq, i, count, false), epoch).await.unwrap();
                seq += count as i32;
            }
            4 => {
                leader.append(&producer_batch(9, 1, seq_9, i, count, true), epoch).await.unwrap();
                seq_9 += count as i32;
            }
            5 => {
                let commit = i % 16 == 5;
                leader.append_txn_marker(9, 1, 3, commit, epoch).await.unwrap();
            }
            _ => {
                leader.append(&producer_batch(11, 0, seq_11, i, count, true), epoch).await.unwrap();
                seq_11 += count as i32;
            }
        }
    }
}

#[test]
fn a_follower_holds_the_leaders_batches_epochs_producers_and_transactions() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("seed {seed}");
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let mut rng = Rng(seed);
        let config = config_with(&[("segment.bytes", "6000")]);
        let leader = open(leader_dir.path(), config.clone(), small_writer_options(), true).await;
        fill_leader(&leader, &mut rng).await;
        let follower = open(follower_dir.path(), config.clone(), replicated_options(), true).await;
        let max_bytes = 700 + rng.below(3000) as usize;
        replicate(&leader, &follower, max_bytes).await;

        assert_eq!(stored_batches(&follower).await, stored_batches(&leader).await, "byte-for-byte the same log");
        assert_eq!(follower.leader_epoch_entries(), leader.leader_epoch_entries());
        assert_eq!(follower.leader_epoch_entries().len(), 4);
        assert_eq!(follower.active_producers(), leader.active_producers());
        assert_eq!(follower.open_transactions(), leader.open_transactions());
        assert_eq!(follower.aborted_transaction_index(), leader.aborted_transaction_index());
        assert!(follower.segment_count() > 1, "the follower rolls segments too");
        assert_eq!(follower.high_watermark(), leader.high_watermark());
        assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());

        // Everything survives a restart of the follower (producer snapshots, .txnindex, epochs).
        follower.close().await.unwrap();
        let follower = open(follower_dir.path(), config, replicated_options(), true).await;
        assert_eq!(stored_batches(&follower).await, stored_batches(&leader).await);
        assert_eq!(follower.leader_epoch_entries(), leader.leader_epoch_entries());
        assert_eq!(follower.active_producers(), leader.active_producers());
        assert_eq!(follower.aborted_transaction_index(), leader.aborted_transaction_index());
    });
}

#[test]
fn a_batch_that_does_not_continue_the_log_or_is_corrupt_is_refused_and_nothing_is_written() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let leader = open(leader_dir.path(), config_with(&[]), small_writer_options(), true).await;
        for i in 0..3 {
            leader.append(&tagged_batch(i, 2, 100, 1_000), 0).await.unwrap();
        }
        let follower = open(follower_dir.path(), config_with(&[]), replicated_options(), true).await;
        let from_two = leader_bytes_from(&leader, 2, 1 << 20).await;
        let refused = follower.append_as_follower(&from_two).await.unwrap_err();
        assert_eq!(refused, AppendError::UnexpectedOffset { expected: 0, got: 2 });
        assert_eq!(follower.log_end_offset(), 0);

        let mut all = leader_bytes_from(&leader, 0, 1 << 20).await;
        let last = all.len() - 1;
        all[last] ^= 0xff; // the third batch's CRC no longer matches
        let refused = follower.append_as_follower(&all).await.unwrap_err();
        assert!(matches!(refused, AppendError::Batch(_)), "{refused:?}");
        assert_eq!(follower.log_end_offset(), 4, "the two valid batches before it were appended");

        // A partial batch at the end is left for the next fetch.
        let whole = leader_bytes_from(&leader, 4, 1 << 20).await;
        assert_eq!(follower.append_as_follower(&whole[..whole.len() - 3]).await.unwrap(), None);
        assert_eq!(follower.append_as_follower(&[]).await.unwrap(), None);
        let appended = follower.append_as_follower(&whole).await.unwrap().unwrap();
        assert_eq!((appended.base_offset, appended.last_offset), (4, 5));
        assert_eq!(follower.high_watermark(), 0, "the replication layer moves a follower's HW");
    });
}

#[test]
fn truncating_a_diverged_tail_restores_epochs_producers_transactions_and_watermarks() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let config = config_with(&[("segment.bytes", "3000")]);
        let old_leader = open(follower_dir.path(), config.clone(), replicated_options(), true).await;
        // Epoch 0: offsets 0..6 replicated everywhere; epoch 1: a transaction and more data
        // the old leader wrote alone (offsets 6..).
        for i in 0..3 {
            old_leader.append(&producer_batch(5, 0, i * 2, i as u64, 2, false), 0).await.unwrap();
        }
        old_leader.set_high_watermark(6);
        old_leader.append(&producer_batch(8, 0, 0, 50, 3, true), 1).await.unwrap();
        for i in 3..8 {
            old_leader.append(&producer_batch(5, 0, i * 2, i as u64, 2, false), 1).await.unwrap();
        }
        assert_eq!(old_leader.open_transactions(), vec![(8, 6)]);
        assert_eq!(old_leader.leader_epoch_entries(), vec![(0, 0), (1, 6)]);

        // The new leader has the same epoch-0 prefix, then its own epoch 2.
        let new_leader = open(leader_dir.path(), config.clone(), small_writer_options(), true).await;
        let prefix = leader_bytes_from(&old_leader, 0, 1 << 20).await;
        let prefix_end = batches(&prefix, Validation::Stored)
            .map(|b| b.unwrap())
            .take_while(|(_, info)| info.base_offset < 6)
            .map(|(pos, info)| pos + info.total_len)
            .last()
            .unwrap();
        new_leader.append_as_follower(&prefix[..prefix_end]).await.unwrap();
        new_leader.set_high_watermark_follows_durable_end(true);
        for i in 0..2 {
            new_leader.append(&tagged_batch(100 + i, 4, 80, 2_000), 2).await.unwrap();
        }

        // KIP-320: the follower asks for the end of its last epoch (1) on the new leader.
        let (epoch, end) = new_leader.end_offset_for_epoch(1);
        assert_eq!((epoch, end), (0, 6), "epoch 1 is unknown there: the end of epoch 0");
        old_leader.truncate_to(end).await.unwrap();
        assert_eq!(old_leader.log_end_offset(), 6);
        assert_eq!(old_leader.leader_epoch_entries(), vec![(0, 0)]);
        assert!(old_leader.open_transactions().is_empty(), "the diverged transaction is gone");
        assert_eq!(
            old_leader
                .active_producers()
                .iter()
                .find(|(p, _)| *p == 5)
                .unwrap()
                .1
                .batches
                .back()
                .unwrap()
                .last_sequence,
            5
        );
        assert_eq!(old_leader.high_watermark(), 6);
        assert_eq!(old_leader.last_stable_offset(), 6);

        replicate(&new_leader, &old_leader, 1 << 20).await;
        assert_eq!(stored_batches(&old_leader).await, stored_batches(&new_leader).await);
        assert_eq!(old_leader.leader_epoch_entries(), vec![(0, 0), (2, 6)]);
        assert_eq!(old_leader.high_watermark(), 14);
    });
}

#[test]
fn a_replicated_partitions_high_watermark_is_set_never_past_the_log_end_and_can_go_back_to_following() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), replicated_options(), true).await;
        assert!(!log.high_watermark_follows_durable_end());
        log.append(&producer_batch(3, 0, 0, 1, 2, true), 0).await.unwrap();
        log.append(&tagged_batch(2, 3, 50, 1_000), 0).await.unwrap();
        assert_eq!((log.log_end_offset(), log.high_watermark()), (5, 0));
        log.set_high_watermark(99);
        assert_eq!(log.high_watermark(), 5, "clamped to the log end");
        assert_eq!(log.last_stable_offset(), 0, "the open transaction at 0 holds it");
        log.append_txn_marker(3, 0, 0, true, 0).await.unwrap();
        assert_eq!(log.last_stable_offset(), 0, "the marker is above the HW: not stable yet");
        log.set_high_watermark(6);
        assert_eq!(log.last_stable_offset(), 6);
        log.append(&tagged_batch(4, 1, 50, 1_000), 0).await.unwrap();
        assert_eq!(log.high_watermark(), 6);
        log.set_high_watermark_follows_durable_end(true);
        assert_eq!(log.high_watermark(), 7, "caught up with the durable end");
        log.append(&tagged_batch(5, 1, 50, 1_000), 0).await.unwrap();
        assert_eq!(log.high_watermark(), 8);
    });
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_over_there() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[("segment.bytes", "2000")]), replicated_options(), true).await;
        for i in 0..12 {
            log.append(&producer_batch(4, 0, i * 2, i as u64, 2, false), i / 4).await.unwrap();
        }
        log.set_high_watermark(10);
        assert!(log.segment_count() > 1);
        assert!(log.truncate_fully_and_start_at(24).await.is_err(), "only past the log end");
        log.truncate_fully_and_start_at(500).await.unwrap();
        let check = |log: &PartitionLog| {
            assert_eq!((log.log_start_offset(), log.log_end_offset(), log.high_watermark()), (500, 500, 500));
            assert_eq!(log.segment_count(), 1);
            assert!(log.leader_epoch_entries().is_empty());
            assert!(log.active_producers().is_empty());
        };
        check(&log);
        // The leader's batches from 500 on append as usual, and it all survives a restart.
        let leader_dir = tempfile::tempdir().unwrap();
        let leader = open(leader_dir.path(), config_with(&[]), small_writer_options(), true).await;
        leader.append(&tagged_batch(1, 500, 10, 1_000), 3).await.unwrap();
        leader.append(&tagged_batch(2, 3, 10, 1_000), 5).await.unwrap();
        let from_500 = leader_bytes_from(&leader, 500, 1 << 20).await;
        assert_eq!(log.append_as_follower(&from_500).await.unwrap().unwrap().base_offset, 500);
        assert_eq!(log.leader_epoch_entries(), vec![(5, 500)]);
        log.close().await.unwrap();
        let log = open(dir.path(), config_with(&[("segment.bytes", "2000")]), replicated_options(), true).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 503));
        assert_eq!(log.leader_epoch_entries(), vec![(5, 500)]);
        assert!(log.active_producers().is_empty());
    });
}

#[test]
fn a_replicated_partitions_high_watermark_survives_a_restart_and_never_exceeds_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        log.set_high_watermark_follows_durable_end(false);
        for i in 0..5 {
            log.append(&tagged_batch(i, 2, 50, 1_000), 0).await.unwrap();
        }
        log.set_high_watermark(4);
        log.checkpoint_recovery_point().await.unwrap();
        log.set_high_watermark(6);
        log.close().await.unwrap();
        // Opened as a single-node log (as the broker opens every log): the HW is the log end
        // until replication takes the partition over, then the checkpointed one.
        let log = open(dir.path(), config_with(&[]), small_writer_options(), true).await;
        assert_eq!(log.high_watermark(), 10);
        log.set_high_watermark_follows_durable_end(false);
        assert_eq!(log.high_watermark(), 6, "the close wrote the latest");
        log.set_high_watermark(7);
        log.checkpoint_recovery_point().await.unwrap();
        log.set_high_watermark_follows_durable_end(true);
        log.set_high_watermark_follows_durable_end(false);
        assert_eq!(log.high_watermark(), 10, "applied once after open only");
        drop(log); // a crash: no close, and the checkpoint on disk says 7
        let log = open(dir.path(), config_with(&[]), replicated_options(), false).await;
        assert_eq!(log.high_watermark(), 7, "opened as a replicated log: the checkpoint at once");
        log.truncate_to(4).await.unwrap();
        log.checkpoint_recovery_point().await.unwrap();
        log.close().await.unwrap();
        let log = open(dir.path(), config_with(&[]), replicated_options(), true).await;
        assert_eq!((log.high_watermark(), log.log_end_offset()), (4, 4));
    });
}
