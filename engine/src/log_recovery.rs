//! Crash recovery for one segment: walk the file from the start, validate every batch
//! (structure, CRC-32C, increasing offsets) and report where the valid prefix ends.
//!
//! Owns: the scan. The caller ([`crate::partition_log`]) truncates the file at the end of the
//! valid prefix and deletes every later segment — nothing after the first bad batch is served.
//!
//! Must never: trust a length from disk to size an allocation beyond `max_batch_bytes`, or stop
//! with a panic on any byte pattern (zero padding from the write-behind reads as a torn tail).

use std::rc::Rc;

use glommio::io::DmaFile;

use crate::batch::{validate_stored, BatchHeader, BatchInfo, BATCH_HEADER_LEN, LOG_OVERHEAD};

/// Bytes read per step of the scan.
pub const RECOVERY_READ_BYTES: usize = 1 << 20;

/// Why the valid prefix ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// The file ended exactly at a batch boundary.
    Clean,
    /// Bytes after `valid_len` are not a valid batch.
    Invalid(ScanStop),
}

/// What follows the valid prefix of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// Zeros: the page padding and the preallocated space of a segment that was not closed
    /// cleanly. Not damage.
    ZeroTail,
    /// Fewer bytes than a batch header.
    TrailingBytes(u64),
    /// The file returned fewer bytes than it holds.
    ShortRead,
    /// A batch header whose length is impossible here (past the file, below a header, or
    /// above the recovery read cap).
    BadLength { length_bytes: i64, position: u64 },
    /// A batch that fails validation (CRC, structure).
    InvalidBatch(crate::batch::BatchError),
    /// A batch whose base offset is below the previous batch's end (offsets must increase).
    OffsetBackwards { base_offset: i64, expected_at_least: i64 },
}

impl ScanStop {
    /// True when nothing is damaged: only the zeros an unclean stop leaves.
    pub fn is_zero_tail(&self) -> bool {
        matches!(self, ScanStop::ZeroTail)
    }
}

impl std::fmt::Display for ScanStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanStop::ZeroTail => write!(f, "zeros after the last batch (padding or preallocated space)"),
            ScanStop::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            ScanStop::ShortRead => write!(f, "short read"),
            ScanStop::BadLength { length_bytes, position } => write!(f, "batch length {length_bytes} at {position}"),
            ScanStop::InvalidBatch(e) => write!(f, "{e}"),
            ScanStop::OffsetBackwards { base_offset, expected_at_least } => {
                write!(f, "base offset {base_offset} below expected {expected_at_least}")
            }
        }
    }
}

/// Result of scanning one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    pub valid_len: u64,
    pub end: ScanEnd,
}

/// Walks the batches in `buf` (file bytes starting at absolute `buf_pos`) from its start.
/// Calls `visit(position, info)` for each valid batch and returns how many bytes were valid,
/// plus `Some(stop)` if it stopped at an invalid batch or `None` if it needs more bytes.
/// Pure: the fuzz and unit tests drive it directly.
pub fn scan_buffer(
    buf: &[u8],
    buf_pos: u64,
    min_next_offset: &mut i64,
    visit: &mut dyn FnMut(u64, &BatchInfo),
) -> (usize, Option<ScanStop>) {
    let mut rel = 0usize;
    while buf.len() - rel >= BATCH_HEADER_LEN {
        if buf[rel..rel + BATCH_HEADER_LEN].iter().all(|b| *b == 0) {
            return (rel, Some(ScanStop::ZeroTail));
        }
        let info = match validate_stored(&buf[rel..]) {
            Ok(info) => info,
            Err(crate::batch::BatchError::Truncated { .. }) => return (rel, None),
            Err(e) => return (rel, Some(ScanStop::InvalidBatch(e))),
        };
        if info.base_offset < *min_next_offset {
            let stop = ScanStop::OffsetBackwards { base_offset: info.base_offset, expected_at_least: *min_next_offset };
            return (rel, Some(stop));
        }
        visit(buf_pos + rel as u64, &info);
        *min_next_offset = info.next_offset();
        rel += info.total_len;
    }
    (rel, None)
}

/// Scans the first `file_size` bytes of a segment file. `base_offset` is the segment's base:
/// no batch may start below it.
pub async fn scan_segment(
    file: &Rc<DmaFile>,
    file_size: u64,
    base_offset: i64,
    max_batch_bytes: usize,
    visit: &mut dyn FnMut(u64, &BatchInfo),
) -> std::io::Result<SegmentScan> {
    let mut pos = 0u64;
    let mut min_next_offset = base_offset;
    loop {
        let remaining = file_size - pos;
        if remaining == 0 {
            return Ok(SegmentScan { valid_len: pos, end: ScanEnd::Clean });
        }
        if remaining < BATCH_HEADER_LEN as u64 {
            return Ok(SegmentScan { valid_len: pos, end: ScanEnd::Invalid(ScanStop::TrailingBytes(remaining)) });
        }
        let want = (RECOVERY_READ_BYTES as u64).min(remaining) as usize;
        let buf = file.read_at(pos, want).await.map_err(std::io::Error::from)?;
        if buf.len() < BATCH_HEADER_LEN {
            return Ok(SegmentScan { valid_len: pos, end: ScanEnd::Invalid(ScanStop::ShortRead) });
        }
        let (valid, stop) = scan_buffer(&buf, pos, &mut min_next_offset, visit);
        if let Some(reason) = stop {
            return Ok(SegmentScan { valid_len: pos + valid as u64, end: ScanEnd::Invalid(reason) });
        }
        if valid > 0 {
            pos += valid as u64;
            continue;
        }
        // The next batch is larger than one read: read exactly it, within limits.
        let header = BatchHeader::parse(&buf).map_err(|e| std::io::Error::other(e.to_string()))?;
        let total = header.batch_length() as i64 + LOG_OVERHEAD as i64;
        if total < BATCH_HEADER_LEN as i64 || total as u64 > remaining || total as usize > max_batch_bytes {
            let stop = ScanStop::BadLength { length_bytes: total, position: pos };
            return Ok(SegmentScan { valid_len: pos, end: ScanEnd::Invalid(stop) });
        }
        let big = file.read_at(pos, total as usize).await.map_err(std::io::Error::from)?;
        let (valid, stop) = scan_buffer(&big, pos, &mut min_next_offset, visit);
        if valid == 0 {
            let reason = stop.unwrap_or(ScanStop::ShortRead);
            return Ok(SegmentScan { valid_len: pos, end: ScanEnd::Invalid(reason) });
        }
        pos += valid as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build_batch_of_size;

    #[test]
    fn scan_buffer_stops_at_damage_and_at_partial_batches() {
        let mut log = Vec::new();
        let mut ends = Vec::new();
        for i in 0..5 {
            log.extend_from_slice(&build_batch_of_size(i * 3, 3, 20, 0));
            ends.push(log.len());
        }
        let mut seen = Vec::new();
        let mut min = 0;
        let (valid, stop) = scan_buffer(&log, 0, &mut min, &mut |p, i| seen.push((p, i.base_offset)));
        assert_eq!((valid, stop, seen.len(), min), (log.len(), None, 5, 15));

        // A partial last batch: valid prefix, asks for more.
        let mut min = 0;
        let (valid, stop) = scan_buffer(&log[..ends[3] + 70], 0, &mut min, &mut |_, _| {});
        assert_eq!((valid, stop), (ends[3], None));

        // A flipped byte inside batch 2: stops before it with a reason.
        let mut bad = log.clone();
        bad[ends[1] + 40] ^= 0x01;
        let mut min = 0;
        let (valid, stop) = scan_buffer(&bad, 0, &mut min, &mut |_, _| {});
        assert_eq!(valid, ends[1]);
        assert!(stop.is_some());

        // Zero padding after the last batch is invalid, not a batch.
        let mut padded = log.clone();
        padded.extend_from_slice(&[0u8; 100]);
        let mut min = 0;
        let (valid, stop) = scan_buffer(&padded, 0, &mut min, &mut |_, _| {});
        assert_eq!(valid, log.len());
        assert_eq!(stop, Some(ScanStop::ZeroTail), "zeros are named as such, not as damage");

        // Offsets going backwards are rejected.
        let mut backwards = build_batch_of_size(10, 1, 5, 0);
        backwards.extend_from_slice(&build_batch_of_size(5, 1, 5, 0));
        let mut min = 0;
        let (valid, stop) = scan_buffer(&backwards, 0, &mut min, &mut |_, _| {});
        assert_eq!(valid, build_batch_of_size(10, 1, 5, 0).len());
        assert_eq!(stop, Some(ScanStop::OffsetBackwards { base_offset: 5, expected_at_least: 11 }));
    }
}
