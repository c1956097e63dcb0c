//! PartitionLog append throughput on the real disk (direct I/O): 1 KiB records in 16 KiB and
//! 1 MiB batches, with `flush.messages` never and 1 (fdatasync per append), one append at a
//! time (`append()`: returns once the batch is written to the file) and pipelined like a broker
//! connection (`append_buffered` in order, up to 32 `wait_durable`s outstanding).
//!
//! Each sample opens a fresh log in a temp dir under `target/tmp` (or `$SLUICE_BENCH_DIR`),
//! times `iters` appends of one pre-built batch (the log stamps offsets into its own copy) plus
//! one final `flush()` so every byte is on disk, then closes and deletes the log outside the
//! timing. The log runs with the engine's default `LogOptions` (write-behind, tail cache).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_benches::{batch_of, bench_config, bench_parent_dir, executor, RECORD_BYTES};
use sluice_engine::log_config::FlushMode;
use sluice_engine::{LogOptions, PartitionLog};

/// Acknowledgements a broker connection keeps outstanding (net's MAX_IN_FLIGHT_REQUESTS).
const PIPELINE: usize = 32;

async fn append_n(parent: &Path, batch: &[u8], flush: FlushMode, pipeline: usize, iters: u64) -> Duration {
    let dir = tempfile::Builder::new().prefix("sluice-bench-append-").tempdir_in(parent).expect("temp dir");
    let config = bench_config(flush, batch.len());
    let log = PartitionLog::open(dir.path(), "bench", 0, config, LogOptions::default(), true).await.expect("open");
    let start = Instant::now();
    if pipeline <= 1 {
        for _ in 0..iters {
            log.append(batch, 0).await.expect("append");
        }
    } else {
        let mut acks = VecDeque::with_capacity(pipeline);
        for _ in 0..iters {
            let (_, target) = log.append_buffered(batch, 0).await.expect("append");
            let log = log.clone();
            acks.push_back(glommio::spawn_local(async move { log.wait_durable(target).await }).detach());
            if acks.len() >= pipeline {
                acks.pop_front().expect("ack").await.expect("ack task").expect("durable");
            }
        }
        while let Some(ack) = acks.pop_front() {
            ack.await.expect("ack task").expect("durable");
        }
    }
    log.flush().await.expect("flush");
    let elapsed = start.elapsed();
    log.close().await.expect("close");
    elapsed
}

fn append(c: &mut Criterion) {
    let parent = bench_parent_dir(env!("CARGO_TARGET_TMPDIR"));
    let mut group = c.benchmark_group("append");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for (batch_bytes, batch_name) in [(16usize << 10, "16KiB-batches"), (1 << 20, "1MiB-batches")] {
        let batch = batch_of(batch_bytes, RECORD_BYTES);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        for (flush, flush_name) in [(FlushMode::Never, "flush-never"), (FlushMode::Always, "flush-always")] {
            for (pipeline, pipeline_name) in [(1, "one-at-a-time"), (PIPELINE, "pipelined-32")] {
                let executor = executor();
                let id = BenchmarkId::new(batch_name, format!("{flush_name}/{pipeline_name}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| executor.run(append_n(&parent, &batch, flush, pipeline, iters)))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
