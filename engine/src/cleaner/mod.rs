//! Log compaction (`cleanup.policy=compact`): keep at least the latest record of every key.
//!
//! The pure parts live here, unit-tested without a runtime: [`choice`] (which section of which
//! log is cleanable, and the dirtiest log), [`offset_map`] (the bounded key → latest offset map
//! over a dirty section) and [`record_filter`] (rewriting a batch with the records kept). The
//! rewrite itself goes through the segment set's crash-safe replacement
//! ([`crate::partition_log::PartitionLog::replace_segments`]).

pub mod choice;
pub mod offset_map;
pub mod record_filter;
