//! The metadata log and the vote on disk, under `<data-dir>/__cluster_metadata-0/`:
//! `raft.log` is append-only records — an entry, a truncation ("entries from index I on are
//! gone") or a purge ("entries up to log id L are gone") — each framed as a 4-byte big-endian
//! length, a 4-byte CRC-32C of the body and a JSON body; `vote.json` is rewritten atomically.
//! Every change is fsynced before it returns (raft's safety needs that).
//!
//! Owns: those files and the in-memory copy of the live entries. At open, records are
//! replayed; a torn or corrupt tail (a crash mid-append) is cut off at the last whole record,
//! with one log line. Must never: run on a shard thread (it blocks on fsync: it is the
//! controller thread's), or return an entry that was truncated or purged.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use openraft::{Entry, LogId, Vote};
use serde::{Deserialize, Serialize};

use super::MetadataRaft;

/// Largest record (an entry is one metadata command: small).
pub const MAX_RECORD_BYTES: usize = 16 << 20;
const LOG_FILE: &str = "raft.log";
/// Dead records tolerated in the file before it is compacted.
const COMPACT_MIN_DEAD_RECORDS: usize = 1024;
const VOTE_FILE: &str = "vote.json";

#[derive(Serialize, Deserialize)]
enum LogRecord {
    Entry(Entry<MetadataRaft>),
    Truncate { since: u64 },
    Purge { upto: LogId<u64> },
}

pub struct LogStore {
    dir: PathBuf,
    file: File,
    /// Records in the file (live entries, truncated and purged ones, and the markers): the
    /// file is rewritten with only the live entries when most of it is dead.
    records_in_file: usize,
    entries: BTreeMap<u64, Entry<MetadataRaft>>,
    last_purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
}

fn encode(record: &LogRecord) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    if body.len() > MAX_RECORD_BYTES {
        return Err(std::io::Error::other(format!("metadata log record of {} bytes", body.len())));
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Whole records from the start of `bytes`, and how many bytes they take (the rest is a torn or
/// corrupt tail).
fn decode_all(bytes: &[u8]) -> (Vec<LogRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4"));
        if len > MAX_RECORD_BYTES || bytes.len() - at - 8 < len {
            break;
        }
        let body = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        match serde_json::from_slice(body) {
            Ok(record) => records.push(record),
            Err(_) => break,
        }
        at += 8 + len;
    }
    (records, at)
}

impl LogStore {
    /// Opens (creating) the log in `dir`, replaying it and cutting off a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let vote = match std::fs::read(dir.join(VOTE_FILE)) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let path = dir.join(LOG_FILE);
        // An interrupted compaction left its temp file; the log itself is whole.
        sluice_engine::checkpoint_file::remove_leftover_temp_blocking(&path)?;
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, whole) = decode_all(&bytes);
        if whole < bytes.len() {
            tracing::warn!(
                path = %path.display(), kept_bytes = whole, dropped_bytes = bytes.len() - whole,
                "metadata log has a torn or corrupt tail (a crash during an append); cutting it off"
            );
            file.set_len(whole as u64)?;
            file.sync_all()?;
        }
        let records_in_file = records.len();
        let mut store = LogStore {
            dir: dir.to_path_buf(),
            file,
            records_in_file,
            entries: BTreeMap::new(),
            last_purged: None,
            vote,
        };
        for record in records {
            store.apply_record(record);
        }
        sluice_engine::checkpoint_file::sync_dir(dir)?;
        store.compact_if_mostly_dead()?;
        Ok(store)
    }

    fn apply_record(&mut self, record: LogRecord) {
        match record {
            LogRecord::Entry(entry) => {
                self.entries.insert(entry.log_id.index, entry);
            }
            LogRecord::Truncate { since } => {
                self.entries.split_off(&since);
            }
            LogRecord::Purge { upto } => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                if self.last_purged.is_none_or(|p| p.index < upto.index) {
                    self.last_purged = Some(upto);
                }
            }
        }
    }

    fn write(&mut self, records: Vec<LogRecord>) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for record in &records {
            bytes.extend_from_slice(&encode(record)?);
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.records_in_file += records.len();
        for record in records {
            self.apply_record(record);
        }
        Ok(())
    }

    /// Rewrites the file with only the live entries (and the purge point) when more than half
    /// of its records — and over [`COMPACT_MIN_DEAD_RECORDS`] — are dead: written to a temp file,
    /// fsynced and renamed over the log, so a crash leaves the old or the new file whole.
    fn compact_if_mostly_dead(&mut self) -> std::io::Result<()> {
        let live = self.entries.len() + 1;
        let dead = self.records_in_file.saturating_sub(live);
        if dead <= COMPACT_MIN_DEAD_RECORDS || dead <= live {
            return Ok(());
        }
        let mut records: Vec<LogRecord> = Vec::with_capacity(live);
        if let Some(upto) = self.last_purged {
            records.push(LogRecord::Purge { upto });
        }
        records.extend(self.entries.values().cloned().map(LogRecord::Entry));
        let mut bytes = Vec::new();
        for record in &records {
            bytes.extend_from_slice(&encode(record)?);
        }
        let path = self.dir.join(LOG_FILE);
        sluice_engine::checkpoint_file::write_atomic_blocking(&path, &bytes)?;
        self.file = OpenOptions::new().read(true).append(true).open(&path)?;
        tracing::info!(dead_records = dead, live_records = records.len(), "metadata log file compacted");
        self.records_in_file = records.len();
        Ok(())
    }

    pub fn append(&mut self, entries: Vec<Entry<MetadataRaft>>) -> std::io::Result<()> {
        self.write(entries.into_iter().map(LogRecord::Entry).collect())
    }

    /// Drops entries from `since` on (a follower's conflicting tail).
    pub fn truncate_since(&mut self, since: u64) -> std::io::Result<()> {
        self.write(vec![LogRecord::Truncate { since }])
    }

    /// Drops entries up to `upto` (covered by the state machine).
    pub fn purge_upto(&mut self, upto: LogId<u64>) -> std::io::Result<()> {
        self.write(vec![LogRecord::Purge { upto }])?;
        self.compact_if_mostly_dead()
    }

    pub fn save_vote(&mut self, vote: &Vote<u64>) -> std::io::Result<()> {
        let json = serde_json::to_vec(vote).map_err(std::io::Error::other)?;
        sluice_engine::checkpoint_file::write_atomic_blocking(&self.dir.join(VOTE_FILE), &json)?;
        self.vote = Some(*vote);
        Ok(())
    }

    pub fn vote(&self) -> Option<Vote<u64>> {
        self.vote
    }

    pub fn last_purged(&self) -> Option<LogId<u64>> {
        self.last_purged
    }

    pub fn last_log_id(&self) -> Option<LogId<u64>> {
        self.entries.values().next_back().map(|e| e.log_id).or(self.last_purged)
    }

    pub fn range(&self, range: impl std::ops::RangeBounds<u64>) -> Vec<Entry<MetadataRaft>> {
        self.entries.range(range).map(|(_, e)| e.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry<MetadataRaft> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(crate::metadata_image::MetadataCommand::AllocateProducerIds { count: 1 }),
        }
    }

    #[test]
    fn entries_truncations_purges_and_the_vote_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path()).unwrap();
            log.append((1..=5).map(|i| entry(1, i)).collect()).unwrap();
            log.truncate_since(4).unwrap();
            log.append(vec![entry(2, 4)]).unwrap();
            log.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), 1)).unwrap();
            log.save_vote(&Vote::new(2, 3)).unwrap();
        }
        let log = LogStore::open(dir.path()).unwrap();
        let indexes: Vec<(u64, u64)> =
            log.range(..).iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect();
        assert_eq!(indexes, vec![(1, 2), (1, 3), (2, 4)]);
        assert_eq!(log.last_purged().unwrap().index, 1);
        assert_eq!(log.vote(), Some(Vote::new(2, 3)));
        assert_eq!(log.last_log_id().unwrap().index, 4);
    }

    #[test]
    fn a_mostly_dead_file_is_compacted_and_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        log.append((1..=3000).map(|i| entry(1, i)).collect()).unwrap();
        let before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        log.purge_upto(LogId::new(CommittedLeaderId::new(1, 1), 2990)).unwrap();
        let after = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(after * 10 < before, "{before} -> {after}");
        log.append(vec![entry(2, 3001)]).unwrap();
        drop(log);
        let log = LogStore::open(dir.path()).unwrap();
        let indexes: Vec<u64> = log.range(..).iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (2991..=3001).collect::<Vec<_>>());
        assert_eq!(log.last_purged().unwrap().index, 2990);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_to_whole_records_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let (_, whole) = decode_all(&bytes);
            proptest::prop_assert!(whole <= bytes.len());
        }
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path()).unwrap();
            log.append((1..=3).map(|i| entry(1, i)).collect()).unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let whole = std::fs::read(&path).unwrap();
        // Half of a fourth record, then garbage.
        let mut torn = whole.clone();
        torn.extend_from_slice(&encode(&LogRecord::Entry(entry(1, 4))).unwrap()[..20]);
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(LogStore::open(dir.path()).unwrap().range(..).len(), 3);
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the tail is gone from the file too");
        let mut flipped = whole.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x55;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(LogStore::open(dir.path()).unwrap().range(..).len(), 2);
        std::fs::write(&path, [0xff; 64]).unwrap();
        assert_eq!(LogStore::open(dir.path()).unwrap().range(..).len(), 0);
    }
}
