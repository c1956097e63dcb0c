//! DescribeLogDirs (v1–4): what `kafka-log-dirs` and monitoring read for "disk per broker" —
//! each log directory with the bytes its partitions' segments take, and (v4, KIP-827) the
//! total and usable bytes of the file system it is on.
//!
//! sluice has one log directory: the data dir (`log.dirs` / `--data-dir`); every partition's
//! directory is directly under it. So the answer is one result, its path absolute as Kafka's
//! are. Per partition, as Kafka's `ReplicaManager.describeLogDirs`: `partition_size` is the
//! log's size (its segment files' bytes, not indexes or checkpoints), `offset_lag` is
//! `max(high watermark − log end offset, 0)` (0 on a leader), and `is_future_key` is false —
//! sluice has no future replicas (AlterReplicaLogDirs moves between directories of one
//! broker, and there is only one). A null topic list asks for every partition, an empty one for
//! none. Partitions live on their owner shards: one bounded call per shard gathers them.
//!
//! `total_bytes`/`usable_bytes` come from `statvfs(2)` on glommio's blocking pool (never on the
//! shard thread); -1 (Kafka's "unknown") if it fails. Authorization (DESCRIBE on the cluster,
//! else CLUSTER_AUTHORIZATION_FAILED and no results) is in
//! [`crate::security::request_authorization`].
//!
//! Owns: the request/response mapping. Must never: touch a partition off its owner shard, or
//! run a blocking syscall on a shard thread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use sluice_engine::checkpoint_file::blocking;

use crate::handlers::{codes, str_bytes};
use crate::shard_context::ShardContext;

/// Kafka's `DescribeLogDirsResponse.UNKNOWN_VOLUME_BYTES`.
pub const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// Which partitions the request asks for: `None` every one, else these per topic.
type PartitionFilter = Option<BTreeMap<String, BTreeSet<i32>>>;

/// One partition as its owner shard reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDiskUsage {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub offset_lag: i64,
}

pub async fn handle(ctx: &Rc<ShardContext>, request: DescribeLogDirsRequest, _version: i16) -> DescribeLogDirsResponse {
    let filter: PartitionFilter = request.topics.map(|topics| {
        let mut wanted: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for t in topics {
            wanted.entry(t.topic.0.to_string()).or_default().extend(t.partitions);
        }
        wanted
    });
    let filter = Arc::new(filter);
    let per_shard = ctx
        .mesh
        .call_all(move || {
            let filter = filter.clone();
            async move { local_partitions(&ShardContext::current(), &filter) }
        })
        .await;
    let mut usage: Vec<PartitionDiskUsage> = Vec::new();
    for (shard, result) in per_shard.into_iter().enumerate() {
        match result {
            Ok(partitions) => usage.extend(partitions),
            Err(e) => sluice_engine::warn_limited!(shard, error = %e, "DescribeLogDirs: a shard did not answer"),
        }
    }
    let (path, total_bytes, usable_bytes) = volume_of(ctx.config.data_dir.clone()).await;
    let result = DescribeLogDirsResult::default()
        .with_error_code(codes::NONE)
        .with_log_dir(str_bytes(path))
        .with_topics(group_by_topic(usage))
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    DescribeLogDirsResponse::default().with_throttle_time_ms(0).with_error_code(codes::NONE).with_results(vec![result])
}

/// This shard's partitions that `filter` selects.
fn local_partitions(ctx: &ShardContext, filter: &PartitionFilter) -> Vec<PartitionDiskUsage> {
    ctx.storage
        .partitions()
        .into_iter()
        .filter(|log| {
            filter.as_ref().is_none_or(|f| f.get(log.topic()).is_some_and(|ps| ps.contains(&log.partition())))
        })
        .map(|log| PartitionDiskUsage {
            topic: log.topic().to_string(),
            partition: log.partition(),
            size_bytes: log.size_bytes(),
            offset_lag: (log.high_watermark() - log.log_end_offset()).max(0),
        })
        .collect()
}

/// Partitions grouped by topic, both in order (a stable answer).
pub fn group_by_topic(mut usage: Vec<PartitionDiskUsage>) -> Vec<DescribeLogDirsTopic> {
    usage.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for p in usage {
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(p.partition)
            .with_partition_size(i64::try_from(p.size_bytes).unwrap_or(i64::MAX))
            .with_offset_lag(p.offset_lag)
            .with_is_future_key(false);
        match topics.last_mut() {
            Some(t) if *t.name.0 == *p.topic => t.partitions.push(partition),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(p.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

/// The data dir's absolute path and its file system's total and usable bytes (`statvfs` on the
/// blocking pool; -1 each if it fails).
async fn volume_of(data_dir: PathBuf) -> (String, i64, i64) {
    let shown = data_dir.display().to_string();
    let answer = blocking(move || {
        let absolute = std::path::absolute(&data_dir)?;
        let (total, usable) = statvfs_bytes(&absolute)?;
        Ok((absolute.display().to_string(), total, usable))
    })
    .await;
    match answer {
        Ok(answer) => answer,
        Err(e) => {
            sluice_engine::warn_limited!(dir = %shown, error = %e, "DescribeLogDirs: statvfs failed");
            (shown, UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
        }
    }
}

/// Total and usable (available to unprivileged users, as Java's `FileStore.getUsableSpace`)
/// bytes of the file system holding `path`. Blocking: call on the blocking pool only.
pub fn statvfs_bytes(path: &std::path::Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; c_path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fragment = stat.f_frsize as u128;
    let clamp = |blocks: u128| i64::try_from(blocks * fragment).unwrap_or(i64::MAX);
    Ok((clamp(stat.f_blocks as u128), clamp(stat.f_bavail as u128)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(topic: &str, partition: i32, size_bytes: u64) -> PartitionDiskUsage {
        PartitionDiskUsage { topic: topic.into(), partition, size_bytes, offset_lag: 0 }
    }

    #[test]
    fn partitions_from_every_shard_are_grouped_by_topic_in_order() {
        let topics = group_by_topic(vec![usage("b", 1, 10), usage("a", 2, 5), usage("b", 0, 7), usage("a", 0, 0)]);
        let shape: Vec<(String, Vec<(i32, i64)>)> = topics
            .iter()
            .map(|t| {
                (t.name.0.to_string(), t.partitions.iter().map(|p| (p.partition_index, p.partition_size)).collect())
            })
            .collect();
        assert_eq!(shape, vec![("a".into(), vec![(0, 0), (2, 5)]), ("b".into(), vec![(0, 7), (1, 10)])]);
        assert!(topics.iter().flat_map(|t| &t.partitions).all(|p| !p.is_future_key && p.offset_lag == 0));
    }

    #[test]
    fn statvfs_of_a_real_directory_is_sane() {
        let dir = tempfile::tempdir().unwrap();
        let (total, usable) = statvfs_bytes(dir.path()).unwrap();
        assert!(total > 0 && usable >= 0 && usable <= total, "total {total} usable {usable}");
        assert!(statvfs_bytes(std::path::Path::new("/no/such/dir/at/all")).is_err());
    }
}
