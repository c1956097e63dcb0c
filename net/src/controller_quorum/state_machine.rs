//! The metadata log's state machine: the [`MetadataImage`] after every applied entry, durable
//! in `<data-dir>/__cluster_metadata-0/image.json` (with the last applied log id and
//! membership, rewritten atomically and fsynced after each applied batch), plus a bounded ring
//! of recently applied commands that broker-only nodes fetch.
//!
//! Owns: applying committed entries to the image (deterministically: a command that fails
//! validation changes nothing, on every node alike), snapshots (the serialized state) and
//! the fetch answers. Must never: do anything but blocking file I/O on the controller thread,
//! or apply an entry twice (entries at or below the last applied index are skipped).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use openraft::{BasicNode, EntryPayload, LogId, StoredMembership};
use serde::{Deserialize, Serialize};
use sluice_engine::log_config::LogConfig;

use super::{CommandOutcome, MetadataRaft};
use crate::metadata_image::{MetadataCommand, MetadataImage};

const IMAGE_FILE: &str = "image.json";
/// Recent commands kept for broker-only nodes' fetches (older ones are served as an image).
pub const RECENT_COMMANDS: usize = 4096;
/// Most commands in one fetch answer.
pub const MAX_FETCH_COMMANDS: usize = 512;

/// What is persisted (and what a snapshot holds).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Durable {
    pub image: MetadataImage,
    pub last_applied: Option<LogId<u64>>,
    pub membership: StoredMembership<u64, BasicNode>,
}

/// A committed command for the shards (or a whole image, after a snapshot).
#[derive(Clone, Debug)]
pub enum Applied {
    Command { index: u64, command: MetadataCommand },
    Image { index: u64, image: MetadataImage },
}

/// A fetch answer: the commands after the asked index, or the whole image when the ring no
/// longer reaches back that far.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FetchReply {
    pub entries: Vec<(LogId<u64>, Option<MetadataCommand>)>,
    pub image: Option<(MetadataImage, Option<LogId<u64>>)>,
}

pub struct StateMachine {
    pub durable: Durable,
    /// Whether applied commands go to the shards: off until the shards' starting image is taken
    /// (at registration, [`StateMachine::start_forwarding`]) — what is applied before is in
    /// that image, and queueing it could fill the bounded channel before anyone drains it.
    forward_to_shards: bool,
    recent: VecDeque<(LogId<u64>, Option<MetadataCommand>)>,
    path: PathBuf,
    defaults: LogConfig,
}

impl StateMachine {
    /// Loads the durable state from `dir` (a fresh one when absent).
    pub fn load(dir: &Path, defaults: LogConfig) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(IMAGE_FILE);
        sluice_engine::checkpoint_file::remove_leftover_temp_blocking(&path)?;
        let durable = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Durable { image: super::empty_image(), ..Default::default() }
            }
            Err(e) => return Err(e),
        };
        Ok(StateMachine { durable, forward_to_shards: false, recent: VecDeque::new(), path, defaults })
    }

    /// From now on applied commands are handed to the shards; returns the image and index the
    /// shards start from (taken atomically with the switch: nothing is missed or doubled).
    pub fn start_forwarding(&mut self) -> (MetadataImage, u64) {
        self.forward_to_shards = true;
        (self.durable.image.clone(), self.last_applied_index())
    }

    pub fn image(&self) -> &MetadataImage {
        &self.durable.image
    }

    pub fn last_applied_index(&self) -> u64 {
        self.durable.last_applied.map_or(0, |l| l.index)
    }

    /// Applies one committed entry; returns its outcome and the command for the shards (if it
    /// changed the image).
    pub fn apply(
        &mut self,
        log_id: LogId<u64>,
        payload: &EntryPayload<MetadataRaft>,
    ) -> (CommandOutcome, Option<Applied>) {
        let mut outcome = CommandOutcome { error: None, producer_id_start: self.durable.image.next_producer_id };
        if self.durable.last_applied.is_some_and(|l| l.index >= log_id.index) {
            return (outcome, None);
        }
        self.durable.last_applied = Some(log_id);
        let mut applied = None;
        let command = match payload {
            EntryPayload::Normal(command) => {
                match self.durable.image.apply(command, &self.defaults) {
                    Ok(()) => applied = Some(Applied::Command { index: log_id.index, command: command.clone() }),
                    Err(e) => outcome.error = Some(e),
                }
                outcome.error.is_none().then(|| command.clone())
            }
            EntryPayload::Membership(m) => {
                self.durable.membership = StoredMembership::new(Some(log_id), m.clone());
                None
            }
            EntryPayload::Blank => None,
        };
        self.remember(log_id, command);
        (outcome, applied.filter(|_| self.forward_to_shards))
    }

    /// Applies a command fetched from a voter (broker-only nodes).
    pub fn apply_fetched(&mut self, log_id: LogId<u64>, command: Option<MetadataCommand>) -> Option<Applied> {
        let payload = match command {
            Some(c) => EntryPayload::Normal(c),
            None => EntryPayload::Blank,
        };
        self.apply(log_id, &payload).1
    }

    fn remember(&mut self, log_id: LogId<u64>, command: Option<MetadataCommand>) {
        if self.recent.len() == RECENT_COMMANDS {
            self.recent.pop_front();
        }
        self.recent.push_back((log_id, command));
    }

    /// Replaces the state (an installed snapshot, or an image fetched by a broker-only node).
    pub fn install(&mut self, durable: Durable) -> Option<Applied> {
        let index = durable.last_applied.map_or(0, |l| l.index);
        self.durable = durable;
        self.recent.clear();
        self.forward_to_shards.then(|| Applied::Image { index, image: self.durable.image.clone() })
    }

    pub fn persist(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec(&self.durable).map_err(std::io::Error::other)?;
        sluice_engine::checkpoint_file::write_atomic_blocking(&self.path, &json)
    }

    pub fn snapshot_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.durable).expect("the image serializes")
    }

    /// The commands after `after_index` (broker-only nodes' fetch).
    pub fn fetch(&self, after_index: u64) -> FetchReply {
        if self.last_applied_index() <= after_index {
            return FetchReply { entries: Vec::new(), image: None };
        }
        let covered = self.recent.front().is_some_and(|(id, _)| id.index <= after_index + 1);
        if !covered {
            return FetchReply {
                entries: Vec::new(),
                image: Some((self.durable.image.clone(), self.durable.last_applied)),
            };
        }
        let entries =
            self.recent.iter().filter(|(id, _)| id.index > after_index).take(MAX_FETCH_COMMANDS).cloned().collect();
        FetchReply { entries, image: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    #[test]
    fn applies_in_order_once_persists_and_serves_fetches() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::load(dir.path(), LogConfig::default()).unwrap();
        let early = EntryPayload::Normal(MetadataCommand::AllocateProducerIds { count: 1 });
        let (_, applied) = sm.apply(id(1), &early);
        assert!(applied.is_none(), "before the shards' image is taken nothing is forwarded");
        assert_eq!(sm.start_forwarding().1, 1);
        let init = EntryPayload::Normal(MetadataCommand::InitCluster { cluster_id: "abc".into() });
        let (outcome, applied) = sm.apply(id(2), &init);
        assert!(outcome.error.is_none() && applied.is_some());
        let (outcome, applied) = sm.apply(id(3), &init);
        assert!(outcome.error.is_some() && applied.is_none(), "refused: the cluster id is set");
        let (_, again) = sm.apply(id(3), &EntryPayload::Normal(MetadataCommand::AllocateProducerIds { count: 5 }));
        assert!(again.is_none(), "index 3 was applied already");
        let (outcome, _) = sm.apply(id(4), &EntryPayload::Normal(MetadataCommand::AllocateProducerIds { count: 5 }));
        assert_eq!(outcome.producer_id_start, 1);
        assert_eq!(sm.image().next_producer_id, 6);
        sm.persist().unwrap();
        let back = StateMachine::load(dir.path(), LogConfig::default()).unwrap();
        assert_eq!((back.image().cluster_id.as_str(), back.last_applied_index()), ("abc", 4));
        // The fresh load has no ring: a broker behind it gets the image.
        assert!(back.fetch(1).image.is_some());
        let reply = sm.fetch(2);
        assert_eq!(reply.entries.iter().map(|(i, _)| i.index).collect::<Vec<_>>(), vec![3, 4]);
        assert!(reply.entries[0].1.is_none(), "a refused command is fetched as a no-op");
        assert!(sm.fetch(4).entries.is_empty());
    }
}
