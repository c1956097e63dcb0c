//! PartitionLog read throughput: sequential 1 MiB reads of a ~256 MiB log from disk (direct
//! I/O, so not from the page cache; the tail cache is off for this log so no read is served
//! from memory), and tailing reads of the batch just appended, which the tail cache serves
//! from memory (`LogRead::into_bytes`, the fetch path: zero-copy for one cached slice, so when
//! a batch lies in one cache piece the "throughput" is really the per-read overhead; a batch
//! spanning two pieces is copied, which makes the 1 MiB case bimodal).
//!
//! The log is filled once per benchmark function on one executor; samples reuse it.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_benches::{batch_of, bench_config, bench_dir, executor, RECORD_BYTES};
use sluice_engine::batch::BatchHeader;
use sluice_engine::log_config::FlushMode;
use sluice_engine::{LogOptions, PartitionLog, ReadBound, ReadChunk};

const FILL_BYTES: u64 = 256 << 20;
const READ_BYTES: usize = 1 << 20;

/// Offset after the last whole batch in `bytes` (a read ends with a partial batch when
/// `max_bytes` cut it), or `None` if not even one batch is whole.
fn next_offset_after(bytes: &[u8]) -> Option<i64> {
    let mut pos = 0usize;
    let mut next = None;
    while let Ok(header) = BatchHeader::parse(&bytes[pos..]) {
        let total = header.total_len();
        if total == 0 || pos + total > bytes.len() {
            break;
        }
        next = Some(header.next_offset());
        pos += total;
    }
    next
}

async fn open_log(dir: &std::path::Path, batch_len: usize, options: LogOptions) -> Rc<PartitionLog> {
    let config = bench_config(FlushMode::Never, batch_len);
    PartitionLog::open(dir, "bench", 0, config, options, true).await.expect("open")
}

fn sequential(c: &mut Criterion) {
    let executor = executor();
    let dir = bench_dir(env!("CARGO_TARGET_TMPDIR"));
    let batch = batch_of(16 << 10, RECORD_BYTES);
    let log = executor.run(async {
        let options = LogOptions { tail_cache_bytes: 0, ..LogOptions::default() };
        let log = open_log(dir.path(), batch.len(), options).await;
        while log.size_bytes() < FILL_BYTES {
            log.append(&batch, 0).await.expect("append");
        }
        log.flush().await.expect("flush"); // everything written: reads come from the file
        log
    });
    let cursor = Cell::new(0i64);
    let mut group = c.benchmark_group("read");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(READ_BYTES as u64));
    group.bench_function(BenchmarkId::new("sequential-1MiB", "256MiB-log-direct-io"), |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut offset = cursor.get();
                    if offset >= log.high_watermark() {
                        offset = 0;
                    }
                    let read = log.read(offset, READ_BYTES, ReadBound::HighWatermark, true).await.expect("read");
                    let bytes = read.to_vec().await.expect("bytes");
                    cursor.set(next_offset_after(&bytes).unwrap_or(0));
                    black_box(&bytes);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    executor.run(async { log.close().await.expect("close") });
}

fn tailing(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for (batch_bytes, name) in [(16usize << 10, "tail-16KiB-batch"), (1 << 20, "tail-1MiB-batch")] {
        let executor = executor();
        let dir = bench_dir(env!("CARGO_TARGET_TMPDIR"));
        let batch = batch_of(batch_bytes, RECORD_BYTES);
        let log = executor.run(open_log(dir.path(), batch.len(), LogOptions::default()));
        let file_reads = Cell::new(0u64);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(BenchmarkId::new(name, "from-tail-cache"), |b| {
            b.iter_custom(|iters| {
                executor.run(async {
                    // A tailing consumer: read the batch just appended, as a fetch does.
                    let offset = log.append(&batch, 0).await.expect("append").base_offset;
                    let start = Instant::now();
                    for _ in 0..iters {
                        let read = log.read(offset, READ_BYTES, ReadBound::HighWatermark, true).await.expect("read");
                        let files = read.chunks.iter().filter(|c| matches!(c, ReadChunk::File { .. })).count();
                        file_reads.set(file_reads.get() + files as u64);
                        black_box(read.into_bytes().await.expect("bytes"));
                    }
                    start.elapsed()
                })
            })
        });
        if file_reads.get() > 0 {
            eprintln!("warning: {name}: {} reads touched the file, not only memory", file_reads.get());
        }
        executor.run(async { log.close().await.expect("close") });
    }
    group.finish();
}

criterion_group!(benches, sequential, tailing);
criterion_main!(benches);
