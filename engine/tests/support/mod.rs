//! Shared helpers for the engine's integration tests: a glommio executor per test, temp dirs,
//! batch builders and a deterministic RNG (so failures reproduce from the printed seed).
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use sluice_engine::batch::{batches, build_batch, Validation};
use sluice_engine::log_config::LogConfig;
use sluice_engine::partition_log::{LogOptions, PartitionLog, ReadBound, TailCacheFill};
use sluice_engine::segment_writer::WriterOptions;

/// Runs `f` on a fresh single-threaded glommio executor (io_memory within the memlock limit).
pub fn run<T>(f: impl Future<Output = T>) -> T {
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(512 << 10).make().expect("executor").run(f)
}

/// Small xorshift RNG: deterministic per seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Small writer chunks so tests cross chunk boundaries and back-pressure often.
pub fn small_writer_options() -> LogOptions {
    // A small tail cache, so reads are served from it, from the write-behind and from disk.
    LogOptions {
        writer: WriterOptions { chunk_bytes: 8192, max_in_flight: 2, ..WriterOptions::default() },
        high_watermark_follows_durable_end: true,
        tail_cache_bytes: 20_000,
        tail_cache_fill: TailCacheFill::Always,
        ..LogOptions::default()
    }
}

pub fn config_with(pairs: &[(&str, &str)]) -> LogConfig {
    let mut c = LogConfig::default();
    for (k, v) in pairs {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// A batch of `count` records whose values encode (tag, index) so content is checkable.
pub fn tagged_batch(tag: u64, count: usize, value_len: usize, timestamp_ms: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let mut v = format!("{tag}:{i}:").into_bytes();
            v.resize(value_len.max(v.len()), b'x');
            v
        })
        .collect();
    let keys: Vec<Vec<u8>> = (0..count).map(|i| format!("k{}", i % 7).into_bytes()).collect();
    let records: Vec<sluice_engine::batch::RecordSpec<'_>> =
        (0..count).map(|i| (Some(keys[i].as_slice()), Some(values[i].as_slice()), &[][..])).collect();
    build_batch(0, &records, timestamp_ms)
}

pub async fn open(dir: &Path, config: LogConfig, options: LogOptions, clean: bool) -> Rc<PartitionLog> {
    PartitionLog::open(dir, "t", 0, config, options, clean).await.expect("open log")
}

/// Reads everything from `from` to the bound, batch by batch, returning (base offset, bytes).
pub async fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let read = log.read(offset, 1 << 20, ReadBound::HighWatermark, true).await.expect("read");
        if read.is_empty() {
            return out;
        }
        let bytes = read.to_vec().await.expect("bytes");
        let mut progressed = false;
        for item in batches(&bytes, Validation::Stored) {
            let Ok((pos, info)) = item else { break };
            out.push((info.base_offset, bytes[pos..pos + info.total_len].to_vec()));
            offset = info.next_offset();
            progressed = true;
        }
        assert!(progressed, "a read returned bytes but no whole batch at offset {offset}");
    }
}
