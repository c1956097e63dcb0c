//! Record-batch CPU costs: CRC-32C, client-side validation, in-place offset assignment.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_benches::{batch_of, RECORD_BYTES};
use sluice_engine::batch::{assign_offsets, validate_from_client};
use sluice_engine::crc::CrcPath;

const SIZES: [(usize, &str); 2] = [(16 << 10, "16KiB"), (1 << 20, "1MiB")];

fn crc32c(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for (size, name) in SIZES {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        // The engine's (crc-fast, the faster of its two paths on this CPU), each of those paths,
        // and the crc32c crate's SSE4.2 loop it replaced.
        group.bench_function(BenchmarkId::new("engine", name), |b| {
            b.iter(|| sluice_engine::crc::crc32c(black_box(&data)))
        });
        for path in [CrcPath::Dedicated, CrcPath::Folding] {
            group.bench_function(BenchmarkId::new(format!("{path:?}"), name), |b| {
                b.iter(|| sluice_engine::crc::crc32c_by(path, black_box(&data)))
            });
        }
        group.bench_function(BenchmarkId::new("crc32c-crate", name), |b| b.iter(|| crc32c::crc32c(black_box(&data))));
    }
    group.finish();
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate_from_client");
    for (size, name) in SIZES {
        let batch = batch_of(size, RECORD_BYTES);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(BenchmarkId::new("1KiB-records", name), |b| {
            b.iter(|| validate_from_client(black_box(&batch)).expect("valid"))
        });
    }
    group.finish();
}

fn assign(c: &mut Criterion) {
    let mut group = c.benchmark_group("assign_offsets");
    for (size, name) in SIZES {
        // CreateTime: two header fields rewritten, no CRC — constant time, so count batches.
        let mut batch = batch_of(size, RECORD_BYTES);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("create-time", name), |b| {
            let mut base = 0i64;
            b.iter(|| {
                base += 1;
                assign_offsets(black_box(&mut batch), base, 7, None);
            })
        });
        // LogAppendTime: header rewrite plus a CRC over the batch. A new time every iteration:
        // an unchanged time skips the CRC recomputation.
        let mut batch = batch_of(size, RECORD_BYTES);
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.bench_function(BenchmarkId::new("log-append-time", name), |b| {
            let mut time = 1_700_000_000_000i64;
            b.iter(|| {
                time += 1;
                assign_offsets(black_box(&mut batch), time, 7, Some(time));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = crc32c, validate, assign
}
criterion_main!(benches);
