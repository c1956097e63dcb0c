//! Compression costs on the produce path, per codec: validating a compressed batch
//! (decompress into the shard's scratch buffer and walk the records) and rewriting one in a
//! topic's `compression.type` (compress an uncompressed batch; decompress a compressed one).
//! Throughput is counted in uncompressed record bytes.
//!
//! Payload: 1 KiB records whose values are half pseudo-random bytes and half text, so ratios
//! are those of semi-structured data, not of a repeated pattern.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_engine::batch::{build_batch, validate_from_client, Compression, RecordSpec};
use sluice_engine::compressed_batch::{recompress, validate_compressed_records};

const CODECS: [(Compression, &str); 4] = [
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];
const SIZES: [(usize, &str); 2] = [(64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn plain_batch(batch_bytes: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let values: Vec<Vec<u8>> = (0..batch_bytes / 1024)
        .map(|i| {
            let mut v = format!("{{\"id\":{i},\"user\":\"user-{}\",\"blob\":\"", i % 97).into_bytes();
            while v.len() < 500 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(b'a' + (x % 26) as u8);
            }
            while v.len() < 1000 {
                v.extend_from_slice(b"\",\"status\":\"ok\",\"tags\":[\"a\",\"b\"]");
            }
            v.truncate(1000);
            v
        })
        .collect();
    let specs: Vec<RecordSpec<'_>> = values.iter().map(|v| (None, Some(v.as_slice()), &[][..])).collect();
    build_batch(0, &specs, 1_700_000_000_000)
}

fn codecs(c: &mut Criterion) {
    let mut scratch = Vec::new();
    for (size, size_name) in SIZES {
        let plain = plain_batch(size);
        let plain_info = validate_from_client(&plain).expect("valid");
        let mut validate = c.benchmark_group(format!("validate_compressed/{size_name}"));
        validate.throughput(Throughput::Bytes(plain.len() as u64));
        for (codec, name) in CODECS {
            let batch = recompress(&plain, &plain_info, codec, &mut scratch).expect("compress");
            let info = validate_from_client(&batch).expect("valid");
            eprintln!("{name} {size_name}: ratio {:.2}", plain.len() as f64 / batch.len() as f64);
            validate.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| validate_compressed_records(black_box(&batch), &info, &mut scratch).expect("valid"))
            });
        }
        validate.finish();
        let mut compress = c.benchmark_group(format!("recompress_from_none/{size_name}"));
        compress.throughput(Throughput::Bytes(plain.len() as u64));
        for (codec, name) in CODECS {
            compress.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| recompress(black_box(&plain), &plain_info, codec, &mut scratch).expect("compress"))
            });
        }
        compress.finish();
        let mut decompress = c.benchmark_group(format!("recompress_to_none/{size_name}"));
        decompress.throughput(Throughput::Bytes(plain.len() as u64));
        for (codec, name) in CODECS {
            let batch = recompress(&plain, &plain_info, codec, &mut scratch).expect("compress");
            let info = validate_from_client(&batch).expect("valid");
            decompress.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| recompress(black_box(&batch), &info, Compression::None, &mut scratch).expect("decompress"))
            });
        }
        decompress.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(20);
    targets = codecs
}
criterion_main!(benches);
