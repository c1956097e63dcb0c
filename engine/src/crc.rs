//! CRC-32C (Castagnoli): the checksum of Kafka record batches, and of the engine's own files.
//!
//! Owns: the one implementation the engine calls, and the choice between `crc-fast`'s two
//! code paths for it. Must never: change the checksum (the tests pin both paths to the `crc32c`
//! crate and to the standard check value), or time the paths more than once per process.
//!
//! `crc-fast` picks its code per CPU at run time, but for CRC-32C it prefers a blend of the
//! `crc32` instruction with PCLMULQDQ folding, and on some CPUs its generic PCLMULQDQ folding
//! (the path of custom polynomials) is faster. Measured on 1 MiB: a host with AVX-512
//! VPCLMULQDQ gave ~110 GB/s (against ~28 GB/s for the `crc32c` crate's SSE4.2 loop); an AMD
//! EPYC of family 23 (no VPCLMULQDQ) 7.6 GB/s blended against 9.9 GB/s folded, and there the
//! batch CRC was a fifth of the broker's produce CPU (`tuning/results/produce-profile/`). So
//! [`calibrate`] times both once, on this machine, and keeps the faster.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which `crc-fast` path computes [`crc32c`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrcPath {
    /// `crc_fast::crc32_iscsi`: the library's own choice for CRC-32C.
    Dedicated,
    /// `crc_fast::checksum_with_params` with CRC-32C's parameters: PCLMULQDQ folding only.
    Folding,
}

/// What [`calibrate`] measured and chose.
#[derive(Clone, Copy, Debug)]
pub struct Calibration {
    pub path: CrcPath,
    pub dedicated_gb_per_s: f64,
    pub folding_gb_per_s: f64,
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

/// CRC-32C's parameters for the folding path (its keys computed once).
fn folding_params() -> crc_fast::CrcParams {
    static PARAMS: OnceLock<crc_fast::CrcParams> = OnceLock::new();
    *PARAMS.get_or_init(|| {
        crc_fast::CrcParams::new("CRC-32/ISCSI", 32, 0x1EDC_6F41, 0xFFFF_FFFF, true, 0xFFFF_FFFF, 0xE306_9283)
    })
}

/// CRC-32C of `data` by `path`.
pub fn crc32c_by(path: CrcPath, data: &[u8]) -> u32 {
    match path {
        CrcPath::Dedicated => crc_fast::crc32_iscsi(data),
        CrcPath::Folding => crc_fast::checksum_with_params(folding_params(), data) as u32,
    }
}

/// Times both paths on this CPU and keeps the faster for [`crc32c`]. Takes about a
/// millisecond, once: call it at start-up, before the shards run (the first checksum calibrates
/// otherwise). Later calls return the first calibration.
pub fn calibrate() -> Calibration {
    *CALIBRATION.get_or_init(|| {
        const SAMPLE_BYTES: usize = 256 << 10;
        const ROUNDS: usize = 5;
        let sample: Vec<u8> = (0..SAMPLE_BYTES as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        let best_of = |path: CrcPath| {
            (0..ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    std::hint::black_box(crc32c_by(path, std::hint::black_box(&sample)));
                    start.elapsed()
                })
                .min()
                .unwrap_or(Duration::MAX)
        };
        // Interleaved, best of several: a preempted round must not decide.
        let (dedicated, folding) = (0..2).fold((Duration::MAX, Duration::MAX), |(d, f), _| {
            (d.min(best_of(CrcPath::Dedicated)), f.min(best_of(CrcPath::Folding)))
        });
        let gb_per_s = |t: Duration| SAMPLE_BYTES as f64 / t.as_secs_f64().max(1e-9) / 1e9;
        Calibration {
            path: if folding < dedicated { CrcPath::Folding } else { CrcPath::Dedicated },
            dedicated_gb_per_s: gb_per_s(dedicated),
            folding_gb_per_s: gb_per_s(folding),
        }
    })
}

/// The calibrated path.
#[inline]
fn chosen_path() -> CrcPath {
    match CALIBRATION.get() {
        Some(calibration) => calibration.path,
        None => calibrate().path,
    }
}

/// CRC-32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_by(chosen_path(), data)
}

/// CRC-32C of `first` followed by `second`, without joining them.
pub fn crc32c_of_parts(first: &[u8], second: &[u8]) -> u32 {
    crc32c_of_parts_by(chosen_path(), first, second)
}

/// [`crc32c_of_parts`] by `path`.
pub fn crc32c_of_parts_by(path: CrcPath, first: &[u8], second: &[u8]) -> u32 {
    let mut digest = match path {
        CrcPath::Dedicated => crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
        CrcPath::Folding => crc_fast::Digest::new_with_params(folding_params()),
    };
    digest.update(first);
    digest.update(second);
    digest.finalize() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_paths_are_crc32c() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for path in [CrcPath::Dedicated, CrcPath::Folding] {
            assert_eq!(crc32c_by(path, b"123456789"), 0xE306_9283, "{path:?}: the CRC-32C check value");
            assert_eq!(crc32c_by(path, b""), 0, "{path:?}");
            for len in [1, 7, 8, 15, 16, 31, 32, 63, 64, 65, 127, 128, 255, 256, 4095, 4096, 65_537, 300_000] {
                for start in [0, 1, 3] {
                    let part = &data[start..len.max(start)];
                    assert_eq!(crc32c_by(path, part), ::crc32c::crc32c(part), "{path:?}: len {len} start {start}");
                }
            }
        }
        let calibration = calibrate();
        assert!(calibration.dedicated_gb_per_s > 0.0 && calibration.folding_gb_per_s > 0.0, "{calibration:?}");
        assert_eq!(crc32c(&data), ::crc32c::crc32c(&data), "the calibrated path: {calibration:?}");
        for split in [0, 1, 61, 4096, 299_999, 300_000] {
            let (a, b) = data.split_at(split);
            for path in [CrcPath::Dedicated, CrcPath::Folding] {
                assert_eq!(crc32c_of_parts_by(path, a, b), ::crc32c::crc32c(&data), "{path:?}: split {split}");
            }
            assert_eq!(crc32c_of_parts(a, b), ::crc32c::crc32c(&data), "split {split}");
        }
    }
}
