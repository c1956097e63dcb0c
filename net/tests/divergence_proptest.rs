//! KIP-320 end to end on real partition logs, against random histories: two replicas trade
//! leadership; before each change the old leader may append batches the other never fetches
//! (they die with its leadership). The follower then catches up the way the fetcher does —
//! the leader's diverging-epoch answer ([`divergence::diverging_epoch`] over
//! [`divergence::leader_end_for_epoch`]), the follower's truncation
//! ([`divergence::truncation_offset`]), `append_as_follower` of what the leader reads to its
//! end in random pieces — and must end byte-identical to the leader, epochs included.

use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use proptest::prelude::*;
use sluice_engine::batch::build_batch_of_size;
use sluice_engine::log_config::LogConfig;
use sluice_engine::partition_log::{LogOptions, PartitionLog, ReadBound};
use sluice_net::replication::divergence::{self, EpochEnd};

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(512 << 10).make().expect("executor").run(f)
}

async fn open(dir: &std::path::Path) -> Rc<PartitionLog> {
    let options =
        LogOptions { high_watermark_follows_durable_end: false, tail_cache_bytes: 0, ..LogOptions::default() };
    let mut config = LogConfig::default();
    config.set("segment.bytes", "4000").unwrap();
    PartitionLog::open(dir, "t", 0, config, options, true).await.expect("open")
}

async fn all_bytes(log: &PartitionLog) -> Vec<u8> {
    let read = log.read(log.log_start_offset(), 1 << 30, ReadBound::LogEnd, true).await.unwrap();
    read.to_vec().await.unwrap()
}

/// One fetch round trip of `follower` from `leader` (at `leader_epoch`); returns whether it
/// changed anything.
async fn fetch_once(leader: &PartitionLog, leader_epoch: i32, follower: &PartitionLog, max_bytes: usize) -> bool {
    let fetch_offset = follower.log_end_offset();
    let last_fetched_epoch = follower.latest_epoch().unwrap_or(-1);
    let (epoch, end_offset) = leader.end_offset_for_epoch(last_fetched_epoch);
    let leader_end = divergence::leader_end_for_epoch(
        last_fetched_epoch,
        EpochEnd { epoch, end_offset },
        leader.latest_epoch(),
        leader_epoch,
        leader.log_end_offset(),
    );
    if let Some(diverging) = divergence::diverging_epoch(last_fetched_epoch, fetch_offset, leader_end) {
        let own = (diverging.epoch >= 0)
            .then(|| follower.end_offset_for_epoch(diverging.epoch))
            .filter(|(e, _)| *e >= 0)
            .map(|(epoch, end_offset)| EpochEnd { epoch, end_offset });
        let t = divergence::truncation_offset(
            diverging,
            own,
            follower.log_start_offset(),
            follower.log_end_offset(),
            follower.high_watermark(),
        );
        follower.truncate_to(t.offset).await.unwrap();
        return true;
    }
    if fetch_offset >= leader.log_end_offset() {
        return false;
    }
    let read = leader.read(fetch_offset, max_bytes, ReadBound::LogEnd, true).await.unwrap();
    let bytes = read.to_vec().await.unwrap();
    follower.append_as_follower(&bytes).await.unwrap().is_some()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_follower_always_ends_identical_to_its_leader(
        rounds in proptest::collection::vec((1usize..4, 0usize..4, any::<bool>(), 200usize..3000), 1..8)
    ) {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let outcome = run(async {
            let logs = [open(a_dir.path()).await, open(b_dir.path()).await];
            let mut leader = 0usize;
            let mut epoch = 0i32;
            let mut tag = 0i64;
            for (appended, lost, switch, max_bytes) in rounds {
                let follower = 1 - leader;
                // The leader appends; the follower catches up.
                for _ in 0..appended {
                    tag += 1;
                    logs[leader].append(&build_batch_of_size(0, 1 + (tag % 3) as usize, 40, tag), epoch).await.unwrap();
                }
                let mut steps = 0;
                while fetch_once(&logs[leader], epoch, &logs[follower], max_bytes).await {
                    steps += 1;
                    assert!(steps < 200, "the follower never caught up");
                }
                if all_bytes(&logs[leader]).await != all_bytes(&logs[follower]).await {
                    return Err(format!("diverged at epoch {epoch}"));
                }
                if logs[leader].leader_epoch_entries() != logs[follower].leader_epoch_entries() {
                    return Err(format!("epochs differ at epoch {epoch}"));
                }
                // Committed so far: both have it.
                let committed = logs[leader].log_end_offset();
                logs[0].set_high_watermark(committed);
                logs[1].set_high_watermark(committed);
                // The leader appends what nobody fetches, then (maybe) loses its leadership.
                for _ in 0..lost {
                    tag += 1;
                    logs[leader].append(&build_batch_of_size(0, 2, 40, tag), epoch).await.unwrap();
                }
                epoch += 1;
                if switch {
                    leader = follower;
                }
            }
            // A last round under the final leader.
            let follower = 1 - leader;
            logs[leader].append(&build_batch_of_size(0, 1, 40, 0), epoch).await.unwrap();
            let mut steps = 0;
            while fetch_once(&logs[leader], epoch, &logs[follower], 1000).await {
                steps += 1;
                assert!(steps < 200, "the follower never caught up");
            }
            if all_bytes(&logs[leader]).await != all_bytes(&logs[follower]).await {
                return Err("diverged at the end".into());
            }
            if logs[leader].leader_epoch_entries() != logs[follower].leader_epoch_entries() {
                return Err("epochs differ at the end".into());
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }
}
