//! Walking a fetched record set (Fetch's opaque `records` bytes): batch by batch via the
//! engine's zero-copy header, decompressing a batch's records section into a reused buffer when
//! needed, then record by record, handing each record's offset and value to the caller.
//!
//! Owns: record-level parsing on the consuming side. Must never: allocate per record, trust a
//! length without a bounds check, or treat a trailing partial batch (normal at the end of a
//! fetch) as an error.

use sluice_engine::batch::{BatchHeader, Compression, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

use crate::bench::compression::decompress;

/// Most bytes one batch may decompress to.
pub const MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 << 20;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkSummary {
    /// Offset after the last complete batch (the next fetch offset), if any batch was seen.
    pub next_offset: Option<i64>,
    pub batches: u64,
    pub records: u64,
    /// Bytes of complete batches as they came over the wire.
    pub wire_bytes: u64,
}

/// Calls `on_record(offset, value)` for every record at or after `from_offset` in `buf`.
pub fn walk_record_set(
    buf: &[u8],
    from_offset: i64,
    scratch: &mut Vec<u8>,
    mut on_record: impl FnMut(i64, &[u8]),
) -> Result<WalkSummary, String> {
    let mut summary = WalkSummary::default();
    let mut pos = 0;
    while buf.len() - pos >= LOG_OVERHEAD {
        let rest = &buf[pos..];
        let batch_length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(format!("batch length {batch_length} shorter than a v2 header"));
        }
        let total = LOG_OVERHEAD + batch_length as usize;
        if rest.len() < total {
            break; // partial batch at the end of the fetch
        }
        let batch = &rest[..total];
        let header = BatchHeader::parse(batch).map_err(|e| e.to_string())?;
        if header.magic() != MAGIC_V2 {
            return Err(format!("record batch magic {} (only v2 is read)", header.magic()));
        }
        summary.batches += 1;
        summary.wire_bytes += total as u64;
        summary.next_offset = Some(header.next_offset());
        pos += total;
        if header.is_control() || header.last_offset() < from_offset {
            continue;
        }
        let section = &batch[BATCH_HEADER_LEN..];
        let records: &[u8] = match header.compression() {
            Compression::None => section,
            codec => {
                decompress(codec, section, scratch, MAX_DECOMPRESSED_BATCH_BYTES)?;
                scratch
            }
        };
        let base = header.base_offset();
        let count = header.records_count().max(0) as usize;
        let mut p = 0;
        for _ in 0..count {
            let (offset_delta, value) = next_record(records, &mut p)?;
            let offset = base + offset_delta as i64;
            if offset >= from_offset {
                summary.records += 1;
                on_record(offset, value.unwrap_or(&[]));
            }
        }
    }
    Ok(summary)
}

fn varlong(buf: &[u8], pos: &mut usize) -> Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos).ok_or("record overruns its batch")?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn bytes_field<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, String> {
    let len = varlong(buf, pos)?;
    if len < 0 {
        return Ok(None);
    }
    let end = pos.checked_add(len as usize).filter(|e| *e <= buf.len()).ok_or("record field overruns its batch")?;
    let field = &buf[*pos..end];
    *pos = end;
    Ok(Some(field))
}

/// Parses the record at `*pos`; returns (offset delta, value) and moves `*pos` past it.
fn next_record<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(i32, Option<&'a [u8]>), String> {
    let len = varlong(buf, pos)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .filter(|e| *e <= buf.len())
        .ok_or("record length overruns its batch")?;
    let record = &buf[..end];
    let mut p = *pos + 1; // attributes
    varlong(record, &mut p)?; // timestamp delta
    let offset_delta = varlong(record, &mut p)? as i32;
    bytes_field(record, &mut p)?; // key
    let value = bytes_field(record, &mut p)?;
    *pos = end; // headers skipped
    Ok((offset_delta, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::compression::{engine_codec, Compressor};
    use crate::bench::workload::CompressionCodec;
    use sluice_engine::batch_builder::RecordBatchBuilder;

    fn batch(base_offset: i64, values: &[&[u8]], codec: CompressionCodec) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(0, 256);
        for v in values {
            b.push(Some(b"key"), v);
        }
        let compressed = Compressor::new(codec).compress(b.records_section());
        let mut out = b.finish_compressed(engine_codec(codec), &compressed);
        out[..8].copy_from_slice(&base_offset.to_be_bytes());
        out
    }

    #[test]
    fn walks_plain_and_compressed_batches_and_stops_at_a_partial_one() {
        for codec in [
            CompressionCodec::None,
            CompressionCodec::Lz4,
            CompressionCodec::Zstd,
            CompressionCodec::Snappy,
            CompressionCodec::Gzip,
        ] {
            let mut set = batch(10, &[b"a", b"bb"], codec);
            set.extend(batch(12, &[b"ccc"], codec));
            let partial = batch(13, &[b"dddd"], codec);
            set.extend_from_slice(&partial[..partial.len() - 3]);
            let mut seen = Vec::new();
            let mut scratch = Vec::new();
            let s = walk_record_set(&set, 11, &mut scratch, |o, v| seen.push((o, v.to_vec()))).unwrap();
            assert_eq!(seen, vec![(11, b"bb".to_vec()), (12, b"ccc".to_vec())], "{codec:?}");
            assert_eq!(s.next_offset, Some(13));
            assert_eq!(s.batches, 2);
            assert_eq!(s.records, 2);
        }
    }

    #[test]
    fn corrupt_lengths_are_errors_not_panics() {
        let mut set = batch(0, &[b"value"], CompressionCodec::None);
        let n = set.len();
        set[BATCH_HEADER_LEN] = 0x7e; // record length varint far beyond the batch
        assert!(walk_record_set(&set, 0, &mut Vec::new(), |_, _| {}).is_err());
        set[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(walk_record_set(&set, 0, &mut Vec::new(), |_, _| {}).is_err());
        assert_eq!(walk_record_set(&set[..5], 0, &mut Vec::new(), |_, _| {}).unwrap(), WalkSummary::default());
        let _ = n;
    }
}
