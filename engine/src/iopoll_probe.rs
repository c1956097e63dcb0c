//! Primes glommio's per-thread, per-device iopoll probe with a file that has data.
//!
//! Why: when glommio opens a `DmaFile` it probes whether the device supports the poll ring by
//! reading 512 bytes at offset 0 of *that* file, and caches the answer per device in a
//! thread-local. If that file is empty (a freshly created segment), the read ends at EOF
//! without reaching the device, succeeds, and glommio wrongly caches "iopoll supported": every
//! later direct read on that device then fails with EOPNOTSUPP (seen on virtio disks here).
//! Opening a non-empty file first makes the probe reach the device and cache the truth.
//!
//! Owns: the probe file `<dir>/.sluice-iopoll-probe-<thread>` (created, opened, removed; one
//! per thread, so shards priming the same directory never see each other's half-written
//! file) and the set of devices primed on this thread. Must never: run the blocking file creation on the shard
//! thread itself (it uses the blocking pool).

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;

use glommio::io::OpenOptions;

use crate::checkpoint_file::blocking;

const PROBE_FILE: &str = ".sluice-iopoll-probe";
const PROBE_BYTES: usize = 4096;

thread_local! {
    static PRIMED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Makes sure glommio on this thread probed the device holding `dir` with real data. Cheap
/// after the first call per device and thread.
pub async fn prime(dir: &Path) -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let probe = dir.join(format!("{PROBE_FILE}-{tid}"));
    let dir_owned = dir.to_path_buf();
    let device = blocking(move || {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(&dir_owned)?;
        Ok(std::fs::metadata(&dir_owned)?.dev())
    })
    .await?;
    if PRIMED_DEVICES.with(|d| d.borrow().contains(&device)) {
        return Ok(());
    }
    let probe_path = probe.clone();
    blocking(move || std::fs::write(&probe_path, vec![0u8; PROBE_BYTES])).await?;
    let opened = OpenOptions::new().read(true).dma_open(&probe).await;
    crate::checkpoint_file::remove_if_exists(&probe).await?;
    let file = opened.map_err(std::io::Error::from)?;
    file.close().await.map_err(std::io::Error::from)?;
    PRIMED_DEVICES.with(|d| d.borrow_mut().insert(device));
    Ok(())
}
