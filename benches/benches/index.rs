//! Sparse index lookups: the offset index and time index of one big segment.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_benches::Rng;
use sluice_engine::offset_index::{OffsetIndex, OFFSET_INDEX_ENTRY_BYTES};
use sluice_engine::time_index::{TimeIndex, TIME_INDEX_ENTRY_BYTES};

const ENTRIES: usize = 250_000;
/// Random lookup targets cycled through (more than fit in L1, fewer than the index).
const TARGETS: usize = 4096;
const BASE_OFFSET: i64 = 1_000_000;

fn offset_index(c: &mut Criterion) {
    // One entry per ~4 KiB batch of 4 records, like index.interval.bytes=4096 would give.
    let mut index = OffsetIndex::new(BASE_OFFSET, ENTRIES * OFFSET_INDEX_ENTRY_BYTES);
    for i in 1..=ENTRIES {
        assert!(index.append(BASE_OFFSET + 4 * i as i64, 4096 * i as u32));
    }
    assert_eq!(index.len(), ENTRIES);
    let last = BASE_OFFSET + 4 * ENTRIES as i64 + 3;
    let mut rng = Rng(0x5eed);
    let targets: Vec<i64> = (0..TARGETS).map(|_| BASE_OFFSET + rng.below((last - BASE_OFFSET) as u64) as i64).collect();
    let mut group = c.benchmark_group("offset_index");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup/250k-entries/random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % TARGETS;
            black_box(index.lookup(black_box(targets[i])))
        })
    });
    group.finish();
}

fn time_index(c: &mut Criterion) {
    let mut index = TimeIndex::new(BASE_OFFSET, (ENTRIES + 1) * TIME_INDEX_ENTRY_BYTES);
    let t0 = 1_700_000_000_000i64;
    for i in 0..ENTRIES {
        assert!(index.maybe_append(t0 + 10 * i as i64, BASE_OFFSET + 4 * i as i64));
    }
    assert_eq!(index.len(), ENTRIES);
    let mut rng = Rng(0xfeed);
    let targets: Vec<i64> = (0..TARGETS).map(|_| t0 + rng.below(10 * ENTRIES as u64) as i64).collect();
    let mut group = c.benchmark_group("time_index");
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup/250k-entries/random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % TARGETS;
            black_box(index.lookup(black_box(targets[i])))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = offset_index, time_index
}
criterion_main!(benches);
