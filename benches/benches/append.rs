//! PartitionLog append throughput on the real disk (direct I/O): 1 KiB records in 16 KiB and
//! 1 MiB batches, with `flush.messages` never and 1 (fdatasync per append).
//!
//! Each sample opens a fresh log in a temp dir under `target/tmp` (or `$SLUICE_BENCH_DIR`),
//! times `iters` appends of one pre-built batch (the log stamps offsets into its own copy) plus
//! one final `flush()` so every byte is on disk, then closes and deletes the log outside the
//! timing. The log runs with the engine's default `LogOptions` (write-behind, tail cache).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_benches::{batch_of, bench_config, bench_parent_dir, executor, RECORD_BYTES};
use sluice_engine::log_config::FlushMode;
use sluice_engine::{LogOptions, PartitionLog};

async fn append_n(parent: &Path, batch: &[u8], flush: FlushMode, iters: u64) -> Duration {
    let dir = tempfile::Builder::new().prefix("sluice-bench-append-").tempdir_in(parent).expect("temp dir");
    let config = bench_config(flush, batch.len());
    let log = PartitionLog::open(dir.path(), "bench", 0, config, LogOptions::default(), true).await.expect("open");
    let start = Instant::now();
    for _ in 0..iters {
        log.append(batch, 0).await.expect("append");
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
            let executor = executor();
            group.bench_function(BenchmarkId::new(batch_name, flush_name), |b| {
                b.iter_custom(|iters| executor.run(append_n(&parent, &batch, flush, iters)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
