//! Shared helpers for the criterion benchmarks (`benches/benches/*.rs`) and the
//! `sluice-engine-append` binary: batch builders, a glommio executor within the memlock limit,
//! bench configs, a data directory on the real disk, size parsing and a tiny RNG.
//!
//! Must never: put benchmark data on tmpfs (direct-I/O numbers from RAM are meaningless; see
//! [`bench_dir`]) or give an executor more than 4 MiB of `io_memory` (`ulimit -l` is 8 MiB).

use std::path::{Path, PathBuf};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use sluice_engine::batch::{build_batch_of_size, BatchHeader};
use sluice_engine::log_config::{FlushMode, LogConfig};

/// Encoded size of one benchmark record ("1 KiB records"): 1014 value bytes plus ~10 bytes of
/// record framing (length, attributes, deltas, key/value lengths, header count).
pub const RECORD_BYTES: usize = 1024;
/// Record framing the builder adds around the value (null key, no headers, small deltas).
const RECORD_FRAMING_BYTES: usize = 10;

/// glommio registered-buffer pool per executor: the engine's memlock-safe 4 MiB.
pub const IO_MEMORY_BYTES: usize = sluice_engine::shard::IO_MEMORY_BYTES;

/// Environment variable that overrides where benchmark logs are written.
pub const BENCH_DIR_ENV: &str = "SLUICE_BENCH_DIR";

/// A single-threaded glommio executor for benchmarks (unpinned, 4 MiB io_memory).
pub fn executor() -> LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound).io_memory(IO_MEMORY_BYTES).make().expect("glommio executor")
}

/// A valid uncompressed v2 batch of as many `record_bytes`-sized records as fit in
/// `batch_bytes` (at least one), timestamped now. The log stamps offsets into its own copy of
/// the header on append, so the same buffer can be appended again and again.
pub fn batch_of(batch_bytes: usize, record_bytes: usize) -> Vec<u8> {
    let value_len = record_bytes.saturating_sub(RECORD_FRAMING_BYTES).max(1);
    let now = sluice_engine::clock::now_ms();
    let mut count = ((batch_bytes.saturating_sub(sluice_engine::batch::BATCH_HEADER_LEN)) / record_bytes).max(1);
    loop {
        let batch = build_batch_of_size(0, count, value_len, now);
        if batch.len() <= batch_bytes || count == 1 {
            return batch;
        }
        count -= 1;
    }
}

/// Number of records (offsets) in a batch built by [`batch_of`].
pub fn records_in(batch: &[u8]) -> i64 {
    BatchHeader::parse(batch).expect("batch header").records_count() as i64
}

/// Default topic config with the given flush mode and room for batches up to `max_batch_bytes`.
pub fn bench_config(flush: FlushMode, max_batch_bytes: usize) -> LogConfig {
    let mut config = LogConfig::default();
    config.apply_flush_mode(flush);
    config.max_message_bytes = config.max_message_bytes.max(i32::try_from(max_batch_bytes + 64).unwrap_or(i32::MAX));
    config
}

/// True when `path` lives on tmpfs/ramfs (not a real disk).
pub fn is_ram_fs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: statfs only writes into the zeroed struct we pass; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        if libc::statfs(c_path.as_ptr(), &mut s) != 0 {
            return false;
        }
        let f_type = s.f_type as i64;
        f_type == TMPFS_MAGIC || f_type == RAMFS_MAGIC
    }
}

/// Where benchmarks put their logs: `$SLUICE_BENCH_DIR` if set, else `default_parent` (benches
/// pass `env!("CARGO_TARGET_TMPDIR")`, i.e. `target/tmp`, on the same disk as the workspace).
/// Panics if that is a RAM filesystem.
pub fn bench_parent_dir(default_parent: &str) -> PathBuf {
    let parent = std::env::var_os(BENCH_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default_parent));
    std::fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    assert!(
        !is_ram_fs(&parent),
        "{} is on tmpfs/ramfs: direct-I/O benchmarks must run on a real disk (set {BENCH_DIR_ENV})",
        parent.display()
    );
    parent
}

/// A fresh temporary directory under [`bench_parent_dir`], removed on drop.
pub fn bench_dir(default_parent: &str) -> tempfile::TempDir {
    let parent = bench_parent_dir(default_parent);
    tempfile::Builder::new().prefix("sluice-bench-").tempdir_in(&parent).expect("temp dir")
}

/// Parses a byte size: a plain number or one with a binary suffix K, M, G, T (optionally
/// followed by `i`/`iB`/`B`), e.g. `2G`, `16KiB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits_end);
    let n: u64 = number.parse().map_err(|_| format!("not a size: {text:?}"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KI" | "KIB" => 10,
        "M" | "MB" | "MI" | "MIB" => 20,
        "G" | "GB" | "GI" | "GIB" => 30,
        "T" | "TB" | "TI" | "TIB" => 40,
        other => return Err(format!("unknown size suffix {other:?} in {text:?}")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size overflows: {text:?}"))
}

/// Small deterministic xorshift RNG (benchmarks must be reproducible).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("16K"), Ok(16 << 10));
        assert_eq!(parse_size("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert!(parse_size("x").is_err());
        assert!(parse_size("3Q").is_err());
    }

    #[test]
    fn batches_fit_and_validate() {
        for size in [16 << 10, 1 << 20] {
            let b = batch_of(size, RECORD_BYTES);
            assert!(b.len() <= size && b.len() > size - 2 * RECORD_BYTES, "{size}: {}", b.len());
            sluice_engine::batch::validate_from_client(&b).expect("valid");
            assert!(records_in(&b) > 1);
        }
        // The default max.message.bytes (1 MiB + 12) admits a 1 MiB batch.
        assert!(batch_of(1 << 20, RECORD_BYTES).len() <= 1024 * 1024 + 12);
    }
}
