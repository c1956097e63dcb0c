//! The tail cache on real files: filled only while a reader tails the partition (the default),
//! or on every append.

mod support;

use sluice_engine::batch::{batches, validate_stored, Validation};
use sluice_engine::partition_log::{LogOptions, ReadBound, TailCacheFill};
use sluice_engine::ReadChunk;
use support::*;

fn from_cache(chunks: &[ReadChunk]) -> bool {
    !chunks.is_empty() && chunks.iter().all(|c| matches!(c, ReadChunk::Memory(_)))
}

#[test]
fn appends_fill_the_cache_only_while_a_reader_tails_the_log() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let options = LogOptions { tail_cache_bytes: 1 << 20, ..LogOptions::default() };
        assert_eq!(options.tail_cache_fill, TailCacheFill::Tailing, "the default");
        let log = open(dir.path(), config_with(&[]), options, true).await;
        for i in 0..3 {
            log.append(&tagged_batch(i, 5, 200, 1000), 0).await.unwrap();
        }
        // Nobody read: the appends are on disk only.
        let read = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        assert!(read.chunks.iter().all(|c| matches!(c, ReadChunk::File { .. })), "{:?}", read.chunks);
        assert_eq!(batches(&read.to_vec().await.unwrap(), Validation::Stored).count(), 3);
        // A reader waits at the log end: from now on appends are cached.
        assert!(log.read(15, 1 << 20, ReadBound::HighWatermark, true).await.unwrap().is_empty());
        let batch = tagged_batch(3, 5, 200, 1000);
        log.append(&batch, 0).await.unwrap();
        let read = log.read(15, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        assert!(from_cache(&read.chunks), "{:?}", read.chunks);
        let bytes = read.to_vec().await.unwrap();
        assert_eq!(validate_stored(&bytes).unwrap().base_offset, 15);
        assert_eq!(&bytes[61..], &batch[61..], "record bytes as produced");
    });
}

#[test]
fn always_fill_caches_without_readers() {
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let options =
            LogOptions { tail_cache_bytes: 1 << 20, tail_cache_fill: TailCacheFill::Always, ..LogOptions::default() };
        let log = open(dir.path(), config_with(&[]), options, true).await;
        log.append(&tagged_batch(0, 5, 200, 1000), 0).await.unwrap();
        let read = log.read(0, 1 << 20, ReadBound::HighWatermark, true).await.unwrap();
        assert!(from_cache(&read.chunks), "{:?}", read.chunks);
    });
}
