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
        let mut store = LogStore { dir: dir.to_path_buf(), file, entries: BTreeMap::new(), last_purged: None, vote };
        for record in records {
            store.apply_record(record);
        }
        sluice_engine::checkpoint_file::sync_dir(dir)?;
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
        for record in records {
            self.apply_record(record);
        }
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
        self.write(vec![LogRecord::Purge { upto }])
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
