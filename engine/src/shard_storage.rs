//! The partitions one shard owns, and the shard's storage housekeeping timers.
//!
//! Owns: the map of this shard's [`PartitionLog`]s, the shard's [`MemoryBudget`] their tail
//! caches share, and the background tasks that run `flush.ms` syncs, retention and
//! recovery-point checkpoints. Which shard owns a partition is [`owner_shard`] — a stable hash,
//! so every shard can compute it without asking anyone.
//!
//! Must never: touch a partition owned by another shard (callers go through
//! [`crate::shard::ShardMesh::call`]), or let its partitions' caches exceed the memory budget
//! (they shrink under pressure, see [`crate::tail_cache`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use crate::checkpoint_file::blocking;
use crate::cleaner::clean_pass::CleanPass;
use crate::cleaner::shard_cleaner::{CleanerOptions, CleanerTotals, ShardCleaner};
use crate::clock::now_ms;
use crate::log_config::LogConfig;
use crate::memory_budget::{install_shard_budget, MemoryBudget};
use crate::partition_log::{parse_partition_dir_name, LogError, LogOptions, PartitionLog};
use crate::retry_backoff::RetryBackoff;

/// Name of the marker a clean shutdown leaves in the data directory.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean_shutdown";

/// The shard that owns `topic`/`partition` among `shard_count` shards. Consecutive partitions
/// of one topic land on consecutive shards.
pub fn owner_shard(topic: &str, partition: i32, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    let topic_hash = crate::crc::crc32c(topic.as_bytes()) as u64;
    ((topic_hash + partition.max(0) as u64) % shard_count as u64) as usize
}

/// Start-up settings of a shard's storage.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    pub data_dir: PathBuf,
    pub log_options: LogOptions,
    pub memory_budget_bytes: u64,
    /// `log.retention.check.interval.ms` (Kafka default 300000).
    pub retention_check_interval_ms: u64,
    /// How often `flush.ms` is checked.
    pub flush_check_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms` (Kafka default 60000).
    pub recovery_point_checkpoint_interval_ms: u64,
    /// Log compaction (`log.cleaner.*`).
    pub cleaner: CleanerOptions,
}

impl StorageOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> StorageOptions {
        StorageOptions {
            data_dir: data_dir.into(),
            log_options: LogOptions::default(),
            memory_budget_bytes: 1 << 30,
            retention_check_interval_ms: 300_000,
            flush_check_interval_ms: 100,
            recovery_point_checkpoint_interval_ms: 60_000,
            cleaner: CleanerOptions::default(),
        }
    }
}

type PartitionKey = (String, i32);

struct OwnedPartition {
    log: Rc<PartitionLog>,
}

/// One shard's partitions. See the module docs.
pub struct ShardStorage {
    shard: usize,
    shard_count: usize,
    options: StorageOptions,
    budget: Rc<MemoryBudget>,
    partitions: RefCell<HashMap<PartitionKey, OwnedPartition>>,
    /// Partitions whose writes failed, and when to try to recover each (see
    /// [`Housekeeping::RecoverWrites`]).
    write_recovery: RefCell<HashMap<PartitionKey, RetryBackoff>>,
    /// [`crate::segment_writer::failed_writer_count`] when partitions were last looked at.
    failed_writers_seen: Cell<u64>,
    /// Compacts the shard's `cleanup.policy=compact` partitions.
    cleaner: ShardCleaner,
    stopping: Cell<bool>,
}

/// The cleaner's task-queue shares (glommio's default queue has 1000).
const CLEANER_TASK_QUEUE_SHARES: usize = 100;
/// How often the shard looks for partitions whose writes failed.
pub const WRITE_RECOVERY_CHECK_INTERVAL_MS: u64 = 50;
/// First and longest wait between recoveries of one partition while its disk stays full.
pub const WRITE_RECOVERY_FIRST_DELAY_MS: i64 = 100;
pub const WRITE_RECOVERY_MAX_DELAY_MS: i64 = 5_000;

impl ShardStorage {
    /// Opens every partition directory under the data dir that this shard owns. `config_for`
    /// gives each topic's config from the metadata image; a directory of a topic it does not
    /// know is left untouched (and logged), never deleted.
    pub async fn open(
        shard: usize,
        shard_count: usize,
        options: StorageOptions,
        clean_shutdown: bool,
        config_for: &dyn Fn(&str) -> Option<LogConfig>,
    ) -> Result<Rc<ShardStorage>, LogError> {
        let budget = MemoryBudget::new(options.memory_budget_bytes);
        // Tail caches of this shard's partitions draw from it (see `tail_cache`).
        install_shard_budget(budget.clone());
        let cleaner_options = options.cleaner;
        let storage = Rc::new(ShardStorage {
            shard,
            shard_count,
            budget,
            options,
            partitions: RefCell::new(HashMap::new()),
            write_recovery: RefCell::new(HashMap::new()),
            failed_writers_seen: Cell::new(0),
            cleaner: ShardCleaner::new(cleaner_options),
            stopping: Cell::new(false),
        });
        let data_dir = storage.options.data_dir.clone();
        let names: Vec<String> = blocking(move || {
            std::fs::create_dir_all(&data_dir)?;
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&data_dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            Ok(names)
        })
        .await
        .map_err(|e| LogError::Io(e.to_string()))?;
        let started = std::time::Instant::now();
        let mut opened = 0usize;
        for name in names {
            let Some((topic, partition)) = parse_partition_dir_name(&name) else { continue };
            if owner_shard(&topic, partition, shard_count) != shard {
                continue;
            }
            let Some(config) = config_for(&topic) else {
                crate::warn_limited!(dir = %name, "partition directory of a topic missing from metadata; left untouched");
                continue;
            };
            storage.open_partition(&topic, partition, config, clean_shutdown).await?;
            opened += 1;
        }
        tracing::info!(
            shard,
            opened,
            clean_shutdown,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shard storage open"
        );
        Ok(storage)
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    pub fn memory_budget(&self) -> &Rc<MemoryBudget> {
        &self.budget
    }

    async fn open_partition(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
        clean: bool,
    ) -> Result<Rc<PartitionLog>, LogError> {
        debug_assert_eq!(owner_shard(topic, partition, self.shard_count), self.shard);
        let log = PartitionLog::open(&self.options.data_dir, topic, partition, config, self.options.log_options, clean)
            .await?;
        self.partitions.borrow_mut().insert((topic.to_string(), partition), OwnedPartition { log: log.clone() });
        Ok(log)
    }

    /// Returns the partition, creating its directory and first segment if new.
    pub async fn create_partition(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Rc<PartitionLog>, LogError> {
        if let Some(log) = self.partition(topic, partition) {
            return Ok(log);
        }
        self.open_partition(topic, partition, config, true).await
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).map(|p| p.log.clone())
    }

    /// All partitions of this shard.
    pub fn partitions(&self) -> Vec<Rc<PartitionLog>> {
        self.partitions.borrow().values().map(|p| p.log.clone()).collect()
    }

    /// Deletes a partition's files (DeleteTopics). Returns false if it was not here.
    pub async fn delete_partition(&self, topic: &str, partition: i32) -> Result<bool, LogError> {
        let removed = self.partitions.borrow_mut().remove(&(topic.to_string(), partition));
        match removed {
            Some(p) => {
                self.cleaner.forget(topic, partition);
                p.log.delete().await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Starts the housekeeping timers; they stop when [`ShardStorage::close_all`] runs.
    pub fn spawn_background_tasks(self: &Rc<Self>) {
        let intervals = [
            (self.options.flush_check_interval_ms, Housekeeping::Flush),
            (self.options.retention_check_interval_ms, Housekeeping::Retention),
            (self.options.recovery_point_checkpoint_interval_ms, Housekeeping::Checkpoint),
            (WRITE_RECOVERY_CHECK_INTERVAL_MS, Housekeeping::RecoverWrites),
        ];
        if self.options.cleaner.enabled {
            self.spawn_cleaner();
        }
        for (interval_ms, kind) in intervals {
            let storage = self.clone();
            glommio::spawn_local(async move {
                let interval = Duration::from_millis(interval_ms.max(1));
                while !storage.stopping.get() {
                    glommio::timer::sleep(interval).await;
                    if storage.stopping.get() {
                        break;
                    }
                    storage.run_housekeeping(kind).await;
                }
            })
            .detach();
        }
    }

    /// The cleaner loop, in a task queue of its own with a tenth of the default queue's shares:
    /// under load it takes what produce and fetch leave. It cleans while a log is due and
    /// waits `log.cleaner.backoff.ms` when none is (or a pass failed).
    fn spawn_cleaner(self: &Rc<Self>) {
        let storage = self.clone();
        let queue = glommio::executor().create_task_queue(
            glommio::Shares::Static(CLEANER_TASK_QUEUE_SHARES),
            glommio::Latency::NotImportant,
            "cleaner",
        );
        let cleaner = glommio::spawn_local_into(
            async move {
                let backoff = Duration::from_millis(storage.options.cleaner.backoff_ms.max(1));
                while !storage.stopping.get() {
                    match storage.clean_once().await {
                        // Progress: look for the next log at once.
                        Some(Ok(pass)) if pass.end_offset > pass.first_dirty_offset => glommio::yield_if_needed().await,
                        // Nothing due, a failure, or a pass that moved nothing (it would be
                        // chosen again at once): wait.
                        _ => glommio::timer::sleep(backoff).await,
                    }
                }
            },
            queue,
        );
        match cleaner {
            Ok(task) => {
                task.detach();
            }
            Err(e) => tracing::error!(error = %e, "cannot start the log cleaner; compacted topics will not be cleaned"),
        }
    }

    /// Cleans the dirtiest compacted partition that is due, once (`None`: none is).
    pub async fn clean_once(&self) -> Option<Result<CleanPass, LogError>> {
        if self.stopping.get() {
            return None;
        }
        self.cleaner.clean_dirtiest(&self.partitions(), now_ms()).await
    }

    /// What the cleaner did since start.
    pub fn cleaner_totals(&self) -> CleanerTotals {
        self.cleaner.totals()
    }

    async fn run_housekeeping(&self, kind: Housekeeping) {
        let now = now_ms();
        if let Housekeeping::RecoverWrites = kind {
            return self.recover_failed_writes(now).await;
        }
        for log in self.partitions() {
            let result = match kind {
                Housekeeping::Flush => log.flush_if_due(now).await,
                Housekeeping::Retention => log.apply_retention(now).await.map(|_| ()),
                Housekeeping::Checkpoint => log.checkpoint_recovery_point().await,
                Housekeeping::RecoverWrites => Ok(()),
            };
            if let Err(e) = result {
                if !log.is_closed() {
                    crate::error_limited!(topic = log.topic(), partition = log.partition(), error = %e, ?kind, "storage housekeeping failed");
                }
            }
        }
    }

    /// Partitions whose writes failed (a full disk) recover on their own: each is cut back to
    /// its durable offset with a new writer, first soon after the failure, then with a doubling
    /// wait while writes keep failing; a partition whose writes succeed again starts afresh.
    async fn recover_failed_writes(&self, now: i64) {
        // Nothing failed since the last look and nothing is recovering: no need to ask 10,000
        // partitions every 50 ms.
        let failed_writers = crate::segment_writer::failed_writer_count();
        if failed_writers == self.failed_writers_seen.replace(failed_writers) && self.write_recovery.borrow().is_empty()
        {
            return;
        }
        let failed: Vec<Rc<PartitionLog>> = self.partitions().into_iter().filter(|l| l.write_failed()).collect();
        {
            let failed_keys: std::collections::HashSet<PartitionKey> =
                failed.iter().map(|l| (l.topic().to_string(), l.partition())).collect();
            // Healthy for a while (or gone): the next failure starts with the first delay.
            self.write_recovery.borrow_mut().retain(|key, backoff| failed_keys.contains(key) || !backoff.settled(now));
        }
        for log in failed {
            let key = (log.topic().to_string(), log.partition());
            let due = {
                let mut pending = self.write_recovery.borrow_mut();
                let backoff = pending.entry(key.clone()).or_insert_with(|| {
                    RetryBackoff::new(now, WRITE_RECOVERY_FIRST_DELAY_MS, WRITE_RECOVERY_MAX_DELAY_MS)
                });
                let due = backoff.is_due(now);
                if due {
                    backoff.attempted(now);
                }
                due
            };
            if !due {
                continue;
            }
            match log.recover_from_write_failure().await {
                Ok(_) => {}
                Err(e) if log.is_closed() => tracing::debug!(error = %e, "log closed during write recovery"),
                Err(e) => {
                    crate::warn_limited!(topic = log.topic(), partition = log.partition(), error = %e, "write recovery failed; trying again later")
                }
            }
        }
    }

    /// Runs retention on every partition now (admin and tests).
    pub async fn apply_retention_now(&self) -> usize {
        let mut deleted = 0;
        for log in self.partitions() {
            deleted += log.apply_retention(now_ms()).await.unwrap_or(0);
        }
        deleted
    }

    /// Clean close of every partition; the caller writes the clean-shutdown marker once every
    /// shard returned Ok.
    pub async fn close_all(&self) -> Result<(), LogError> {
        use futures::StreamExt;
        self.stopping.set(true);
        let first_error = RefCell::new(None);
        // Closes overlap: each one waits on a few fdatasyncs and directory fsyncs (10,000
        // partitions closed one after another took 45 s).
        futures::stream::iter(self.partitions())
            .for_each_concurrent(CONCURRENT_CLOSES, |log| {
                let first_error = &first_error;
                async move {
                    if let Err(e) = log.close().await {
                        crate::error_limited!(topic = log.topic(), partition = log.partition(), error = %e, "close failed");
                        first_error.borrow_mut().get_or_insert(e);
                    }
                }
            })
            .await;
        first_error.into_inner().map_or(Ok(()), Err)
    }
}

/// Partitions a shard closes at once at shutdown.
pub const CONCURRENT_CLOSES: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Housekeeping {
    Flush,
    Retention,
    Checkpoint,
    /// Recover partitions whose writes failed ([`ShardStorage::recover_failed_writes`]).
    RecoverWrites,
}

/// Whether the data dir holds a clean-shutdown marker (checked before shards start; the main
/// thread may block).
pub fn take_clean_shutdown_marker(data_dir: &Path) -> std::io::Result<bool> {
    std::fs::create_dir_all(data_dir)?;
    let marker = data_dir.join(CLEAN_SHUTDOWN_MARKER);
    match std::fs::remove_file(&marker) {
        // The removal must be on disk before any log changes: a marker that a crash brings
        // back would let the next start skip recovery of logs this run left unclean.
        Ok(()) => crate::checkpoint_file::sync_dir(data_dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Leaves the clean-shutdown marker (main thread, after every shard closed cleanly).
pub fn write_clean_shutdown_marker(data_dir: &Path) -> std::io::Result<()> {
    crate::checkpoint_file::write_atomic_blocking(&data_dir.join(CLEAN_SHUTDOWN_MARKER), b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_stable_and_spreads_partitions() {
        for n in 1..5 {
            for p in 0..16 {
                let s = owner_shard("orders", p, n);
                assert!(s < n);
                assert_eq!(s, owner_shard("orders", p, n));
            }
        }
        let shards: std::collections::HashSet<_> = (0..4).map(|p| owner_shard("t", p, 4)).collect();
        assert_eq!(shards.len(), 4, "consecutive partitions land on distinct shards");
    }
}
