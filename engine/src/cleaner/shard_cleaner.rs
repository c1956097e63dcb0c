//! The shard's cleaner: picks the dirtiest compacted log it owns and cleans it, one pass at a
//! time, from a low-priority task queue, and remembers per log where the last pass stopped
//! (the `cleaner-offset.checkpoint` file in the partition directory, Kafka's
//! `cleaner-offset-checkpoint`).
//!
//! Owns: the checkpoints, the one key map of the shard (bounded by its share of
//! `log.cleaner.dedupe.buffer.size`, allocated as it fills and kept), and the cleaner's
//! running totals. Must never: clean two logs at once, hold a `RefCell` borrow across an await,
//! or let a failed pass stop later ones (a log that fails is tried again after the back-off).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::checkpoint_file::{read_small, write_atomic};
use crate::leader_epoch_cache::{decode_offset_checkpoint, encode_offset_checkpoint};
use crate::partition_log::{LogError, PartitionLog};

use super::choice::{cleanable, dirtiest, LogInputs};
use super::clean_pass::{clean_log, CleanPass, PassInputs};
use super::offset_map::OffsetMap;

/// The file, in a partition's directory, holding where the next cleaning starts.
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset.checkpoint";

/// Kafka's `log.cleaner.*` settings, for one shard.
#[derive(Clone, Copy, Debug)]
pub struct CleanerOptions {
    /// `log.cleaner.enable` (default true).
    pub enabled: bool,
    /// `log.cleaner.backoff.ms` (default 15000): the wait when no log needs cleaning.
    pub backoff_ms: u64,
    /// This shard's share of `log.cleaner.dedupe.buffer.size` (Kafka: 128 MiB per broker).
    pub dedupe_buffer_bytes: usize,
}

impl Default for CleanerOptions {
    fn default() -> Self {
        CleanerOptions { enabled: true, backoff_ms: 15_000, dedupe_buffer_bytes: 128 << 20 }
    }
}

/// Totals since start (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanerTotals {
    pub passes: u64,
    pub failed_passes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
}

type PartitionKey = (String, i32);

/// See the module docs.
pub struct ShardCleaner {
    options: CleanerOptions,
    checkpoints: RefCell<HashMap<PartitionKey, Option<i64>>>,
    map: RefCell<Option<OffsetMap>>,
    totals: Cell<CleanerTotals>,
}

impl ShardCleaner {
    pub fn new(options: CleanerOptions) -> ShardCleaner {
        ShardCleaner {
            options,
            checkpoints: RefCell::new(HashMap::new()),
            map: RefCell::new(None),
            totals: Cell::new(CleanerTotals::default()),
        }
    }

    pub fn options(&self) -> CleanerOptions {
        self.options
    }

    pub fn totals(&self) -> CleanerTotals {
        self.totals.get()
    }

    /// Where the last cleaning of `log` stopped (`None`: never cleaned), read from its file
    /// the first time.
    async fn checkpoint(&self, log: &PartitionLog) -> Option<i64> {
        let key = (log.topic().to_string(), log.partition());
        if let Some(known) = self.checkpoints.borrow().get(&key) {
            return *known;
        }
        let offset = match read_small(&log.dir().join(CLEANER_CHECKPOINT_FILE)).await {
            Ok(Some(bytes)) => decode_offset_checkpoint(&String::from_utf8_lossy(&bytes)).ok(),
            Ok(None) => None,
            Err(e) => {
                crate::warn_limited!(topic = log.topic(), partition = log.partition(), error = %e, "cleaner checkpoint unreadable; cleaning from the log start");
                None
            }
        };
        self.checkpoints.borrow_mut().insert(key, offset);
        offset
    }

    /// Cleans the dirtiest of `logs` that is due; `None` when none is.
    pub async fn clean_dirtiest(&self, logs: &[Rc<PartitionLog>], now_ms: i64) -> Option<Result<CleanPass, LogError>> {
        let mut candidates = Vec::new();
        for log in logs {
            let config = log.config();
            if !config.cleanup_policy_compact() || log.is_closed() {
                continue;
            }
            let inputs = LogInputs {
                now_ms,
                log_start_offset: log.log_start_offset(),
                checkpointed_dirty_offset: self.checkpoint(log).await,
                last_stable_offset: log.last_stable_offset(),
                min_compaction_lag_ms: config.min_compaction_lag_ms,
                max_compaction_lag_ms: config.max_compaction_lag_ms,
                min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
            };
            candidates.push((
                log.clone(),
                cleanable(&log.segment_extents(), &inputs),
                config.min_cleanable_dirty_ratio,
            ));
        }
        let ratios: Vec<_> = candidates.iter().map(|(_, c, ratio)| (*c, *ratio)).collect();
        let (log, section, _) = candidates.swap_remove(dirtiest(&ratios)?);
        let mut map =
            self.map.borrow_mut().take().unwrap_or_else(|| OffsetMap::with_memory(self.options.dedupe_buffer_bytes));
        let started = std::time::Instant::now();
        let result = clean_log(&log, &section, &mut map, PassInputs { now_ms }).await;
        map.clear();
        *self.map.borrow_mut() = Some(map);
        let mut totals = self.totals.get();
        match &result {
            Ok(pass) => {
                totals.passes += 1;
                totals.bytes_read += pass.bytes_before;
                totals.bytes_written += pass.bytes_after;
                totals.records_removed += pass.records_removed;
                let path = log.dir().join(CLEANER_CHECKPOINT_FILE);
                if let Err(e) = write_atomic(&path, encode_offset_checkpoint(pass.end_offset).as_bytes()).await {
                    // The next pass cleans the same section again: wasted work, no harm.
                    crate::warn_limited!(topic = log.topic(), partition = log.partition(), error = %e, "cleaner checkpoint not written");
                }
                self.checkpoints.borrow_mut().insert((log.topic().to_string(), log.partition()), Some(pass.end_offset));
                tracing::info!(
                    topic = log.topic(),
                    partition = log.partition(),
                    dirty_ratio = format_args!("{:.2}", section.dirty_ratio()),
                    from = pass.first_dirty_offset,
                    to = pass.end_offset,
                    segments = format_args!("{} -> {}", pass.segments_before, pass.segments_after),
                    bytes = format_args!("{} -> {}", pass.bytes_before, pass.bytes_after),
                    records_removed = pass.records_removed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "cleaned log"
                );
            }
            Err(e) if log.is_closed() => tracing::debug!(error = %e, "log closed while it was cleaned"),
            Err(e) => {
                totals.failed_passes += 1;
                crate::warn_limited!(topic = log.topic(), partition = log.partition(), error = %e, "cleaning failed; trying again later");
            }
        }
        self.totals.set(totals);
        Some(result)
    }

    /// Forgets a deleted partition's checkpoint.
    pub fn forget(&self, topic: &str, partition: i32) {
        self.checkpoints.borrow_mut().remove(&(topic.to_string(), partition));
    }
}
